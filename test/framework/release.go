package framework

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/peergroup/peergroup/internal/ociimage"
)

// Release is a published version of peergroup: its chart and image, made
// from the commit it was tagged at.
type Release struct {
	Version string
	// Commit is the tree the release was made from (tag v<Version>). The
	// commit, not the tag, is what is built: a tag can be moved.
	Commit string
}

// PreviousRelease is the release this tree's chart upgrades from: what
// users run when they `helm upgrade` to this one. Move it forward with
// each release (docs/development.md "Releasing").
var PreviousRelease = Release{Version: "0.1.0", Commit: "c05fdfc564563ea35a4a3c6f32f1d753dec2441f"}

// PushRelease makes r's image and chart as its release did, from r's own
// sources, and pushes both where users get them: the image as
// ghcr.io/peergroup/peergroup:<version> (the node resolves ghcr.io at its
// registry) and the chart to oci://ghcr.io/peergroup/charts (Helm reaches
// it through the cluster's mirror). The sources and binaries are cached
// under .cache/releases; progress goes to progress.
func (lc *LocalCluster) PushRelease(ctx context.Context, r Release, progress io.Writer) error {
	if lc.Node == nil || lc.mirror == nil {
		return fmt.Errorf("release %s: the cluster has no real node and registry mirror to push it to", r.Version)
	}
	if err := r.Check(); err != nil {
		return err
	}
	goVersion, err := exec.CommandContext(ctx, "go", "env", "GOVERSION", "GOARCH").Output()
	if err != nil {
		return fmt.Errorf("go env: %w", err)
	}
	// One build per commit, toolchain and architecture; bin appears only
	// complete (built aside, then renamed), so a killed build is redone.
	// Two builds never share dir: a cluster with a real node holds the
	// machine's node lock while it runs.
	stamp := strings.Join(strings.Fields(string(goVersion)), "-")
	dir := filepath.Join(cacheDir(), "releases", r.Version+"-"+r.Commit[:12])
	src, bin := filepath.Join(dir, "src"), filepath.Join(dir, "bin-"+stamp)
	if _, err := os.Stat(bin); err != nil {
		if err := extractCommit(ctx, r, src, progress); err != nil {
			return err
		}
		fmt.Fprintf(progress, "    release %s: building its binaries (go build in %s)\n", r.Version, src)
		partial := bin + ".partial"
		if err := os.RemoveAll(partial); err != nil {
			return err
		}
		if err := ociimage.BuildStaticIn(ctx, src, partial, r.Version, "", "./cmd/peergroup-webhook", "./cmd/seed-discovery"); err != nil {
			return fmt.Errorf("release %s: %w", r.Version, err)
		}
		if err := os.Rename(partial, bin); err != nil {
			return err
		}
	}
	// The release's binaries in this tree's image layout, which has not
	// changed since 0.1.0; a release that changes it needs its own
	// builder (its hack/image) here.
	img, err := ociimage.Build(ociimage.Peergroup(bin, r.Version))
	if err != nil {
		return fmt.Errorf("release %s: image: %w", r.Version, err)
	}
	if _, err := lc.Node.Registry.Push(ctx, "peergroup/peergroup:"+r.Version, img); err != nil {
		return fmt.Errorf("release %s: %w", r.Version, err)
	}
	pkg := filepath.Join(lc.LogDir, "chart-package-"+r.Version)
	var out strings.Builder
	line := fmt.Sprintf("helm package %s -d %s && helm push %s/peergroup-%s.tgz oci://%s/peergroup/charts --plain-http",
		filepath.Join(src, "charts", "peergroup"), pkg, pkg, r.Version, lc.Node.Registry.Host)
	if err := lc.Shell(ctx, &out, line); err != nil {
		return fmt.Errorf("release %s: chart: %w\n%s", r.Version, err, out.String())
	}
	fmt.Fprintf(progress, "    release %s: image and chart pushed\n", r.Version)
	return nil
}

// extractCommit writes r's tree to src (replacing a partial one) with git
// archive: the release's sources, not this checkout's.
func extractCommit(ctx context.Context, r Release, src string, progress io.Writer) error {
	fmt.Fprintf(progress, "    release %s: its sources from commit %s\n", r.Version, r.Commit[:12])
	if err := os.RemoveAll(src); err != nil {
		return err
	}
	if err := os.MkdirAll(src, 0o755); err != nil {
		return err
	}
	archive := exec.CommandContext(ctx, "git", "-C", RepoRoot(), "archive", "--format=tar", r.Commit)
	untar := exec.CommandContext(ctx, "tar", "-x", "-C", src)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return err
	}
	untar.Stdin = pipe
	var archiveErr, untarErr strings.Builder
	archive.Stderr, untar.Stderr = &archiveErr, &untarErr
	if err := untar.Start(); err != nil {
		return err
	}
	if err := archive.Run(); err != nil {
		_ = untar.Wait()
		return fmt.Errorf("release %s: git archive %s: %w\n%s", r.Version, r.Commit, err, archiveErr.String())
	}
	if err := untar.Wait(); err != nil {
		return fmt.Errorf("release %s: tar: %w\n%s", r.Version, err, untarErr.String())
	}
	return nil
}

// Check verifies the record against the repository: r.Commit is a
// commit here, its chart is version r.Version (version and appVersion),
// and tag v<Version>, where it exists, names r.Commit. A release record
// pointing at the wrong tree fails here, before anything is built.
func (r Release) Check() error {
	git := func(args ...string) (string, error) {
		out, err := exec.Command("git", append([]string{"-C", RepoRoot()}, args...)...).Output()
		return strings.TrimSpace(string(out)), err
	}
	if _, err := git("cat-file", "-e", r.Commit+"^{commit}"); err != nil {
		return fmt.Errorf("release %s: commit %s is not in this clone (a shallow clone? `git fetch --unshallow`): %w", r.Version, r.Commit, err)
	}
	chart, err := git("show", r.Commit+":charts/peergroup/Chart.yaml")
	if err != nil {
		return fmt.Errorf("release %s: its Chart.yaml: %w", r.Version, err)
	}
	for _, want := range []string{"version: " + r.Version, `appVersion: "` + r.Version + `"`} {
		if !slices.Contains(strings.Split(chart, "\n"), want) {
			return fmt.Errorf("release %s: the chart of commit %s has no line %q", r.Version, r.Commit[:12], want)
		}
	}
	if tagged, err := git("rev-parse", "-q", "--verify", "v"+r.Version+"^{commit}"); err == nil && tagged != r.Commit {
		return fmt.Errorf("release %s: tag v%s is commit %s, the record says %s", r.Version, r.Version, tagged, r.Commit)
	}
	return nil
}

// cacheDir is where builds are kept: $PEERGROUP_CACHE, else .cache.
func cacheDir() string {
	if c := os.Getenv("PEERGROUP_CACHE"); c != "" {
		return c
	}
	return filepath.Join(RepoRoot(), ".cache")
}
