// Package inspect is the back end of the peergroup CLI: inject (the
// webhook's injection applied to manifests), explain (why a pod would or
// would not be injected) and audit (members running without the
// injection). Each decides through admit.Decider with offline stand-ins
// for the cluster, so it never holds a rule of its own.
package inspect

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strings"

	jsonpatch "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/peergroup/peergroup/webhook/admit"
)

// InjectOptions configure InjectManifests.
type InjectOptions struct {
	Config admit.Config
	// NamespaceGroup stands in for the namespace label peergroup.dev/group
	// of every namespace the manifests land in.
	NamespaceGroup string
	// DefaultNamespace is where objects without metadata.namespace land,
	// for the excluded-namespace rule; the Services emitted for them carry
	// no namespace either, so `kubectl apply -n` places both together.
	DefaultNamespace string
}

// InjectResult is what InjectManifests did.
type InjectResult struct {
	// Injected names each pod template changed ("Deployment/db/cassandra").
	Injected []string
	// Services are the headless Services the webhook would create.
	Services []*corev1.Service
	Warnings []string
}

// templatePaths are where each workload kind keeps its pod template.
var templatePaths = map[string][]string{
	"Pod":                   {},
	"Deployment":            {"spec", "template"},
	"StatefulSet":           {"spec", "template"},
	"DaemonSet":             {"spec", "template"},
	"ReplicaSet":            {"spec", "template"},
	"ReplicationController": {"spec", "template"},
	"Job":                   {"spec", "template"},
	"CronJob":               {"spec", "jobTemplate", "spec", "template"},
	"PodTemplate":           {"template"},
}

