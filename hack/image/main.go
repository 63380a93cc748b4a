// Command image builds the peergroup image without a container engine, as
// the Dockerfile describes it (both static binaries, numeric nonroot user,
// the webhook as entrypoint), and writes it as an image archive that
// `docker load`, `ctr images import` and `crane push` take.
//
//	go run ./hack/image -out bin/peergroup-image.tar -tag ghcr.io/peergroup/peergroup:dev
package main

import (
	"flag"
	"fmt"
	"os"

	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/peergroup/peergroup/internal/ociimage"
)

func main() {
	out := flag.String("out", "bin/peergroup-image.tar", "image archive to write")
	tag := flag.String("tag", "ghcr.io/peergroup/peergroup:dev", "the image's name in the archive")
	version := flag.String("version", "dev", "version stamped into the binaries and the image label")
	arch := flag.String("arch", "", "target architecture (default: this machine's)")
	flag.Parse()
	if err := run(*out, *tag, *version, *arch); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(out, tag, version, arch string) error {
	ref, err := name.NewTag(tag)
	if err != nil {
		return fmt.Errorf("tag %q: %w", tag, err)
	}
	binDir, err := os.MkdirTemp("", "peergroup-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(binDir)
	if err := ociimage.BuildBinaries(binDir, version, arch); err != nil {
		return err
	}
	spec := ociimage.Peergroup(binDir, version)
	spec.Arch = arch
	img, err := ociimage.Build(spec)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	if err := tarball.WriteToFile(out, ref, img); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	digest, _ := img.Digest()
	fmt.Printf("image %s (%s) written to %s\n", ref, digest, out)
	return nil
}
