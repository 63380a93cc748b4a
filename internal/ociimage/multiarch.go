package ociimage

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// PeergroupArches are the architectures `make image` builds the product
// image for: the common Kubernetes nodes. The binaries are pure Go, so each
// is a cross-compilation, not an emulated build.
var PeergroupArches = []string{"amd64", "arm64"}

// Annotations of index.json's entry that name the image for the tools that
// read a layout or an archive of one.
const (
	// AnnotationImageName is containerd's: the full reference `ctr images
	// import` and docker's containerd image store tag the image with.
	AnnotationImageName = "io.containerd.image.name"
	// AnnotationRefName is OCI's: the tag alone (skopeo's oci:DIR:TAG).
	AnnotationRefName = "org.opencontainers.image.ref.name"
)

// PeergroupIndex builds the product image for each of arches: the binaries
// compiled into binDir/<arch>, one image per architecture, and the index
// over them.
func PeergroupIndex(binDir, version string, arches []string) (v1.ImageIndex, error) {
	if len(arches) == 0 {
		return nil, errors.New("no architecture to build the image for")
	}
	imgs := make([]v1.Image, 0, len(arches))
	for _, arch := range arches {
		img, err := peergroupFor(filepath.Join(binDir, arch), version, arch)
		if err != nil {
			return nil, fmt.Errorf("linux/%s: %w", arch, err)
		}
		imgs = append(imgs, img)
	}
	return Index(imgs...)
}

// peergroupFor builds the product image for one architecture; its
// binaries go to dir.
func peergroupFor(dir, version, arch string) (v1.Image, error) {
	if err := BuildBinaries(dir, version, arch); err != nil {
		return nil, err
	}
	spec := Peergroup(dir, version)
	spec.Arch = arch
	return Build(spec)
}

// Index makes an OCI image index over imgs. Each entry carries its image's
// platform (from the config) so a runtime or registry client picks its own
// without reading every config.
func Index(imgs ...v1.Image) (v1.ImageIndex, error) {
	adds := make([]mutate.IndexAddendum, 0, len(imgs))
	seen := map[string]bool{}
	for _, img := range imgs {
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, fmt.Errorf("index: config: %w", err)
		}
		p := cf.Platform()
		if p == nil || p.OS == "" || p.Architecture == "" {
			return nil, errors.New("index: an image without os and architecture")
		}
		// Two entries for one platform would leave the choice to each client.
		if seen[p.String()] {
			return nil, fmt.Errorf("index: two images for %s", p)
		}
		seen[p.String()] = true
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: p}})
	}
	return mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...), nil
}

// WriteLayout writes idx to dir as an OCI image layout, the form `crane
// push DIR` and `skopeo copy --all oci:DIR` read: index.json holds one
// entry, idx itself, named ref. An earlier layout at dir is replaced rather
// than added to, so the blobs of earlier builds do not pile up (and do not
// end up in WriteArchive's tarball).
func WriteLayout(dir string, idx v1.ImageIndex, ref name.Tag) error {
	if err := removeLayout(dir); err != nil {
		return err
	}
	top := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: idx, Descriptor: v1.Descriptor{Annotations: refAnnotations(ref)}})
	if _, err := layout.Write(dir, top); err != nil {
		return fmt.Errorf("write layout %s: %w", dir, err)
	}
	return readableModes(dir)
}

// readableModes sets the modes of a layout's files to 0644 (directories
// 0755): go-containerregistry leaves layer blobs 0600 (its temporary
// files) and index.json executable, and a layout is data for any user's
// crane, skopeo or registry to read.
func readableModes(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		mode := fs.FileMode(0o644)
		if d.IsDir() {
			mode = 0o755
		}
		if err := os.Chmod(p, mode); err != nil {
			return fmt.Errorf("layout %s: %w", dir, err)
		}
		return nil
	})
}

// refAnnotations name the image for containerd (the full reference) and for
// OCI tools (the tag).
func refAnnotations(ref name.Tag) map[string]string {
	return map[string]string{AnnotationImageName: ref.Name(), AnnotationRefName: ref.TagStr()}
}

