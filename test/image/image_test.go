package image

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/peergroup/peergroup/internal/ociimage"
	"github.com/peergroup/peergroup/test/framework"
)

const (
	testTag     = "ghcr.io/peergroup/peergroup:test"
	testVersion = "test"
	webhookBin  = "/usr/local/bin/peergroup-webhook"
	seedsBin    = "/usr/local/bin/seed-discovery"
)

// machines is the ELF machine of each architecture `make image` builds.
var machines = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// TestMakeImage builds the image as `make image` does (no engine, amd64 and
// arm64) and opens both forms of it: what the Dockerfile promises holds for
// each platform, and the layout and the archive are the same image.
func TestMakeImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds both binaries for two architectures")
	}
	dir := t.TempDir()
	out, layoutDir := filepath.Join(dir, "peergroup-image.tar"), filepath.Join(dir, "peergroup-image")
	cmd := exec.Command("go", "run", "./hack/image", "-out", out, "-layout", layoutDir, "-tag", testTag, "-version", testVersion)
	cmd.Dir = framework.RepoRoot()
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("hack/image: %v\n%s", err, b)
	}
	t.Logf("hack/image: %s", b)
	t.Run("layout", func(t *testing.T) { checkLayout(t, layoutDir) })
	t.Run("archive", func(t *testing.T) { checkArchive(t, out, layoutDir) })
}

// checkLayout opens the OCI layout (what crane push and skopeo read): every
// blob matches its digest, index.json names the image, and the index under
// it has one image per platform.
func checkLayout(t *testing.T, dir string) {
	top := checkBlobs(t, dir)
	idx := namedIndex(t, top)
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var arches []string
	for _, d := range im.Manifests {
		if d.Platform == nil || d.Platform.OS != "linux" || d.MediaType != types.OCIManifestSchema1 {
			t.Errorf("index entry %s: platform %v, media type %s: want linux and an OCI manifest", d.Digest, d.Platform, d.MediaType)
			continue
		}
		arch := d.Platform.Architecture
		arches = append(arches, arch)
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(arch, func(t *testing.T) { checkImage(t, img, arch) })
	}
	slices.Sort(arches)
	if !slices.Equal(arches, []string{"amd64", "arm64"}) {
		t.Errorf("index platforms linux/%v, want linux/amd64 and linux/arm64", arches)
	}
}

// checkBlobs opens the layout at dir after checking it whole, as a
// registry or containerd would on import: every blob is named by its
// digest, and every descriptor from index.json down to the layers finds
// its blob with the size it states.
func checkBlobs(t *testing.T, dir string) v1.ImageIndex {
	t.Helper()
	blobDir := filepath.Join(dir, "blobs", "sha256")
	entries, err := os.ReadDir(blobDir)
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[string]int64{}
	for _, e := range entries {
		sum, size := sha256File(t, filepath.Join(blobDir, e.Name()))
		if sum != e.Name() {
			t.Errorf("blob %s has digest sha256:%s", e.Name(), sum)
		}
		sizes[e.Name()] = size
	}
	top, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("open layout %s: %v", dir, err)
	}
	checkDescriptors(t, top, sizes)
	return top
}

// checkDescriptors checks idx's entries and, below them, the manifests'
// configs and layers against the blobs present.
func checkDescriptors(t *testing.T, idx v1.ImageIndex, sizes map[string]int64) {
	t.Helper()
	present := func(d v1.Descriptor) {
		if size, ok := sizes[d.Digest.Hex]; !ok || size != d.Size {
			t.Errorf("%s %s (%d bytes): blob present %v, %d bytes", d.MediaType, d.Digest, d.Size, ok, size)
		}
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		present(d)
		switch {
		case d.MediaType.IsIndex():
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			checkDescriptors(t, child, sizes)
		case d.MediaType.IsImage():
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			m, err := img.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			present(m.Config)
			for _, l := range m.Layers {
				present(l)
			}
		}
	}
}

func sha256File(t *testing.T, path string) (string, int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil)), n
}

// namedIndex is index.json's one entry, the multi-platform index, named
// for containerd (full reference) and for OCI tools (tag).
func namedIndex(t *testing.T, top v1.ImageIndex) v1.ImageIndex {
	t.Helper()
	im, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].MediaType != types.OCIImageIndex {
		t.Fatalf("index.json: %+v, want one entry, an OCI image index (crane push DIR takes exactly one)", im.Manifests)
	}
	d := im.Manifests[0]
	if d.Annotations[ociimage.AnnotationImageName] != testTag || d.Annotations[ociimage.AnnotationRefName] != testVersion {
		t.Errorf("index.json annotations %v: want %s=%s and %s=%s", d.Annotations,
			ociimage.AnnotationImageName, testTag, ociimage.AnnotationRefName, testVersion)
	}
	idx, err := top.ImageIndex(d.Digest)
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

