package offline

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/peergroup/peergroup/contract"
)

// Diagnose reads the API server's answer to the dry-run probe pod; the
// messages are the API server's own wording (also checked for real in
// test/e2e, TestCheckReachability).
func TestDiagnose(t *testing.T) {
	injected := ProbePod("db", "g")
	injected.Spec.InitContainers = []corev1.Container{{Name: contract.InitContainerName}}
	for _, tc := range []struct {
		name    string
		pod     *corev1.Pod
		err     error
		outcome string
		hint    string
	}{
		{"injected", injected, nil, CheckReachable, ""},
		{"admitted untouched", ProbePod("db", "g"), nil, CheckNotCalled, "is the chart installed?"},
		{"timeout", nil, errors.New(`Internal error occurred: failed calling webhook "pod-label.peergroup.dev": failed to call webhook: Post "https://peergroup.peergroup-system.svc:443/mutate-v1-pod?timeout=5s": context deadline exceeded`), CheckUnreachable, "GKE private clusters"},
		{"refused", nil, errors.New(`Internal error occurred: failed calling webhook "namespace-label.peergroup.dev": failed to call webhook: Post "https://127.0.0.1:1/mutate-v1-pod": dial tcp 127.0.0.1:1: connect: connection refused`), CheckUnreachable, "no webhook pod is ready"},
		{"no endpoints", nil, errors.New(`Internal error occurred: failed calling webhook "namespace-label.peergroup.dev": failed to call webhook: Post "https://peergroup.peergroup-system.svc:443/mutate-v1-pod?timeout=5s": no endpoints available for service "peergroup"`), CheckUnreachable, "no webhook pod is ready"},
		{"untrusted certificate", nil, errors.New(`Internal error occurred: failed calling webhook "namespace-label.peergroup.dev": failed to call webhook: Post "https://…": tls: failed to verify certificate: x509: certificate signed by unknown authority`), CheckUnreachable, "caBundle"},
		{"denied", nil, errors.New(`admission webhook "pod-label.peergroup.dev" denied the request: peergroup: …`), CheckDenied, ""},
		{"forbidden", nil, errors.New(`pods is forbidden: User "u" cannot create resource "pods" in the namespace "db"`), CheckError, "permission to create pods"},
		// The URL carries ?timeout=…: only the transport error counts.
		{"Service missing", nil, errors.New(`Internal error occurred: failed calling webhook "pod-label.peergroup.dev": failed to call webhook: Post "https://peergroup.peergroup-system.svc:443/mutate-v1-pod?timeout=5s": service "peergroup" not found`), CheckUnreachable, "Service is missing"},
		{"EOF", nil, errors.New(`Internal error occurred: failed calling webhook "pod-label.peergroup.dev": failed to call webhook: Post "https://x/mutate-v1-pod?timeout=5s": EOF`), CheckUnreachable, "see README, Reachability"},
		{"another webhook unreachable", nil, errors.New(`Internal error occurred: failed calling webhook "validate.kyverno.svc": failed to call webhook: Post "https://k/v?timeout=10s": dial tcp 10.0.0.1:443: connect: connection refused`), CheckOther, "that webhook's owner"},
		{"another webhook denies", nil, errors.New(`admission webhook "validate.kyverno.svc-fail" denied the request: policy require-labels`), CheckOther, ""},
		{"Pod Security refuses the injected pod", nil, errors.New(`pods "peergroup-check-ww4g7" is forbidden: violates PodSecurity "restricted:latest": runAsNonRoot != true (containers "seed-discovery", "probe" must not …)`), CheckReachable, "refused the same way"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Diagnose(tc.pod, tc.err)
			if r.Outcome != tc.outcome || (tc.hint != "" && !strings.Contains(strings.Join(r.Hints, "\n"), tc.hint)) {
				t.Errorf("%+v, want outcome %s with a hint %q", r, tc.outcome, tc.hint)
			}
		})
	}
}
