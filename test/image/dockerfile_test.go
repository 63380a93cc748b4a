// Package image checks the container image recipe without a Docker engine:
// the Dockerfile parses with BuildKit's own parser and has the shape the
// project promises, and the binaries built with its flags are static.
package image

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/parser"

	"github.com/peergroup/peergroup/test/framework"
)

func TestDockerfile(t *testing.T) {
	f, err := os.Open(filepath.Join(framework.RepoRoot(), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		t.Fatalf("Dockerfile does not parse: %v", err)
	}
	var froms, users, copies []string
	var build, entrypoint string
	for _, n := range res.AST.Children {
		line := strings.TrimSpace(n.Original)
		switch strings.ToLower(n.Value) {
		case "from":
			froms = append(froms, line)
		case "user":
			users = append(users, n.Next.Value)
		case "copy":
			copies = append(copies, line)
		case "run":
			if strings.Contains(line, "go build") {
				build = line
			}
		case "entrypoint":
			entrypoint = line
		}
	}
	if len(froms) != 2 || !strings.Contains(froms[0], " AS build") || !strings.Contains(froms[1], "distroless/static") {
		t.Errorf("want a build stage and a distroless static final stage, got %q", froms)
	}
	if len(froms) > 0 && !strings.Contains(froms[0], "--platform=$BUILDPLATFORM") || !strings.Contains(build, "GOARCH=${TARGETARCH}") {
		t.Errorf("the build stage must run on the builder's platform and cross-compile for the target's: %q, %s", froms, build)
	}
	checkPlatformArgs(t, res.AST)
	if len(users) != 1 || users[0] != "65532:65532" {
		t.Errorf("final stage must run as 65532, got %q", users)
	}
	for _, flag := range []string{"CGO_ENABLED=0", "-trimpath", "-X main.version=${VERSION}", "./cmd/peergroup-webhook", "./cmd/seed-discovery"} {
		if !strings.Contains(build, flag) {
			t.Errorf("build step lacks %s: %s", flag, build)
		}
	}
	last := copies[len(copies)-1]
	if !strings.Contains(last, "--from=build") || !strings.Contains(last, "seed-discovery") || !strings.Contains(last, "/usr/local/bin/") {
		t.Errorf("both binaries must land in /usr/local/bin: %s", last)
	}
	if !strings.Contains(entrypoint, "/usr/local/bin/peergroup-webhook") {
		t.Errorf("entrypoint %s", entrypoint)
	}
}

// checkPlatformArgs: the build stage declares TARGETOS and TARGETARCH
// without defaults. BuildKit gives the automatic platform arguments their
// values only to an ARG without a default (dockerfile2llb's dispatchArg), so
// a default would compile every platform's binaries for that one.
func checkPlatformArgs(t *testing.T, ast *parser.Node) {
	t.Helper()
	declared := map[string]bool{}
	stage := -1
	for _, n := range ast.Children {
		switch strings.ToLower(n.Value) {
		case "from":
			stage++
		case "arg":
			if stage != 0 {
				continue
			}
			// The parser keeps each NAME or NAME=DEFAULT as one word.
			for w := n.Next; w != nil; w = w.Next {
				key, def, hasDefault := strings.Cut(w.Value, "=")
				if key != "TARGETOS" && key != "TARGETARCH" {
					continue
				}
				declared[key] = true
				if hasDefault {
					t.Errorf("build stage: ARG %s=%s: a default overrides the target platform's value", key, def)
				}
			}
		}
	}
	if !declared["TARGETOS"] || !declared["TARGETARCH"] {
		t.Errorf("build stage declares %v, want ARG TARGETOS and TARGETARCH (the go build uses them)", declared)
	}
}

// The binaries built as the Dockerfile builds them are static: no ELF
// interpreter and no shared libraries, so they run on distroless/static;
// for arm64 too, as a multi-platform build cross-compiles them.
func TestBinariesAreStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds both binaries")
	}
	for _, target := range []struct {
		arch    string
		machine elf.Machine
	}{{"amd64", elf.EM_X86_64}, {"arm64", elf.EM_AARCH64}} {
		t.Run(target.arch, func(t *testing.T) {
			out := t.TempDir()
			cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=test", "-o", out+"/", "./cmd/peergroup-webhook", "./cmd/seed-discovery")
			cmd.Dir = framework.RepoRoot()
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+target.arch)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("go build: %v\n%s", err, b)
			}
			for _, bin := range []string{"peergroup-webhook", "seed-discovery"} {
				f, err := elf.Open(filepath.Join(out, bin))
				if err != nil {
					t.Fatal(err)
				}
				if f.Machine != target.machine {
					t.Errorf("%s is built for %s, want %s", bin, f.Machine, target.machine)
				}
				for _, p := range f.Progs {
					if p.Type == elf.PT_INTERP {
						t.Errorf("%s has an ELF interpreter: dynamically linked", bin)
					}
				}
				if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
					t.Errorf("%s needs shared libraries %v", bin, libs)
				}
				f.Close()
			}
		})
	}
}
