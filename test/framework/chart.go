// Package framework runs peergroup against a real local control plane:
// kube-apiserver and etcd built from source (hack/controlplane), the chart
// rendered with Helm's own packages, and the webhook registered by loopback
// URL. Tests, the demo and benchmarks share it.
package framework

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// RepoRoot is the repository root, found from this file's location so tests
// work from any package directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// ChartDir is charts/peergroup.
func ChartDir() string { return filepath.Join(RepoRoot(), "charts", "peergroup") }

// ChartAppVersion is the chart's appVersion: the tag of its default image.
func ChartAppVersion() (string, error) {
	ch, err := loader.Load(ChartDir())
	if err != nil {
		return "", fmt.Errorf("load chart: %w", err)
	}
	return ch.Metadata.AppVersion, nil
}

// Rendered is a chart rendered as `helm template` would, one object per
// document, in file order.
type Rendered struct {
	Objects []*unstructured.Unstructured
	Notes   string
}

// Render renders the chart with values, as release name in namespace.
func Render(release, namespace string, values map[string]any) (*Rendered, error) {
	ch, err := loader.Load(ChartDir())
	if err != nil {
		return nil, fmt.Errorf("load chart: %w", err)
	}
	if err := chartutil.ProcessDependenciesWithMerge(ch, values); err != nil {
		return nil, fmt.Errorf("process chart dependencies: %w", err)
	}
	vals, err := chartutil.ToRenderValues(ch, values, chartutil.ReleaseOptions{
		Name: release, Namespace: namespace, IsInstall: true, Revision: 1,
	}, chartutil.DefaultCapabilities)
	if err != nil {
		return nil, fmt.Errorf("build render values: %w", err)
	}
	files, err := engine.Render(ch, vals)
	if err != nil {
		return nil, fmt.Errorf("render chart: %w", err)
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	out := &Rendered{}
	for _, name := range names {
		if strings.HasSuffix(name, "NOTES.txt") {
			out.Notes = files[name]
			continue
		}
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		objs, err := decodeYAML(files[name])
		if err != nil {
			return nil, fmt.Errorf("decode %s: %w", name, err)
		}
		out.Objects = append(out.Objects, objs...)
	}
	return out, nil
}

func decodeYAML(doc string) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewBufferString(doc), 4096)
	var out []*unstructured.Unstructured
	for {
		obj := map[string]any{}
		if err := dec.Decode(&obj); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, err
		}
		if len(obj) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: obj})
	}
}

// DecodeFile reads a multi-document YAML file of Kubernetes objects.
func DecodeFile(path string) ([]*unstructured.Unstructured, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	objs, err := decodeYAML(string(data))
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", path, err)
	}
	return objs, nil
}

// Find returns the rendered object of kind and name, or nil.
func (r *Rendered) Find(kind, name string) *unstructured.Unstructured {
	for _, o := range r.Objects {
		if o.GetKind() == kind && (name == "" || o.GetName() == name) {
			return o
		}
	}
	return nil
}

// Typed converts the first rendered object of kind into a typed object.
func (r *Rendered) Typed(kind string, into any) error {
	u := r.Find(kind, "")
	if u == nil {
		return fmt.Errorf("chart rendered no %s", kind)
	}
	if err := k8sruntime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
		return fmt.Errorf("convert %s: %w", kind, err)
	}
	return nil
}

// Kinds lists the kinds rendered, for assertions on optional objects.
func (r *Rendered) Kinds() []string {
	var kinds []string
	for _, o := range r.Objects {
		kinds = append(kinds, o.GetKind()+"/"+o.GetName())
	}
	return kinds
}
