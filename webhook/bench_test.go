package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	jsonpatch4 "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/peergroup/peergroup/webhook/admit"
)

// benchPod is a realistic member pod: the Cassandra walkthrough's.
func benchPod() *corev1.Pod {
	p := &corev1.Pod{}
	p.Name, p.Namespace = "cassandra-0", "db"
	p.Labels = map[string]string{"app": "cassandra", "peergroup.dev/group": "cassandra"}
	p.Spec.Containers = []corev1.Container{{
		Name: "cassandra", Image: "cassandra:5.0",
		Ports: []corev1.ContainerPort{{Name: "cql", ContainerPort: 9042}, {Name: "thrift", ContainerPort: 9160}},
		Env: []corev1.EnvVar{
			{Name: "MAX_HEAP_SIZE", Value: "512M"},
			{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}},
		},
	}}
	return p
}

func BenchmarkMutate(b *testing.B) {
	pod := benchPod()
	cfg := admit.DefaultConfig()
	m := admit.Membership{Group: "cassandra", Service: "cassandra", Source: admit.SourcePod}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := admit.Mutate(pod, m, cfg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandler is one admission of an existing group's pod: decode,
// resolve, mutate, Service cache hit, patch.
func BenchmarkHandler(b *testing.B) {
	raw, _ := json.Marshal(benchPod())
	h := &admission.Webhook{Handler: cachedGroupHandler()}
	req := podRequest(raw, admissionv1.Create, false)
	b.ReportAllocs()
	for b.Loop() {
		resp := h.Handle(context.Background(), req)
		if !resp.Allowed || len(resp.Patch) == 0 {
			b.Fatal("not injected")
		}
	}
}

// cachedGroupHandler admits pods of namespace "db", whose headless
// Service "cassandra" is in a reader that behaves like the informer cache
// (deep copy on Get); the fake client's conversions would dominate
// otherwise.
func cachedGroupHandler() *Handler {
	cache := cacheLike{&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "cassandra"}, Spec: corev1.ServiceSpec{ClusterIP: "None"}}}
	handler := testHandler(staticNamespaces(nil), nil)
	handler.Decider.Services = &ClusterServiceEnsurer{Cache: cache, Live: cache}
	return handler
}

type cacheLike struct{ svc *corev1.Service }

func (c cacheLike) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	if key.Name != c.svc.Name || key.Namespace != c.svc.Namespace {
		return apierrors.NewNotFound(corev1.Resource("services"), key.Name)
	}
	c.svc.DeepCopyInto(obj.(*corev1.Service))
	return nil
}

func (c cacheLike) List(context.Context, client.ObjectList, ...client.ListOption) error { return nil }

// BenchmarkHTTPHandler is the whole server-side path but TLS: the review
// decoded, handled, and the answer encoded.
func BenchmarkHTTPHandler(b *testing.B) {
	raw, _ := json.Marshal(benchPod())
	h := &HTTPHandler{Webhook: &admission.Webhook{Handler: cachedGroupHandler()}}
	areq := podRequest(raw, admissionv1.Create, false).AdmissionRequest
	review, _ := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  &areq,
	})
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(review))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
}

// BenchmarkAPIServerPatchApply is what kube-apiserver's mutating dispatcher
// does with a webhook's JSON patch (k8s.io/apiserver, callAttrMutatingHook:
// decode the patch, apply it to the encoded object with
// gopkg.in/evanphx/json-patch.v4), for patches that all but one-label yield
// the same injected pod. Its cost grows with how deep the patch reaches
// (every decoded level is marshalled again), which is where most of the API
// server's extra time per injected pod goes; docs/design.md ("The patch")
// says why peergroup keeps its precise patch anyway.
func BenchmarkAPIServerPatchApply(b *testing.B) {
	pod := benchPod()
	pod.Labels["peergroup.dev/group"] = "cassandra"
	in, _ := json.Marshal(pod)
	resp := (&admission.Webhook{Handler: cachedGroupHandler()}).Handle(context.Background(), podRequest(in, admissionv1.Create, false))
	out := applyPatch(b, in, resp)
	injected := &corev1.Pod{}
	if err := json.Unmarshal(out, injected); err != nil {
		b.Fatal(err)
	}
	diff, _ := json.Marshal(admission.PatchResponseFromRaw(in, out).Patches)
	annotations, _ := json.Marshal(injected.Annotations)
	spec, _ := json.Marshal(injected.Spec)
	for _, c := range []struct{ name, patch string }{
		{"one-label", `[{"op":"add","path":"/metadata/labels/bench-mutated","value":"true"}]`},
		{"peergroup", string(resp.Patch)},
		{"diff", string(diff)},
		// The same pod in two operations: the spec replaced as a whole.
		{"whole-spec", `[{"op":"add","path":"/metadata/annotations","value":` + string(annotations) + `},{"op":"replace","path":"/spec","value":` + string(spec) + `}]`},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p, err := jsonpatch4.DecodePatch([]byte(c.patch))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := p.Apply(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
