package framework

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/peergroup/peergroup/internal/ociimage"
)

// maintainerOnly are packages a Debian package depends on only for its
// maintainer scripts (creating users, registering init scripts, asking
// debconf questions). `dpkg -x` runs no maintainer script, so a root
// filesystem extracted from the closure needs none of them, and leaving
// them out keeps perl and PAM out of every image. The closure stops at
// them: what only they depend on is left out too.
var maintainerOnly = map[string]bool{
	"adduser": true, "debconf": true, "cdebconf": true, "dpkg": true, "passwd": true,
	"install-info": true, "lsb-base": true, "sysvinit-utils": true, "init-system-helpers": true,
	"tar": true, "usrmerge": true, "usr-is-merged": true, "logrotate": true, "systemd": true,
	"systemd-sysv": true, "ucf": true, "procps": true,
}

// DebianRoot is a root filesystem extracted from Debian packages and the
// exact versions it holds.
type DebianRoot struct {
	Dir      string
	Packages []string // "name=version", sorted
}

// ExtractDebian downloads the dependency closure of packages from this
// machine's Debian archive (`apt-get download`, the candidate version) and
// extracts every package into a root filesystem under cache (`dpkg -x`),
// once: a later call with the same packages reuses both. Progress goes to
// say.
//
// With download false (the tests: they reach no network, `make
// debian-apps` fetches beforehand) a package not yet downloaded is an
// error naming that target.
func ExtractDebian(ctx context.Context, cache, name string, packages []string, download bool, say func(string, ...any)) (DebianRoot, error) {
	unlock, err := lockDir(cache)
	if err != nil {
		return DebianRoot{}, err
	}
	defer unlock()
	return extractDebian(ctx, cache, name, packages, download, say)
}

