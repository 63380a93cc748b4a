package webhook

import (
	"context"
	"encoding/json"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	c := newFakeClient(svc)
	h := &admission.Webhook{Handler: testHandler(staticNamespaces(nil), c)}
	req := podRequest(raw, admissionv1.Create, false)
	b.ReportAllocs()
	for b.Loop() {
		resp := h.Handle(context.Background(), req)
		if !resp.Allowed || len(resp.Patches) == 0 {
			b.Fatal("not injected")
		}
	}
}
