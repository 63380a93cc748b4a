package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/test/fixtures"
	"github.com/peergroup/peergroup/webhook/admit"
)

// The fuzz targets drive the whole server-side path (HTTP edge → decode →
// resolve → mutate → patch) and check what the API server relies on: no
// panic, an answer for every body, and for every allowed patch: it applies
// to the request's object, the result is a pod with the injection exactly
// once, and admitting that pod again changes nothing.
//
// .ci/run fuzzes each for a bounded time (make fuzz); plain `go test` runs
// the seed corpus.

// FuzzAdmissionReview takes arbitrary request bodies.
func FuzzAdmissionReview(f *testing.F) {
	for _, p := range fixtures.MutatePods(f) {
		f.Add(reviewBody(p, "CREATE"))
	}
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"db","object":{"spec":{"containers":"nope"}}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1"}}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, body []byte) {
		checkAdmission(t, body, "")
	})
}

// FuzzPodAdmission takes arbitrary pods (and namespace group labels) in a
// well-formed review, which reaches the mutation far more often than
// arbitrary bytes do.
func FuzzPodAdmission(f *testing.F) {
	for _, p := range fixtures.MutatePods(f) {
		f.Add(p, "")
		f.Add(p, "cassandra")
	}
	f.Add([]byte(`{"metadata":{"labels":{"peergroup.dev/group":"a"},"annotations":{"peergroup.dev/seed-count":"99"}},"spec":{"containers":[{"name":"a"}]}}`), "")
	f.Add([]byte(`{"metadata":{"annotations":{"peergroup.dev/service":"ü"}},"spec":{"containers":[{"name":"a","env":[{"name":"POD_NAMESPACE"},{"name":"POD_NAMESPACE","value":"x"}]}]}}`), "g")
	f.Fuzz(func(t *testing.T, pod []byte, nsGroup string) {
		checkAdmission(t, reviewBody(pod, "CREATE"), nsGroup)
	})
}