// extractDebian is ExtractDebian with the cache's lock held by the caller.
func extractDebian(ctx context.Context, cache, name string, packages []string, download bool, say func(string, ...any)) (DebianRoot, error) {
	root := DebianRoot{Dir: filepath.Join(cache, "rootfs", name)}
	debs := filepath.Join(cache, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return root, err
	}
	if _, err := candidates(ctx, packages); err != nil && download {
		// A fresh machine may have no package lists yet.
		say("debian %s: apt-get update", name)
		if out, err := exec.CommandContext(ctx, "apt-get", "update", "-qq").CombinedOutput(); err != nil {
			return root, fmt.Errorf("apt-get update: %w\n%s", err, tail(out))
		}
	}
	closure, err := debianClosure(ctx, packages)
	if err != nil {
		return root, err
	}
	versions, err := candidates(ctx, closure)
	if err != nil {
		return root, err
	}
	for _, p := range closure {
		root.Packages = append(root.Packages, p+"="+versions[p])
	}
	stamp := filepath.Join(root.Dir, ".peergroup-packages")
	want := strings.Join(root.Packages, "\n") + "\n"
	if have, err := os.ReadFile(stamp); err == nil && string(have) == want {
		return root, nil
	}
	var missing []string
	for _, p := range root.Packages {
		if _, err := debFile(debs, p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 && !download {
		return root, fmt.Errorf("debian %s: %d packages not downloaded (%s…): run `make debian-apps`", name, len(missing), missing[0])
	}
	if len(missing) > 0 {
		say("debian %s: downloading %d of %d packages", name, len(missing), len(root.Packages))
		cmd := exec.CommandContext(ctx, "apt-get", append([]string{"download", "-q"}, missing...)...)
		cmd.Dir = debs
		if out, err := cmd.CombinedOutput(); err != nil {
			return root, fmt.Errorf("apt-get download %s: %w\n%s", strings.Join(missing, " "), err, tail(out))
		}
	}
	if err := os.RemoveAll(root.Dir); err != nil {
		return root, err
	}
	if err := os.MkdirAll(root.Dir, 0o755); err != nil {
		return root, err
	}
	for i, p := range root.Packages {
		deb, err := debFile(debs, p)
		if err != nil {
			return root, err
		}
		if i%10 == 0 {
			say("debian %s: extracting %d/%d (%s)", name, i+1, len(root.Packages), p)
		}
		if out, err := exec.CommandContext(ctx, "dpkg", "-x", deb, root.Dir).CombinedOutput(); err != nil {
			return root, fmt.Errorf("dpkg -x %s: %w\n%s", deb, err, out)
		}
	}
	return root, os.WriteFile(stamp, []byte(want), 0o644)
}

// debianClosure walks Depends and Pre-Depends from packages (the first of
// each set of alternatives, virtual packages skipped), stopping at
// maintainerOnly.
func debianClosure(ctx context.Context, packages []string) ([]string, error) {
	seen := map[string]bool{}
	level := packages
	// One apt-cache call per level of the walk, not per package.
	for len(level) > 0 {
		var ask []string
		for _, p := range level {
			if !seen[p] && !maintainerOnly[p] {
				seen[p] = true
				ask = append(ask, p)
			}
		}
		if len(ask) == 0 {
			break
		}
		args := append([]string{"depends", "--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances"}, ask...)
		out, err := exec.CommandContext(ctx, "apt-cache", args...).Output()
		if err != nil {
			return nil, fmt.Errorf("apt-cache depends %s: %w", strings.Join(ask, " "), err)
		}
		level = firstAlternatives(out)
	}
	names := make([]string, 0, len(seen))
	for p := range seen {
		names = append(names, p)
	}
	sort.Strings(names)
	return names, nil
}

// firstAlternatives reads `apt-cache depends` output: a line starting with
// " |" has alternatives on the following lines, of which the first is
// taken. Virtual packages ("<debconf-2.0>") are skipped.
func firstAlternatives(out []byte) []string {
	var deps []string
	skipNext := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		alt := strings.HasPrefix(line, " |")
		field, dep, ok := strings.Cut(strings.TrimLeft(line, " |"), ": ")
		if !ok || (field != "Depends" && field != "PreDepends") {
			continue
		}
		if skipNext {
			skipNext = alt
			continue
		}
		if strings.HasPrefix(dep, "<") {
			// A virtual package names no files: the next alternative, if
			// any, is the one to take.
			continue
		}
		skipNext = alt
		deps = append(deps, strings.SplitN(dep, ":", 2)[0])
	}
	return deps
}

// candidates is the version `apt-get download` fetches of each package,
// read in one apt-cache call.
func candidates(ctx context.Context, pkgs []string) (map[string]string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", append([]string{"policy"}, pkgs...)...).Output()
	if err != nil {
		return nil, fmt.Errorf("apt-cache policy: %w", err)
	}
	versions := map[string]string{}
	var pkg string
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, " ") && strings.HasSuffix(line, ":") {
			pkg = strings.TrimSuffix(line, ":")
			continue
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Candidate: "); ok && v != "(none)" {
			versions[pkg] = v
		}
	}
	for _, p := range pkgs {
		if versions[p] == "" {
			return nil, fmt.Errorf("debian package %s: no candidate version (apt-get update?)", p)
		}
	}
	return versions, nil
}

// debFile finds the downloaded .deb of "name=version" (apt-get names it
// name_version_arch.deb, the version's epoch colon escaped as %3a).
func debFile(dir, pkgVersion string) (string, error) {
	name, version, _ := strings.Cut(pkgVersion, "=")
	matches, _ := filepath.Glob(filepath.Join(dir, name+"_"+strings.ReplaceAll(version, ":", "%3a")+"_*.deb"))
	if len(matches) == 0 {
		return "", fmt.Errorf("%s: not downloaded", pkgVersion)
	}
	return matches[0], nil
}

// lockDir serialises builders of one cache across test binaries.
func lockDir(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

func tail(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 2000 {
		s = "…" + s[len(s)-2000:]
	}
	return s
}

// TreeFiles lists a root filesystem as image files: regular files by
// source path with their mode, symbolic links as links. Directories come
// from the files' paths (ociimage makes them 0755).
func TreeFiles(root string) (map[string]ociimage.File, error) {
	files := map[string]ociimage.File{}
	err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." || info.IsDir() || strings.HasPrefix(rel, ".peergroup") {
			return nil
		}
		name := "/" + filepath.ToSlash(rel)
		switch {
		case info.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			files[name] = ociimage.File{Link: target}
		case info.Mode().IsRegular():
			files[name] = ociimage.File{Source: p, Mode: int64(info.Mode().Perm())}
		}
		return nil
	})
	return files, err
}
