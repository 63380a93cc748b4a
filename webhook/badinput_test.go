package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/webhook/admit"
)

// TestBadInputMatrix sends each kind of bad input through the whole
// server-side path and requires a specific answer: the HTTP status, whether
// the pod is allowed, and the words of the message a user would read. The
// allowed cases also check that what was patched is right.
func TestBadInputMatrix(t *testing.T) {
	member := func(mod func(p map[string]any)) []byte {
		p := map[string]any{
			"metadata": map[string]any{"name": "p", "namespace": "db", "labels": map[string]any{contract.GroupLabel: "cassandra"}},
			"spec":     map[string]any{"containers": []any{map[string]any{"name": "app", "image": "x"}}},
		}
		if mod != nil {
			mod(p)
		}
		b, _ := json.Marshal(p)
		return b
	}
	meta := func(p map[string]any) map[string]any { return p["metadata"].(map[string]any) }
	annotate := func(k, v string) func(map[string]any) {
		return func(p map[string]any) { meta(p)["annotations"] = map[string]any{k: v} }
	}
	label := func(k, v string) func(map[string]any) {
		return func(p map[string]any) { meta(p)["labels"].(map[string]any)[k] = v }
	}
	containers := func(cs ...any) func(map[string]any) {
		return func(p map[string]any) { p["spec"].(map[string]any)["containers"] = cs }
	}
	specField := func(k string, v any) func(map[string]any) {
		return func(p map[string]any) { p["spec"].(map[string]any)[k] = v }
	}
	hundred := make([]any, 100)
	for i := range hundred {
		hundred[i] = map[string]any{"name": fmt.Sprintf("c%d", i), "image": "x"}
	}
	review := func(pod []byte) []byte { return reviewBody(pod, "CREATE") }
	inNamespace := func(ns string, pod []byte) []byte {
		return bytes.Replace(review(pod), []byte(`"namespace":"db"`), []byte(`"namespace":"`+ns+`"`), 1)
	}
	long := strings.Repeat("a", 64)
	threeMiB := strings.Repeat("x", 3<<20)

	cases := []struct {
		name    string
		body    []byte
		code    int
		allowed bool
		message string                  // in the result message, or in a warning
		check   func(*corev1.Pod) error // the patched pod, for allowed cases
	}{
		{name: "not JSON", body: []byte("{{{"), code: 400, message: "not a JSON AdmissionReview"},
		{name: "empty body", body: nil, code: 400, message: "request body is empty"},
		{name: "wrong kind", body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"Pod"}`), code: 400, message: `kind "Pod"`},
		{name: "wrong version", body: []byte(`{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"1"}}`), code: 400, message: "admission.k8s.io/v1beta1"},
		{name: "no request", body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), code: 400, message: "no request"},
		{name: "no uid", body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"kind":{"version":"v1","kind":"Pod"}}}`), code: 400, message: "no uid"},
		{name: "missing object", body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"db"}}`), code: 200, message: "no object"},
		{name: "not a pod resource", body: bytes.Replace(review(member(nil)), []byte(`"kind":"Pod"`), []byte(`"kind":"Service"`), 1), code: 200, message: "only v1 Pod"},
		{name: "object is a Service", body: review(member(func(p map[string]any) { p["apiVersion"], p["kind"] = "v1", "Service" })), code: 400, message: `the review's object is apiVersion "v1" kind "Service", not a v1 Pod`},
		{name: "object of another group", body: review(member(func(p map[string]any) { p["apiVersion"], p["kind"] = "apps/v1", "Pod" })), code: 400, message: `apiVersion "apps/v1" kind "Pod", not a v1 Pod`},
		{name: "object says v1 Pod", body: review(member(func(p map[string]any) { p["apiVersion"], p["kind"] = "v1", "Pod" })), code: 200, allowed: true, check: injectedContainers(1)},
		{name: "pod of the wrong shape", body: review([]byte(`{"spec":{"containers":{"a":1}}}`)), code: 400, message: "cannot unmarshal"},
		{name: "body over the limit", body: bytes.Repeat([]byte(" "), MaxRequestBytes+1), code: 413, message: "larger than"},
		{name: "pod of 3 MiB", body: review(member(annotate("big", threeMiB))), code: 200, allowed: true, check: injectedContainers(1)},
		{name: "100 containers", body: review(member(containers(hundred...))), code: 200, allowed: true, check: injectedContainers(100)},
		{name: "duplicate env names already present", body: review(member(containers(map[string]any{"name": "app", "image": "x", "env": []any{
			map[string]any{"name": "POD_NAMESPACE", "value": "a"}, map[string]any{"name": "POD_NAMESPACE", "value": "b"}}}))),
			code: 200, allowed: true, message: `sets POD_NAMESPACE to "a"; kept as set`, check: func(p *corev1.Pod) error {
				if n := envCount(p.Spec.Containers[0].Env, contract.EnvPodNamespace); n != 2 {
					return fmt.Errorf("POD_NAMESPACE %d times, want the user's two and no third", n)
				}
				return injectedContainers(1)(p)
			}},
		{name: "volume name collision", body: review(member(specField("volumes", []any{map[string]any{"name": contract.SeedsVolumeName, "hostPath": map[string]any{"path": "/"}}}))),
			code: 200, message: `volume named "peergroup-seeds" that is not an emptyDir`},
		{name: "mount path collision", body: review(member(containers(map[string]any{"name": "app", "image": "x", "volumeMounts": []any{map[string]any{"name": "data", "mountPath": contract.SeedsMountPath}}}))),
			code: 200, message: `mounts volume "data" at /var/run/peergroup`},
		{name: "init container name collision", body: review(member(specField("initContainers", []any{map[string]any{"name": contract.InitContainerName, "image": "mine"}}))),
			code: 200, message: `init container named "seed-discovery" that is not peergroup's`},
		{name: "app container name collision", body: review(member(containers(map[string]any{"name": contract.InitContainerName, "image": "x"}))),
			code: 200, message: `container named "seed-discovery"`},
		{name: "windows pod (spec.os)", body: review(member(specField("os", map[string]any{"name": "windows"}))),
			code: 200, message: `the pod sets spec.os.name "windows"; the seed-discovery init container runs on Linux only`},
		{name: "windows node selector", body: review(member(specField("nodeSelector", map[string]any{corev1.LabelOSStable: "windows"}))),
			code: 200, message: "the pod selects nodes with kubernetes.io/os=windows; the seed-discovery init container runs on Linux only"},
		{name: "linux declared both ways", body: review(member(func(p map[string]any) {
			specField("os", map[string]any{"name": "linux"})(p)
			specField("nodeSelector", map[string]any{corev1.LabelOSStable: "linux"})(p)
		})), code: 200, allowed: true, check: injectedContainers(1)},
		{name: "group label in the webhook's own namespace", body: inNamespace("peergroup-system", member(nil)), code: 200, allowed: true, message: "pods in namespace peergroup-system are never injected", check: notPatched},
		{name: "group label in kube-system", body: inNamespace("kube-system", member(nil)), code: 200, allowed: true, message: "pods in namespace kube-system are never injected", check: notPatched},
		{name: "unicode group", body: review(member(label(contract.GroupLabel, "caßandra"))), code: 200, message: `group value "caßandra" is invalid: it must be a DNS-1035 label`},
		{name: "overlong group", body: review(member(label(contract.GroupLabel, long))), code: 200, message: "must be no more than 63 characters"},
		{name: "uppercase group", body: review(member(label(contract.GroupLabel, "Cassandra"))), code: 200, message: `"Cassandra" is invalid`},
		{name: "unicode service annotation", body: review(member(annotate(contract.ServiceAnnotation, "sérvice"))), code: 200, message: `annotation peergroup.dev/service value "sérvice" is invalid`},
		{name: "overlong service annotation", body: review(member(annotate(contract.ServiceAnnotation, long))), code: 200, message: "must be no more than 63 characters"},
		{name: "opt-out value not false", body: review(member(label(contract.InjectLabel, "nope"))), code: 200, allowed: true, check: injectedContainers(1)},
		{name: "seed count zero", body: review(member(annotate(contract.Domain+"/seed-count", "0"))), code: 200, message: `annotation peergroup.dev/seed-count value "0" is invalid`},
		{name: "seed count huge", body: review(member(annotate(contract.Domain+"/seed-count", "99999999999999999999"))), code: 200, message: "peergroup.dev/seed-count"},
		{name: "seed count in other digits", body: review(member(annotate(contract.Domain+"/seed-count", "٣"))), code: 200, message: `"٣" is invalid`},
		{name: "expected peers negative", body: review(member(annotate(contract.Domain+"/expected-peers", "-1"))), code: 200, message: "peergroup.dev/expected-peers"},
		{name: "stable margin not a duration", body: review(member(annotate(contract.Domain+"/stable-margin", "soon"))), code: 200, message: "peergroup.dev/stable-margin"},
		{name: "founding unknown", body: review(member(annotate(contract.Domain+"/founding", "everyone"))), code: 200, message: "one of lowest, ordinal0, never"},
		{name: "port name overlong", body: review(member(annotate(contract.Domain+"/port-name", "a-port-name-much-too-long"))), code: 200, message: "peergroup.dev/port-name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := fuzzServer("")
			h.Webhook.Handler.(*Handler).Decider.Config.ExcludedNamespaces = []string{"kube-system", "peergroup-system"}
			code, review, err := post(h, tc.body)
			if err != nil || review.Response == nil {
				t.Fatalf("HTTP %d: answer is not an AdmissionReview: %v", code, err)
			}
			resp := review.Response
			if code != tc.code {
				t.Fatalf("HTTP %d, want %d: %+v", code, tc.code, resp.Result)
			}
			if resp.Allowed != tc.allowed {
				t.Fatalf("allowed=%v, want %v: %+v", resp.Allowed, tc.allowed, resp.Result)
			}
			said := strings.Join(resp.Warnings, "\n")
			if resp.Result != nil {
				said = resp.Result.Message + "\n" + said
			}
			if !strings.Contains(said, tc.message) {
				t.Errorf("answer %q does not say %q", said, tc.message)
			}
			if !tc.allowed && (resp.Result == nil || resp.Result.Message == "" || len(resp.Patch) > 0) {
				t.Errorf("a refusal needs a message and no patch: %+v", resp)
			}
			if tc.check != nil {
				if err := tc.check(patchedPod(t, tc.body, resp.Patch)); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func injectedContainers(n int) func(*corev1.Pod) error {
	return func(p *corev1.Pod) error {
		if len(p.Spec.Containers) != n {
			return fmt.Errorf("%d containers, want %d", len(p.Spec.Containers), n)
		}
		for _, c := range p.Spec.Containers {
			if envCount(c.Env, contract.EnvSeedsFile) != 1 || !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == contract.SeedsVolumeName }) {
				return fmt.Errorf("container %s not injected", c.Name)
			}
		}
		if !admit.IsInjected(p) {
			return fmt.Errorf("no init container")
		}
		return nil
	}
}

func notPatched(p *corev1.Pod) error {
	if admit.IsInjected(p) {
		return fmt.Errorf("patched, want untouched")
	}
	return nil
}

func patchedPod(t *testing.T, body, patch []byte) *corev1.Pod {
	t.Helper()
	var sent struct {
		Request struct {
			Object json.RawMessage `json:"object"`
		} `json:"request"`
	}
	if err := json.Unmarshal(body, &sent); err != nil {
		t.Fatal(err)
	}
	raw := sent.Request.Object
	if len(patch) > 0 {
		raw = applyPatch(t, raw, admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Patch: patch}})
	}
	pod := &corev1.Pod{}
	if err := json.Unmarshal(raw, pod); err != nil {
		t.Fatal(err)
	}
	return pod
}
