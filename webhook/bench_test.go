package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
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
			{Name: "POD_NAMESPACE", ValueFrom: fieldRef("metadata.namespace")},
		},
	}}
	return p
}

func BenchmarkMutate(b *testing.B) {
	pod := benchPod()
	cfg := DefaultConfig()
	m := Membership{Group: "cassandra", Service: "cassandra", Source: SourcePod}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Mutate(pod, m, cfg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandler is one admission of an existing group's pod: decode,
// resolve, mutate, Service cache hit, patch.
func BenchmarkHandler(b *testing.B) {
	raw, _ := json.Marshal(benchPod())
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "cassandra"}, Spec: corev1.ServiceSpec{ClusterIP: "None"}}
	// A reader that behaves like the informer cache (deep copy on Get);
	// the fake client's conversions would dominate otherwise.
	cache := cacheLike{svc}
	handler := testHandler(staticNamespaces(nil), nil)
	handler.Services = &ClusterServiceEnsurer{Cache: cache, Live: cache}
	h := &admission.Webhook{Handler: handler}
	req := podRequest(raw, admissionv1.Create, false)
	b.ReportAllocs()
	for b.Loop() {
		resp := h.Handle(context.Background(), req)
		if !resp.Allowed || len(resp.Patch) == 0 {
			b.Fatal("not injected")
		}
	}
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
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "cassandra"}, Spec: corev1.ServiceSpec{ClusterIP: "None"}}
	cache := cacheLike{svc}
	handler := testHandler(staticNamespaces(nil), nil)
	handler.Services = &ClusterServiceEnsurer{Cache: cache, Live: cache}
	h := &HTTPHandler{Webhook: &admission.Webhook{Handler: handler}, DecodePod: true}
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
