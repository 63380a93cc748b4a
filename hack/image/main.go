// Command image builds the peergroup image without a container engine, as
// the Dockerfile describes it (both static binaries, numeric nonroot user,
// the webhook as entrypoint), for linux/amd64 and linux/arm64, and writes
// the multi-platform image twice:
//
//   - an OCI image layout directory (-layout), for `crane push DIR REF` and
//     `skopeo copy --all oci:DIR docker://REF`;
//   - a tar archive of that layout plus a docker manifest.json (-out), for
//     `docker load -i` and `ctr -n k8s.io images import`.
//
// `make image` runs it as:
//
//	go run ./hack/image -out bin/peergroup-image.tar -layout bin/peergroup-image -tag ghcr.io/peergroup/peergroup:dev
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/peergroup/peergroup/internal/ociimage"
)

type options struct {
	out, layout, tag, version string
	arches                    []string
	// loadArch is the one platform the archive's docker manifest.json
	// names (classic `docker load` takes one image per tag).
	loadArch string
}

func main() {
	var o options
	flag.StringVar(&o.out, "out", "bin/peergroup-image.tar", "image archive to write (docker load, ctr import)")
	flag.StringVar(&o.layout, "layout", "bin/peergroup-image", "OCI image layout directory to write (crane push, skopeo copy); replaced if it exists")
	flag.StringVar(&o.tag, "tag", "ghcr.io/peergroup/peergroup:dev", "the image's name in the layout and the archive")
	flag.StringVar(&o.version, "version", "dev", "version stamped into the binaries and the image label")
	arches := flag.String("arch", strings.Join(ociimage.PeergroupArches, ","), "comma-separated target architectures (linux)")
	flag.StringVar(&o.loadArch, "load-arch", "", "the architecture manifest.json names for classic docker load (default: this machine's if built, else the first)")
	flag.Parse()
	o.arches = strings.Split(*arches, ",")
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	ref, err := name.NewTag(o.tag)
	if err != nil {
		return fmt.Errorf("tag %q: %w", o.tag, err)
	}
	loadArch, err := dockerLoadArch(o.loadArch, o.arches)
	if err != nil {
		return err
	}
	binDir, err := os.MkdirTemp("", "peergroup-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(binDir)
	idx, err := ociimage.PeergroupIndex(binDir, o.version, o.arches)
	if err != nil {
		return err
	}
	if err := ociimage.WriteLayout(o.layout, idx, ref); err != nil {
		return err
	}
	if err := ociimage.WriteArchive(o.out, o.layout, ref, loadArch); err != nil {
		return err
	}
	digest, err := idx.Digest()
	if err != nil {
		return fmt.Errorf("index digest: %w", err)
	}
	fmt.Printf("image %s (index %s, linux/%s) written to %s and %s (docker load: linux/%s)\n",
		ref, digest, strings.Join(o.arches, ", linux/"), o.layout, o.out, loadArch)
	return nil
}

// dockerLoadArch picks the platform for classic `docker load`: the one
// asked for, else this machine's, so the image loaded where it was built
// runs there.
func dockerLoadArch(want string, arches []string) (string, error) {
	switch {
	case want != "" && !slices.Contains(arches, want):
		return "", fmt.Errorf("-load-arch %s is not among the built architectures %v", want, arches)
	case want != "":
		return want, nil
	case slices.Contains(arches, runtime.GOARCH):
		return runtime.GOARCH, nil
	}
	return arches[0], nil
}
