// Package layout pins the architecture docs/design.md ("Layers") describes,
// so a new import cannot quietly undo it.
package layout

import (
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/peergroup/peergroup"

type goPackage struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

// packages lists the module's packages with their imports and
// dependencies, as the go command sees them.
func packages(t *testing.T) map[string]goPackage {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports,Deps", "./...")
	cmd.Dir = "../.." // go test runs in the package directory
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]goPackage{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p goPackage
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs[p.ImportPath] = p
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

func TestLayers(t *testing.T) {
	pkgs := packages(t)
	must := func(pkg string) goPackage {
		p, ok := pkgs[module+"/"+pkg]
		if !ok {
			t.Fatalf("package %s not found", pkg)
		}
		return p
	}
	// Binaries only under cmd/: nothing imports them.
	for _, p := range pkgs {
		for _, imp := range p.Imports {
			if strings.HasPrefix(imp, module+"/cmd/") {
				t.Errorf("%s imports %s: packages under cmd/ are binaries, not libraries", p.ImportPath, imp)
			}
		}
	}
	forbidden := []struct {
		pkg  string
		deps []string
		why  string
	}{
		{"cmd/peergroup", []string{"sigs.k8s.io/controller-runtime/pkg/manager", module + "/certs", module + "/webhook/server"},
			"the CLI needs the injection flags (admit.RegisterFlags), not the server"},
		{"webhook/admit", []string{"net/http/httptest", "sigs.k8s.io/controller-runtime/pkg/manager", "sigs.k8s.io/controller-runtime/pkg/cache", module + "/webhook"},
			"the admission core reaches the cluster only through its ports"},
		{"contract", []string{"sigs.k8s.io/controller-runtime/pkg/client", module + "/webhook/admit", module + "/discovery"},
			"the contract is shared by both sides and depends on neither"},
		{"discovery", []string{"sigs.k8s.io/controller-runtime/pkg/client", module + "/webhook/admit"},
			"seed-discovery shares only the contract with the webhook"},
	}
	for _, f := range forbidden {
		p := must(f.pkg)
		for _, dep := range f.deps {
			if slices.Contains(p.Deps, dep) {
				t.Errorf("%s depends on %s: %s", f.pkg, dep, f.why)
			}
		}
	}
	for _, pkg := range []string{"webhook/admit", "discovery", "cmd/peergroup"} {
		if !slices.Contains(must(pkg).Deps, module+"/contract") {
			t.Errorf("%s does not use the contract package", pkg)
		}
	}
}
