package admit

import (
	"context"
	"fmt"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
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

// decideT is decideOn's Decision, for tests that need only that.
func decideT(t testing.TB, pod *corev1.Pod, nsLabels map[string]string, existing *corev1.Service) Decision {
	t.Helper()
	return decideWith(t, DefaultConfig(), pod, nsLabels, existing)
}

func decideWith(t testing.TB, cfg Config, pod *corev1.Pod, nsLabels map[string]string, existing *corev1.Service) Decision {
	t.Helper()
	d, _ := decideOnWith(cfg, pod, nsLabels, existing)
	return d
}

func summary(d Decision) string {
	return fmt.Sprintf("verdict=%s reason=%s message=%q group=%s/%s/%s service=%s marker=%s warnings=%q patch=%s",
		d.Verdict, d.Reason, d.Message, d.Group, d.Source, d.ServiceName, d.Service, d.Marker, d.Warnings, d.Patch)
}