func reviewBody(pod []byte, op string) []byte {
	review := map[string]any{
		"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
		"request": map[string]any{
			"uid": "fuzz", "kind": map[string]string{"version": "v1", "kind": "Pod"},
			"resource":  map[string]string{"version": "v1", "resource": "pods"},
			"namespace": "db", "operation": op, "object": json.RawMessage(pod),
		},
	}
	body, err := json.Marshal(review)
	if err != nil {
		// pod is not valid JSON: send it as is, the edge must refuse it.
		return append(append([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"fuzz","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","namespace":"db","object":`), pod...), "}}"...)
	}
	return body
}

// memServices is an in-memory ServiceEnsurer: the fuzz targets are about
// the admission path, not the API server.
type memServices struct{}

func (memServices) Ensure(context.Context, client.ObjectKey, func() *corev1.Service, func(*corev1.Service) error, bool) (admit.ServiceState, error) {
	return admit.ServiceExists, nil
}

func fuzzServer(nsGroup string) *HTTPHandler {
	ns := staticNamespaces(nil)
	if nsGroup != "" {
		ns = staticNamespaces{contract.GroupLabel: nsGroup}
	}
	h := testHandler(ns, nil)
	h.Decider.Services = memServices{}
	return &HTTPHandler{Webhook: &admission.Webhook{Handler: h}}
}

func post(h http.Handler, body []byte) (int, *admissionv1.AdmissionReview, error) {
	req := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	out := &admissionv1.AdmissionReview{}
	err := json.Unmarshal(rec.Body.Bytes(), out)
	return rec.Code, out, err
}

func checkAdmission(t *testing.T, body []byte, nsGroup string) {
	h := fuzzServer(nsGroup)
	code, review, err := post(h, body)
	if err != nil || review.Response == nil {
		t.Fatalf("answer (HTTP %d) is not an AdmissionReview: %v", code, err)
	}
	resp := review.Response
	if code != http.StatusOK {
		if code < 400 || code >= 500 || resp.Allowed || resp.Result == nil || resp.Result.Message == "" {
			t.Fatalf("HTTP %d must be a 4xx refusal with a message: %+v", code, resp)
		}
		return
	}
	if !resp.Allowed {
		if resp.Result == nil || resp.Result.Message == "" {
			t.Fatalf("refusal without a message: %+v", resp)
		}
		return
	}
	if len(resp.Patch) == 0 {
		return
	}
	var sent admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &sent); err != nil {
		t.Fatalf("a patch for a body that does not decode: %v", err)
	}
	patch, err := jsonpatch.DecodePatch(resp.Patch)
	if err != nil {
		t.Fatalf("patch is not RFC 6902: %v\n%s", err, resp.Patch)
	}
	// The API server applies the patch to its own encoding of the pod, the
	// one it sent: metadata and spec always present. A body not in that
	// form never comes from an API server; the patch is checked against
	// the form an API server would have sent for the same pod.
	object, ok := fixtures.APIServerForm(sent.Request.Object.Raw)
	if !ok {
		t.Fatalf("a patch for an object that is not a pod: %s", sent.Request.Object.Raw)
	}
	patched, err := patch.Apply(object)
	if err != nil {
		t.Fatalf("patch does not apply: %v\npatch %s\nobject %s", err, resp.Patch, object)
	}
	in, out := &corev1.Pod{}, &corev1.Pod{}
	if err := json.Unmarshal(object, in); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(patched, out); err != nil {
		t.Fatalf("patched object is not a pod: %v", err)
	}
	checkInjectedPod(t, in, out)

	again := reviewBody(patched, "CREATE")
	code, review, err = post(fuzzServer(nsGroup), again)
	if err != nil || code != http.StatusOK || review.Response == nil || !review.Response.Allowed || len(review.Response.Patch) != 0 {
		t.Fatalf("admitting the injected pod again must change nothing: HTTP %d %v %+v", code, err, review.Response)
	}
}

// checkInjectedPod: the injection is there exactly once, and is valid where
// the API server's validation would look.
func checkInjectedPod(t *testing.T, in, out *corev1.Pod) {
	t.Helper()
	count := func(n int, what string) {
		if n != 1 {
			t.Errorf("%s appears %d times, want 1", what, n)
		}
	}
	inits := 0
	for _, c := range out.Spec.InitContainers {
		if c.Name == contract.InitContainerName {
			inits++
		}
	}
	count(inits, "init container "+contract.InitContainerName)
	vols := 0
	for _, v := range out.Spec.Volumes {
		if v.Name == contract.SeedsVolumeName {
			vols++
			if v.EmptyDir == nil {
				t.Errorf("seeds volume is not an emptyDir: %+v", v)
			}
		}
	}
	count(vols, "volume "+contract.SeedsVolumeName)
	group := out.Labels[contract.GroupLabel]
	if errs := validation.IsDNS1035Label(group); len(errs) > 0 {
		t.Errorf("group label %q: %v", group, errs)
	}
	if len(out.Spec.Containers) != len(in.Spec.Containers) {
		t.Fatalf("containers: %d before, %d after", len(in.Spec.Containers), len(out.Spec.Containers))
	}
	for i, c := range out.Spec.Containers {
		mounts := 0
		for _, m := range c.VolumeMounts {
			if m.Name == contract.SeedsVolumeName {
				mounts++
			}
		}
		count(mounts, "seeds mount in container "+c.Name)
		for _, name := range []string{contract.ServiceEnvName(group), contract.EnvPodNamespace, contract.EnvSeedsFile} {
			had, has := envCount(in.Spec.Containers[i].Env, name), envCount(c.Env, name)
			if has != max(had, 1) {
				t.Errorf("container %q: %s %d times before, %d after", c.Name, name, had, has)
			}
			if errs := validation.IsEnvVarName(name); len(errs) > 0 {
				t.Errorf("injected env name %q: %v", name, errs)
			}
		}
	}
	for k, v := range out.Labels {
		if in.Labels[k] != v && len(validation.IsValidLabelValue(v)) > 0 {
			t.Errorf("injected label %s=%q is not a valid label value", k, v)
		}
	}
	if !metav1.HasAnnotation(out.ObjectMeta, contract.InjectedAnnotation) {
		t.Errorf("no %s annotation", contract.InjectedAnnotation)
	}
}

func envCount(env []corev1.EnvVar, name string) int {
	n := 0
	for _, e := range env {
		if e.Name == name {
			n++
		}
	}
	return n
}