// InjectManifests applies the webhook's mutation, offline, to every pod
// template in a YAML or JSON stream (one or many documents, Lists
// included) whose labels, or opts.NamespaceGroup, make it a member. The
// decision and the patch are the webhook's own (admit.Decider, as a
// dry-run admission); the patch is applied to the template as
// written, so fields peergroup does not touch stay as they were. The output starts with the headless Services
// the webhook would create, then the documents in order; a document with
// no member is copied byte for byte, and input without any member is
// returned unchanged. An error (invalid group, collision, bad tuning)
// names the object and changes nothing.
func InjectManifests(in []byte, opts InjectOptions) ([]byte, InjectResult, error) {
	res := InjectResult{}
	docs, err := splitDocuments(in)
	if err != nil {
		return nil, res, err
	}
	services := map[string]*corev1.Service{}
	inj := &injector{opts: opts, res: &res, services: services}
	out := make([][]byte, len(docs))
	changed := false
	for i, doc := range docs {
		out[i] = doc.body
		if emptyDocument(doc.body) {
			continue
		}
		obj := &unstructured.Unstructured{}
		jsonDoc, err := yaml.YAMLToJSON(doc.body)
		if err != nil {
			return nil, res, fmt.Errorf("document %d: not YAML or JSON: %w", i+1, err)
		}
		if err := obj.UnmarshalJSON(jsonDoc); err != nil {
			return nil, res, fmt.Errorf("document %d: not a Kubernetes object: %w", i+1, err)
		}
		did, err := inj.object(obj.Object)
		if err != nil {
			return nil, res, fmt.Errorf("document %d: %w", i+1, err)
		}
		if !did {
			continue
		}
		changed = true
		if out[i], err = yaml.Marshal(obj.Object); err != nil {
			return nil, res, fmt.Errorf("document %d: encode: %w", i+1, err)
		}
	}
	if !changed {
		return in, res, nil
	}
	keys := make([]string, 0, len(services))
	for k := range services {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var buf bytes.Buffer
	for _, k := range keys {
		svc := services[k]
		res.Services = append(res.Services, svc)
		b, err := serviceYAML(svc)
		if err != nil {
			return nil, res, err
		}
		buf.WriteString("---\n")
		buf.Write(b)
	}
	for i, d := range out {
		// The document's own separator line, comment included.
		buf.WriteString(cmp.Or(docs[i].separator, "---") + "\n")
		buf.Write(d)
		if len(d) > 0 && d[len(d)-1] != '\n' {
			buf.WriteByte('\n')
		}
	}
	return buf.Bytes(), res, nil
}

// injector injects one stream's objects, collecting what it did and the
// Services the webhook would create (one per namespace and name).
type injector struct {
	opts     InjectOptions
	res      *InjectResult
	services map[string]*corev1.Service
}

// object injects obj's pod template (or each item of a List) in place and
// reports whether anything changed.
func (in *injector) object(obj map[string]any) (bool, error) {
	kind, _ := obj["kind"].(string)
	if items, ok := obj["items"].([]any); ok && strings.HasSuffix(kind, "List") {
		return in.list(items)
	}
	meta, _ := obj["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	namespace, _ := meta["namespace"].(string)
	template, path, pod, err := podTemplate(obj)
	switch {
	case errors.Is(err, errNoTemplate):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("%s %s: %w", kind, name, err)
	}
	pod.Namespace = cmp.Or(namespace, in.opts.DefaultNamespace)
	asCreatedBy(pod, obj)
	what := kind + "/" + name
	if namespace != "" {
		what = kind + "/" + namespace + "/" + name
	}
	d, svc := decide(pod, in.opts.Config, namespaceLabels(in.opts.NamespaceGroup), &StaticServices{})
	switch {
	case !d.Allowed():
		return false, fmt.Errorf("%s: %s", what, d.Message)
	case d.Verdict != admit.VerdictInjected:
		// Not a member, excluded, or injected already (its Service is in
		// the output that injected it).
		return false, nil
	}
	if err := applyPatch(obj, template, path, d.Patch); err != nil {
		return false, fmt.Errorf("%s: apply the injection: %w", what, err)
	}
	for _, w := range d.Warnings {
		in.res.Warnings = append(in.res.Warnings, what+": "+w)
	}
	in.res.Injected = append(in.res.Injected, what)
	// Where the workload names no namespace, neither does its Service, so
	// `kubectl apply -n` places both together.
	svc.Desired.Namespace = namespace
	key := namespace + "/" + svc.Desired.Name
	if _, ok := in.services[key]; !ok {
		in.services[key] = svc.Desired
	}
	return true, nil
}

func (in *injector) list(items []any) (bool, error) {
	changed := false
	for j, item := range items {
		m, ok := item.(map[string]any)
		if !ok {
			continue
		}
		did, err := in.object(m)
		if err != nil {
			return false, fmt.Errorf("item %d: %w", j+1, err)
		}
		changed = changed || did
	}
	return changed, nil
}

// applyPatch applies the webhook's patch to the template as written, so
// fields peergroup does not touch stay as they were, and puts the result
// back at path in obj (obj itself for a Pod).
func applyPatch(obj, template map[string]any, path []string, patch []byte) error {
	// The patch's parents must exist, as they do in an object the API
	// server sends; a template may omit them.
	ensureMap(template, "metadata")
	ensureMap(template, "spec")
	raw, err := json.Marshal(template)
	if err != nil {
		return err
	}
	decoded, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		return err
	}
	patched, err := decoded.Apply(raw)
	if err != nil {
		return err
	}
	result := map[string]any{}
	if err := json.Unmarshal(patched, &result); err != nil {
		return err
	}
	if len(path) > 0 {
		return unstructured.SetNestedMap(obj, result, path...)
	}
	clear(obj)
	maps.Copy(obj, result)
	return nil
}

func ensureMap(m map[string]any, key string) {
	if _, ok := m[key].(map[string]any); !ok {
		m[key] = map[string]any{}
	}
}

// serviceYAML encodes a Service the way a user would write it: no status,
// no creationTimestamp.
func serviceYAML(svc *corev1.Service) ([]byte, error) {
	raw, err := json.Marshal(svc)
	if err != nil {
		return nil, err
	}
	m := map[string]any{}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	delete(m, "status")
	if meta, ok := m["metadata"].(map[string]any); ok {
		delete(meta, "creationTimestamp")
	}
	return yaml.Marshal(m)
}

var errNoTemplate = errors.New("no pod template")

// podTemplate finds obj's pod template (obj itself for a Pod) as a copy,
// where it sits, and the pod it describes; errNoTemplate for kinds without
// one or a workload missing it.
func podTemplate(obj map[string]any) (template map[string]any, path []string, pod *corev1.Pod, err error) {
	kind, _ := obj["kind"].(string)
	path, ok := templatePaths[kind]
	if !ok {
		return nil, nil, nil, errNoTemplate
	}
	if apiVersion, _ := obj["apiVersion"].(string); kind == "Pod" && apiVersion != "v1" {
		// The webhook admits only core v1 Pods: a Pod of another group is
		// not a pod the API server would send it.
		return nil, nil, nil, fmt.Errorf("apiVersion %q kind Pod is not a v1 Pod", apiVersion)
	}
	template = obj
	if len(path) > 0 {
		t, found, err := unstructured.NestedMap(obj, path...)
		if err != nil || !found {
			return nil, nil, nil, errNoTemplate
		}
		template = t
	}
	raw, err := json.Marshal(template)
	if err != nil {
		return nil, nil, nil, err
	}
	pod = &corev1.Pod{}
	if err := json.Unmarshal(raw, pod); err != nil {
		return nil, nil, nil, fmt.Errorf("pod template does not decode: %w", err)
	}
	return template, path, pod, nil
}

// PodFromManifest reads one object, a Pod or a workload, and returns its
// pod (the template of a workload, with the workload's namespace).
func PodFromManifest(in []byte) (*corev1.Pod, error) {
	docs, err := splitDocuments(in)
	if err != nil {
		return nil, err
	}
	for _, doc := range docs {
		if emptyDocument(doc.body) {
			continue
		}
		obj := map[string]any{}
		if err := yaml.Unmarshal(doc.body, &obj); err != nil {
			return nil, fmt.Errorf("not YAML or JSON: %w", err)
		}
		_, path, pod, err := podTemplate(obj)
		if errors.Is(err, errNoTemplate) {
			kind, _ := obj["kind"].(string)
			if p, ok := templatePaths[kind]; ok {
				return nil, fmt.Errorf("%s has no pod template at %s", kind, strings.Join(p, "."))
			}
			return nil, fmt.Errorf("kind %q has no pod template; want a Pod or one of Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job, CronJob, PodTemplate", kind)
		}
		if err != nil {
			return nil, err
		}
		if len(path) > 0 {
			meta, _ := obj["metadata"].(map[string]any)
			pod.Namespace, _ = meta["namespace"].(string)
			asCreatedBy(pod, obj)
			if pod.Name == "" {
				name, _ := meta["name"].(string)
				pod.GenerateName = name + "-"
			}
		}
		return pod, nil
	}
	return nil, errors.New("no object in the input")
}
