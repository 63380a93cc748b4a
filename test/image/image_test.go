package image

import (
	"archive/tar"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/peergroup/peergroup/test/framework"
)

// TestMakeImage builds the image as `make image` does (no engine) and opens
// the archive: what the Dockerfile promises holds for it too.
func TestMakeImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds both binaries")
	}
	out := filepath.Join(t.TempDir(), "peergroup-image.tar")
	cmd := exec.Command("go", "run", "./hack/image", "-out", out, "-tag", "ghcr.io/peergroup/peergroup:test", "-version", "test")
	cmd.Dir = framework.RepoRoot()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/image: %v\n%s", err, b)
	}
	img, err := tarball.ImageFromPath(out, nil)
	if err != nil {
		t.Fatalf("open %s: %v", out, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Config.User != "65532:65532" {
		t.Errorf("os %q user %q: want linux and the numeric nonroot user 65532:65532", cf.OS, cf.Config.User)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/usr/local/bin/peergroup-webhook"}) {
		t.Errorf("entrypoint %q, want the webhook", cf.Config.Entrypoint)
	}
	if cf.Config.Labels["org.opencontainers.image.version"] != "test" {
		t.Errorf("labels %v: want the version", cf.Config.Labels)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("want one layer, got %d (%v)", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files["/"+strings.TrimSuffix(hdr.Name, "/")] = hdr
		if hdr.Name == "usr/local/bin/peergroup-webhook" || hdr.Name == "usr/local/bin/seed-discovery" {
			requireStatic(t, hdr.Name, tr)
		}
	}
	for _, bin := range []string{"/usr/local/bin/peergroup-webhook", "/usr/local/bin/seed-discovery"} {
		hdr, ok := files[bin]
		if !ok {
			t.Errorf("%s missing from the image", bin)
			continue
		}
		if hdr.Mode&0o111 == 0 || hdr.Uid != 0 {
			t.Errorf("%s: mode %o uid %d, want executable and owned by root (the nonroot user cannot replace it)", bin, hdr.Mode, hdr.Uid)
		}
	}
	if _, ok := files["/etc/passwd"]; !ok {
		t.Error("/etc/passwd missing: the nonroot user has no name")
	}
}

func requireStatic(t *testing.T, name string, r io.Reader) {
	t.Helper()
	tmp := filepath.Join(t.TempDir(), filepath.Base(name))
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tmp, data, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(tmp)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s in the image is dynamically linked", name)
		}
	}
}
