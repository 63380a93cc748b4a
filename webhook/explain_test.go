package webhook

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Explain's verdicts are the handler's, including the cases where a pod
// that is already injected is still denied because its group's Service is
// not headless (the webhook ensures the Service for injected pods too).
func TestExplainFollowsTheHandler(t *testing.T) {
	pod := func(labels, annotations map[string]string, inits ...corev1.Container) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "p", Labels: labels, Annotations: annotations}}
		p.Spec.Containers = []corev1.Container{{Name: "c", Image: "x"}}
		p.Spec.InitContainers = inits
		return p
	}
	member := map[string]string{GroupLabel: "cassandra"}
	injected := map[string]string{InjectedAnnotation: "0.1.0"}
	headless := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "cassandra"}, Spec: corev1.ServiceSpec{ClusterIP: "None"}}
	clusterIP := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "cassandra"}, Spec: corev1.ServiceSpec{ClusterIP: "10.0.0.9"}}
	cases := []struct {
		name    string
		in      ExplainInput
		verdict string
		reason  string
	}{
		{"member, no Service yet", ExplainInput{Pod: pod(member, nil), ServiceKnown: true}, VerdictInjected, "member of group cassandra (pod-label)"},
		{"namespace member", ExplainInput{Pod: pod(nil, nil), NamespaceLabels: member}, VerdictInjected, "(namespace-label)"},
		{"not a member", ExplainInput{Pod: pod(nil, nil)}, VerdictNotInjected, "no peergroup.dev/group label"},
		{"opted out", ExplainInput{Pod: pod(map[string]string{InjectLabel: "false"}, nil), NamespaceLabels: member}, VerdictNotInjected, "opted out"},
		{"invalid group", ExplainInput{Pod: pod(map[string]string{GroupLabel: "X"}, nil)}, VerdictDenied, `value "X" is invalid`},
		{"collision", ExplainInput{Pod: pod(member, nil, corev1.Container{Name: InitContainerName})}, VerdictDenied, "not peergroup's"},
		{"already injected, headless Service", ExplainInput{Pod: pod(member, injected), Service: headless, ServiceKnown: true}, VerdictAlreadyInjected, "annotation"},
		{"already injected, Service not headless", ExplainInput{Pod: pod(member, injected), Service: clusterIP, ServiceKnown: true}, VerdictDenied, "is not headless"},
		{"member, Service not headless", ExplainInput{Pod: pod(member, nil), Service: clusterIP, ServiceKnown: true}, VerdictDenied, "is not headless"},
		{"excluded namespace", ExplainInput{Pod: pod(member, nil), Config: Config{ExcludedNamespaces: []string{"kube-system", "db"}}}, VerdictNotInjected, "namespace db is excluded"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			excluded := tc.in.Config.ExcludedNamespaces
			tc.in.Config = DefaultConfig()
			if excluded != nil {
				tc.in.Config.ExcludedNamespaces = excluded
			}
			e := Explain(tc.in)
			if e.Verdict != tc.verdict || !strings.Contains(e.Reason, tc.reason) {
				t.Errorf("%s: %q, want %s: %q", e.Verdict, e.Reason, tc.verdict, tc.reason)
			}
		})
	}
}
