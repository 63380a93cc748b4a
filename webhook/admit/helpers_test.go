package admit

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/peergroup/peergroup/contract"
)

// memberPod is a realistic member pod: the Cassandra walkthrough's.
func memberPod() *corev1.Pod {
	p := &corev1.Pod{}
	p.Name, p.Namespace = "cassandra-0", "db"
	p.Labels = map[string]string{"app": "cassandra", contract.GroupLabel: "cassandra"}
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

// projected is pod as the fast path decodes it: only the AdmittedPod
// fields.
func projected(t testing.TB, pod *corev1.Pod) *corev1.Pod {
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	a := &AdmittedPod{}
	if err := json.Unmarshal(raw, a); err != nil {
		t.Fatalf("the whole pod decodes but the admitted fields do not: %v", err)
	}
	return a.Pod()
}

// decideOn runs a dry-run CREATE of pod through Decide with the direct
// patch, nsLabels for the namespace and existing as the only Service.
func decideOn(pod *corev1.Pod, nsLabels map[string]string, existing *corev1.Service) (Decision, *corev1.Service) {
	return decideOnWith(DefaultConfig(), pod, nsLabels, existing)
}

func decideOnWith(cfg Config, pod *corev1.Pod, nsLabels map[string]string, existing *corev1.Service) (Decision, *corev1.Service) {
	services := &staticServices{Existing: existing, Known: true}
	d := (&Decider{Config: cfg, Namespaces: staticNamespaces(nsLabels), Services: services}).Decide(context.Background(), Request{
		Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: "db", Operation: admissionv1.Create, DryRun: true, Pod: pod,
	})
	return d, services.Desired
}

// decideBoth decides on pod and on its AdmittedPod projection and fails the
// test when they differ in anything the webhook answers or creates: this
// is what keeps AdmittedPod in step with the fields the rules read.
func decideBoth(t testing.TB, pod *corev1.Pod, nsLabels map[string]string, existing *corev1.Service) Decision {
	t.Helper()
	return decideBothWith(t, DefaultConfig(), pod, nsLabels, existing)
}

func decideBothWith(t testing.TB, cfg Config, pod *corev1.Pod, nsLabels map[string]string, existing *corev1.Service) Decision {
	t.Helper()
	full, svcFull := decideOnWith(cfg, pod, nsLabels, existing)
	slim, svcSlim := decideOnWith(cfg, projected(t, pod), nsLabels, existing)
	if got, want := summary(slim), summary(full); got != want {
		t.Fatalf("the fast path's decode (AdmittedPod) decides differently from the whole pod: a rule reads a field AdmittedPod does not decode (fastpath.go)\nwhole pod: %s\nAdmittedPod: %s", want, got)
	}
	if !equality.Semantic.DeepEqual(svcFull, svcSlim) {
		t.Fatalf("the Service built from AdmittedPod differs from the whole pod's:\n%v\n%v", svcFull, svcSlim)
	}
	return full
}

func summary(d Decision) string {
	return fmt.Sprintf("verdict=%s reason=%s message=%q group=%s/%s/%s service=%s marker=%s warnings=%q patch=%s",
		d.Verdict, d.Reason, d.Message, d.Group, d.Source, d.ServiceName, d.Service, d.Marker, d.Warnings, d.Patch)
}
