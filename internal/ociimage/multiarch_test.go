package ociimage

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// tiny is a one-file image for arch, distinct per content.
func tiny(t *testing.T, arch, content string) v1.Image {
	t.Helper()
	img, err := Build(Spec{Files: map[string]File{"/hello": {Data: []byte(content)}}, Arch: arch, User: NonrootUser})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestIndexRefusesTwoImagesForOnePlatform(t *testing.T) {
	if _, err := Index(tiny(t, "amd64", "a"), tiny(t, "amd64", "b")); err == nil || !strings.Contains(err.Error(), "two images for linux/amd64") {
		t.Fatalf("err %v, want two images for linux/amd64", err)
	}
}

// A rebuild replaces the layout: no blob of the earlier build stays, so
// none ends up in the archive either.
func TestWriteLayoutReplacesTheEarlierBuild(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "layout")
	ref := name.MustParseReference("example.test/pg:v1").(name.Tag)
	for _, content := range []string{"first", "second"} {
		idx, err := Index(tiny(t, "amd64", "amd64 "+content), tiny(t, "arm64", "arm64 "+content))
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteLayout(dir, idx, ref); err != nil {
			t.Fatal(err)
		}
	}
	blobs, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	// index + 2 × (manifest, config, layer)
	if len(blobs) != 7 {
		t.Errorf("%d blobs, want the 7 of one build", len(blobs))
	}
}

// A directory that is not a layout is never deleted to make room for one.
func TestWriteLayoutKeepsOtherDirectories(t *testing.T) {
	dir := t.TempDir()
	keep := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(keep, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	idx, err := Index(tiny(t, "amd64", "a"))
	if err != nil {
		t.Fatal(err)
	}
	err = WriteLayout(dir, idx, name.MustParseReference("example.test/pg:v1").(name.Tag))
	if err == nil || !strings.Contains(err.Error(), "not an OCI image layout") {
		t.Fatalf("err %v, want a refusal", err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("the directory's file is gone: %v", err)
	}
}

// manifest.json names the image of the asked architecture, and an
// architecture the index lacks is an error, not a silent other choice.
func TestWriteArchiveDockerManifest(t *testing.T) {
	dir := t.TempDir()
	ref := name.MustParseReference("example.test/pg:v1").(name.Tag)
	idx, err := Index(tiny(t, "amd64", "a"), tiny(t, "arm64", "a"))
	if err != nil {
		t.Fatal(err)
	}
	lay := filepath.Join(dir, "layout")
	if err := WriteLayout(lay, idx, ref); err != nil {
		t.Fatal(err)
	}
	if _, err := layout.ImageIndexFromPath(lay); err != nil {
		t.Fatal(err)
	}
	for _, arch := range []string{"amd64", "arm64"} {
		out := filepath.Join(dir, arch+".tar")
		if err := WriteArchive(out, lay, ref, arch); err != nil {
			t.Fatal(err)
		}
		img, err := tarball.ImageFromPath(out, nil)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Architecture != arch {
			t.Errorf("-load-arch %s: manifest.json names the %s image", arch, cf.Architecture)
		}
		st, err := os.Stat(out)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o644 {
			t.Errorf("archive %s: mode %v, want 0644", out, st.Mode())
		}
	}
	if err := WriteArchive(filepath.Join(dir, "s390x.tar"), lay, ref, "s390x"); err == nil || !strings.Contains(err.Error(), "no image for linux/s390x") {
		t.Errorf("err %v, want no image for linux/s390x", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "s390x.tar")); err == nil {
		t.Error("a failed archive was left behind")
	}
}
