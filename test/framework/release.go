package framework

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
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
	dir := filepath.Join(RepoRoot(), ".cache", "releases", r.Version+"-"+r.Commit[:12])
	src, bin := filepath.Join(dir, "src"), filepath.Join(dir, "bin")
	if !built(bin) {
		if err := extractCommit(ctx, r, src, progress); err != nil {
			return err
		}
		fmt.Fprintf(progress, "    release %s: building its binaries (go build in %s)\n", r.Version, src)
		if err := ociimage.BuildStaticIn(ctx, src, bin, r.Version, "", "./cmd/peergroup-webhook", "./cmd/seed-discovery"); err != nil {
			return fmt.Errorf("release %s: %w", r.Version, err)
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
	if err := exec.CommandContext(ctx, "git", "-C", RepoRoot(), "cat-file", "-e", r.Commit+"^{commit}").Run(); err != nil {
		return fmt.Errorf("release %s: commit %s is not in this clone (a shallow clone? `git fetch --unshallow`): %w", r.Version, r.Commit, err)
	}
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

// built reports whether both of the image's binaries are in bin.
func built(bin string) bool {
	for _, b := range []string{"peergroup-webhook", "seed-discovery"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return false
		}
	}
	return true
}