// removeLayout clears the way for a new layout at dir. It refuses a
// non-empty directory that is not a layout, so a mistyped path cannot
// delete something else.
func removeLayout(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("layout %s: %w", dir, err)
	}
	if len(entries) == 0 {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
		return fmt.Errorf("layout %s: the directory exists and is not an OCI image layout; not replacing it", dir)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove the earlier layout %s: %w", dir, err)
	}
	return nil
}

// dockerManifestEntry is one image of a docker archive's manifest.json.
type dockerManifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// WriteArchive writes the layout at layoutDir as one tar file at out that
// every loader takes: oci-layout and index.json serve `ctr images import`
// and docker with the containerd image store (all platforms, named by
// AnnotationImageName), and a docker manifest.json serves the classic
// `docker load` and go-containerregistry's tarball reader. manifest.json
// lists only the linux/loadArch image: a tag names one image there, so a
// second platform would only replace the first.
func WriteArchive(out, layoutDir string, ref name.Tag, loadArch string) error {
	idx, err := layout.ImageIndexFromPath(layoutDir)
	if err != nil {
		return fmt.Errorf("archive: open layout %s: %w", layoutDir, err)
	}
	img, err := platformImage(idx, v1.Platform{OS: "linux", Architecture: loadArch})
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	entry, err := dockerEntry(img, ref)
	if err != nil {
		return fmt.Errorf("archive: manifest.json: %w", err)
	}
	manifest, err := json.Marshal([]dockerManifestEntry{entry})
	if err != nil {
		return fmt.Errorf("archive: manifest.json: %w", err)
	}
	return writeFileAtomic(out, func(w io.Writer) error {
		tw := tar.NewWriter(w)
		if err := addTree(tw, layoutDir); err != nil {
			return err
		}
		if err := addBytes(tw, "manifest.json", manifest); err != nil {
			return err
		}
		return tw.Close()
	})
}

// platformImage finds the image for p in idx or in the indexes it holds.
func platformImage(idx v1.ImageIndex, p v1.Platform) (v1.Image, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range im.Manifests {
		switch {
		case d.MediaType.IsIndex():
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, err
			}
			if img, err := platformImage(child, p); err == nil {
				return img, nil
			}
		case d.MediaType.IsImage() && d.Platform != nil && d.Platform.Equals(p):
			return idx.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("no image for %s", p)
}

// dockerEntry describes img by the paths of its blobs in the layout, which
// the archive keeps as they are.
func dockerEntry(img v1.Image, ref name.Tag) (dockerManifestEntry, error) {
	cfg, err := img.ConfigName()
	if err != nil {
		return dockerManifestEntry{}, err
	}
	layers, err := img.Layers()
	if err != nil {
		return dockerManifestEntry{}, err
	}
	e := dockerManifestEntry{Config: blobPath(cfg), RepoTags: []string{ref.Name()}}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return dockerManifestEntry{}, err
		}
		e.Layers = append(e.Layers, blobPath(d))
	}
	return e, nil
}

func blobPath(h v1.Hash) string { return path.Join("blobs", h.Algorithm, h.Hex) }

// addTree adds every directory and file under dir, by its path relative to
// dir, in lexical order and with fixed times and modes, so the same layout
// makes the same archive.
func addTree(tw *tar.Writer, dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: rel + "/", Mode: 0o755, ModTime: epoch})
		}
		return addFile(tw, rel, p)
	})
}

func addFile(tw *tar.Writer, name, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: st.Size(), ModTime: epoch}); err != nil {
		return err
	}
	if _, err := io.Copy(tw, f); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func addBytes(tw *tar.Writer, name string, data []byte) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch}); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

// writeFileAtomic writes out through a temporary file renamed into place,
// so a failed build never leaves a truncated archive where a good one was.
func writeFileAtomic(out string, write func(io.Writer) error) error {
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), filepath.Base(out)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if err := write(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", out, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	// CreateTemp makes the file 0600; an archive is for others to load.
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), out)
}
