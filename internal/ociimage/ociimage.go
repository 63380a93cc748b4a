// Package ociimage builds container images without a container engine:
// one layer of files laid out as an image expects them, and a config
// (entrypoint, user, env), written with go-containerregistry. The product
// image (`make image`: one image per architecture under an OCI index,
// written as an OCI layout and as an archive: Index, WriteLayout) and the
// single-platform images of the real-node tests (the product image for this
// machine, NATS, the pause container) come from here.
package ociimage

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// File is one file of the image's filesystem: copied from Source, or the
// bytes of Data, or a symbolic link to Link.
type File struct {
	Source string
	Data   []byte
	Link   string
	Mode   int64
}

// Spec describes an image: its files by absolute path and its config.
type Spec struct {
	Files      map[string]File
	Entrypoint []string
	Cmd        []string
	// User is numeric ("65532:65532") so the kubelet can check
	// runAsNonRoot without an /etc/passwd lookup.
	User   string
	Env    []string
	Labels map[string]string
	// Arch defaults to the machine's (runtime.GOARCH).
	Arch string
}

// epoch is every file's and the image's time, so the same inputs build the
// same digest.
var epoch = time.Unix(0, 0).UTC()

// Build makes a single-layer image from spec.
func Build(spec Spec) (v1.Image, error) {
	layerTar, err := layer(spec.Files)
	if err != nil {
		return nil, err
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	if img, err = mutate.Append(img, mutate.Addendum{Layer: l, MediaType: types.OCILayer}); err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = spec.Arch
	if cf.Architecture == "" {
		cf.Architecture = runtime.GOARCH
	}
	cf.Created = v1.Time{Time: epoch}
	cf.Config = v1.Config{
		Entrypoint: spec.Entrypoint,
		Cmd:        spec.Cmd,
		User:       spec.User,
		Env:        append([]string{"PATH=/usr/local/bin:/usr/bin:/bin"}, spec.Env...),
		Labels:     spec.Labels,
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return img, nil
}

// layer writes files as a tar, parent directories first, in a fixed order.
func layer(files map[string]File) ([]byte, error) {
	dirs := map[string]bool{}
	names := make([]string, 0, len(files))
	for name := range files {
		if !path.IsAbs(name) || path.Clean(name) != name {
			return nil, fmt.Errorf("image path %q: want a clean absolute path", name)
		}
		names = append(names, name)
		for d := path.Dir(name); d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	dirList := make([]string, 0, len(dirs))
	for d := range dirs {
		dirList = append(dirList, d)
	}
	sort.Strings(dirList)
	sort.Strings(names)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range dirList {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755, ModTime: epoch}); err != nil {
			return nil, err
		}
	}
	for _, name := range names {
		f := files[name]
		hdr := &tar.Header{Name: strings.TrimPrefix(name, "/"), Mode: f.Mode, ModTime: epoch}
		if hdr.Mode == 0 {
			hdr.Mode = 0o644
		}
		data := f.Data
		switch {
		case f.Link != "":
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, f.Link, 0o777
		case f.Source != "":
			b, err := os.ReadFile(f.Source)
			if err != nil {
				return nil, fmt.Errorf("image file %s: %w", name, err)
			}
			data = b
		}
		if f.Link == "" {
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// NonrootUser is the distroless "nonroot" user the Dockerfile's final stage
// runs as; the image carries the same passwd and group entries so tools that
// look the user up by id find it.
const NonrootUser = "65532:65532"

// Peergroup is the product image, built like the Dockerfile: both static
// binaries under /usr/local/bin, the webhook as entrypoint, the nonroot
// user. binDir holds peergroup-webhook and seed-discovery built with
// CGO_ENABLED=0.
func Peergroup(binDir, version string) Spec {
	return Spec{
		Files: map[string]File{
			"/usr/local/bin/peergroup-webhook": {Source: path.Join(binDir, "peergroup-webhook"), Mode: 0o755},
			"/usr/local/bin/seed-discovery":    {Source: path.Join(binDir, "seed-discovery"), Mode: 0o755},
			"/etc/passwd":                      {Data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
			"/etc/group":                       {Data: []byte("root:x:0:\nnonroot:x:65532:\n")},
		},
		Entrypoint: []string{"/usr/local/bin/peergroup-webhook"},
		User:       NonrootUser,
		Labels:     map[string]string{"org.opencontainers.image.version": version, "org.opencontainers.image.source": "https://github.com/peergroup/peergroup"},
	}
}

// BuildBinaries compiles the two binaries of the product image into dir
// with the Dockerfile's flags (BuildStatic).
func BuildBinaries(dir, version, arch string) error {
	return BuildStatic(context.Background(), dir, version, arch, "./cmd/peergroup-webhook", "./cmd/seed-discovery")
}

// BuildStatic compiles main packages of the module into dir as the
// Dockerfile does: static (CGO_ENABLED=0), trimmed, version stamped. arch ""
// builds for this machine. It runs in the module root.
func BuildStatic(ctx context.Context, dir, version, arch string, pkgs ...string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	return BuildStaticIn(ctx, root, dir, version, arch, pkgs...)
}

// BuildStaticIn is BuildStatic for the module at root: another tree of
// peergroup, such as a previous release's sources.
func BuildStaticIn(ctx context.Context, root, dir, version, arch string, pkgs ...string) error {
	args := append([]string{"build", "-trimpath", "-ldflags", "-s -w -X main.version=" + version, "-o", dir + string(os.PathSeparator)}, pkgs...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	// GOWORK=off: the module alone, as the Dockerfile builds it (a
	// developer's go.work would not include another tree of peergroup).
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOWORK=off")
	if arch != "" {
		cmd.Env = append(cmd.Env, "GOARCH="+arch)
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", strings.Join(pkgs, " "), err, b)
	}
	return nil
}

// moduleRoot is the directory of the main module's go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the peergroup module")
	}
	return path.Dir(gomod), nil
}