// checkImage: the config, files and binaries of the image for arch.
func checkImage(t *testing.T, img v1.Image, arch string) {
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != arch {
		t.Errorf("config platform %s/%s, the index says linux/%s", cf.OS, cf.Architecture, arch)
	}
	if cf.Config.User != "65532:65532" {
		t.Errorf("user %q: want the numeric nonroot user 65532:65532", cf.Config.User)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{webhookBin}) {
		t.Errorf("entrypoint %q, want the webhook", cf.Config.Entrypoint)
	}
	if cf.Config.Labels["org.opencontainers.image.version"] != testVersion {
		t.Errorf("labels %v: want the version", cf.Config.Labels)
	}
	files := layerFiles(t, img)
	for _, bin := range []string{webhookBin, seedsBin} {
		f, ok := files[bin]
		if !ok {
			t.Errorf("%s missing from the image", bin)
			continue
		}
		if f.hdr.Mode != 0o755 || f.hdr.Uid != 0 || f.hdr.Gid != 0 {
			t.Errorf("%s: mode %o uid %d gid %d, want 0755 owned by root (the nonroot user cannot replace it)", bin, f.hdr.Mode, f.hdr.Uid, f.hdr.Gid)
		}
		checkBinary(t, bin, f.data, arch)
	}
	for _, name := range []string{"/etc/passwd", "/etc/group"} {
		if f, ok := files[name]; !ok || f.hdr.Mode != 0o644 {
			t.Errorf("%s: present %v: want it, mode 0644 (the nonroot user's name)", name, ok)
		}
	}
	if !strings.Contains(string(files["/etc/passwd"].data), "nonroot:x:65532:65532:") {
		t.Errorf("/etc/passwd %q lacks the nonroot user", files["/etc/passwd"].data)
	}
}

type layerFile struct {
	hdr  *tar.Header
	data []byte
}

// layerFiles reads the image's one layer by absolute path.
func layerFiles(t *testing.T, img v1.Image) map[string]layerFile {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("want one layer, got %d (%v)", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	// The uncompressed layer must be the one the config's diff_ids name:
	// runtimes check it when they unpack.
	h := sha256.New()
	tee := io.TeeReader(rc, h)
	files := map[string]layerFile{}
	tr := tar.NewReader(tee)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			checkDiffID(t, img, tee, h.Sum)
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files["/"+strings.TrimSuffix(hdr.Name, "/")] = layerFile{hdr, data}
	}
}

// checkDiffID reads the rest of the layer (the tar's padding) and compares
// its digest with the config's diff_id.
func checkDiffID(t *testing.T, img v1.Image, rest io.Reader, sum func([]byte) []byte) {
	t.Helper()
	if _, err := io.Copy(io.Discard, rest); err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	got := "sha256:" + hex.EncodeToString(sum(nil))
	if len(cf.RootFS.DiffIDs) != 1 || cf.RootFS.DiffIDs[0].String() != got {
		t.Errorf("config diff_ids %v, the layer is %s", cf.RootFS.DiffIDs, got)
	}
}

// checkBinary: a static ELF file for arch; on a machine of that
// architecture it runs, and --version prints the version the image was
// built as.
func checkBinary(t *testing.T, name string, data []byte, arch string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), filepath.Base(name))
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	defer f.Close()
	if f.Machine != machines[arch] {
		t.Errorf("%s in the linux/%s image is built for %s, want %s", name, arch, f.Machine, machines[arch])
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has an ELF interpreter: dynamically linked", name)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v", name, libs)
	}
	if runtime.GOOS != "linux" || runtime.GOARCH != arch {
		t.Logf("%s: linux/%s ELF (%s), static; not run on %s/%s", name, arch, f.Machine, runtime.GOOS, runtime.GOARCH)
		return
	}
	out, err := exec.Command(path, "--version").CombinedOutput()
	t.Logf("%s --version (linux/%s): %q", name, arch, out)
	if err != nil || string(out) != testVersion+"\n" {
		t.Errorf("%s --version: %v, output %q: want exit 0 and %q", name, err, out, testVersion)
	}
}

// checkArchive opens the tarball: docker's manifest.json (classic docker
// load, one image: this machine's) and the OCI layout's index.json and
// oci-layout (ctr import, docker's containerd store), the same image as the
// layout directory, with every blob present and matching its digest.
func checkArchive(t *testing.T, archive, layoutDir string) {
	extracted := t.TempDir()
	names := untar(t, archive, extracted)
	for _, want := range []string{"manifest.json", "index.json", "oci-layout"} {
		if !slices.Contains(names, want) {
			t.Errorf("archive lacks %s (has %v)", want, names)
		}
	}
	archived, err := os.ReadFile(filepath.Join(extracted, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	layoutIndex, err := os.ReadFile(filepath.Join(layoutDir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(archived, layoutIndex) {
		t.Errorf("the archive's index.json differs from the layout's:\n%s\n%s", archived, layoutIndex)
	}
	checkDockerLoad(t, archive, namedIndex(t, checkBlobs(t, extracted)))
}

// checkDockerLoad reads the archive as classic docker load does, through
// manifest.json: one image, tagged, for this machine (hack/image's
// -load-arch default), the same as the index's.
func checkDockerLoad(t *testing.T, archive string, idx v1.ImageIndex) {
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(archive) })
	if err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	if len(m) != 1 || !slices.Equal(m[0].RepoTags, []string{testTag}) {
		t.Fatalf("manifest.json %+v: want one image tagged %s", m, testTag)
	}
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatalf("the archive as a docker archive: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	want := runtime.GOARCH
	if _, built := machines[want]; !built {
		want = "amd64"
	}
	if cf.Architecture != want {
		t.Errorf("manifest.json's image is linux/%s, want this machine's linux/%s", cf.Architecture, want)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		if d.Platform == nil || d.Platform.Architecture != want {
			continue
		}
		indexed, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if name, _ := indexed.ConfigName(); name != cfgName {
			t.Errorf("manifest.json's config %s is not the index's linux/%s config %s", cfgName, want, name)
		}
	}
}

// untar extracts archive into dir and returns its entry names.
func untar(t *testing.T, archive, dir string) []string {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(hdr.Name, "/")
		if !filepath.IsLocal(name) {
			t.Fatalf("archive entry %q leaves the archive", hdr.Name)
		}
		names = append(names, name)
		dst := filepath.Join(dir, filepath.FromSlash(name))
		if hdr.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(dst, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
