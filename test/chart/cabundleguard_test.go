package chart

import (
	"errors"
	"io"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"k8s.io/apimachinery/pkg/util/yaml"

	"github.com/peergroup/peergroup/test/framework"
)

// renderKinds renders the chart with apiVersions added to Helm's default
// Capabilities (as `helm install` discovers them, or `helm template
// --api-versions`) and returns kind/name of each object.
func renderKinds(t *testing.T, values map[string]any, apiVersions ...string) []string {
	t.Helper()
	ch, err := loader.Load(framework.ChartDir())
	if err != nil {
		t.Fatal(err)
	}
	caps := chartutil.DefaultCapabilities.Copy()
	caps.APIVersions = append(append(chartutil.VersionSet{}, caps.APIVersions...), apiVersions...)
	vals, err := chartutil.ToRenderValues(ch, values, chartutil.ReleaseOptions{Name: "peergroup", Namespace: "peergroup-system", IsInstall: true}, caps)
	if err != nil {
		t.Fatal(err)
	}
	files, err := engine.Render(ch, vals)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for name, doc := range files {
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		dec := yaml.NewYAMLOrJSONDecoder(strings.NewReader(doc), 4096)
		for {
			var obj struct {
				Kind     string
				Metadata struct{ Name string }
			}
			if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("decode %s: %v", name, err)
			}
			if obj.Kind != "" {
				kinds = append(kinds, obj.Kind+"/"+obj.Metadata.Name)
			}
		}
	}
	return kinds
}

// The caBundle guard (docs/install.md, GitOps) is rendered in selfSigned mode on
// API servers serving MutatingAdmissionPolicy v1, and nowhere else.
func TestCABundleGuardRenderedWhereServed(t *testing.T) {
	const mapV1 = "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"
	guard := []string{"MutatingAdmissionPolicy/peergroup-keep-cabundle", "MutatingAdmissionPolicyBinding/peergroup-keep-cabundle"}
	has := func(kinds []string, want string) bool {
		for _, k := range kinds {
			if k == want {
				return true
			}
		}
		return false
	}
	for name, c := range map[string]struct {
		values      map[string]any
		apiVersions []string
		want        bool
	}{
		"selfSigned, served":       {nil, []string{mapV1}, true},
		"selfSigned, not served":   {nil, nil, false},
		"certManager, served":      {mode("certManager", nil), []string{mapV1}, false},
		"provided, served":         {mode("provided", map[string]any{"provided": map[string]any{"secretName": "x", "caBundle": "Y2E="}}), []string{mapV1}, false},
		"selfSigned, only v1beta1": {nil, []string{"admissionregistration.k8s.io/v1beta1/MutatingAdmissionPolicy"}, false},
	} {
		kinds := renderKinds(t, c.values, c.apiVersions...)
		for _, g := range guard {
			if has(kinds, g) != c.want {
				t.Errorf("%s: %s rendered %v, want %v (%v)", name, g, has(kinds, g), c.want, kinds)
			}
		}
	}
}
