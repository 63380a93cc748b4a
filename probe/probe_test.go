package probe

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
	injected := Pod("db", "g")
	injected.Spec.InitContainers = []corev1.Container{{Name: contract.InitContainerName}}
	reached := []string{`peergroup: container "probe" sets PEERGROUP_SEEDS_FILE to "peergroup-check"; kept as set, peergroup would have set "/var/run/peergroup/seeds"`}
	for _, tc := range []struct {
		name     string
		pod      *corev1.Pod
		err      error
		warnings []string
		outcome  string
		hint     string
	}{
		{"injected", injected, nil, nil, Reachable, ""},
		{"admitted untouched", Pod("db", "g"), nil, nil, NotCalled, "is the chart installed?"},
		{"timeout", nil, errors.New(`Internal error occurred: failed calling webhook "pod-label.peergroup.dev": failed to call webhook: Post "https://peergroup.peergroup-system.svc:443/mutate-v1-pod?timeout=5s": context deadline exceeded`), nil, Unreachable, "GKE private clusters"},
		{"refused", nil, errors.New(`Internal error occurred: failed calling webhook "namespace-label.peergroup.dev": failed to call webhook: Post "https://127.0.0.1:1/mutate-v1-pod": dial tcp 127.0.0.1:1: connect: connection refused`), nil, Unreachable, "no webhook pod is ready"},
		{"no endpoints", nil, errors.New(`Internal error occurred: failed calling webhook "namespace-label.peergroup.dev": failed to call webhook: Post "https://peergroup.peergroup-system.svc:443/mutate-v1-pod?timeout=5s": no endpoints available for service "peergroup"`), nil, Unreachable, "no webhook pod is ready"},
		{"untrusted certificate", nil, errors.New(`Internal error occurred: failed calling webhook "namespace-label.peergroup.dev": failed to call webhook: Post "https://…": tls: failed to verify certificate: x509: certificate signed by unknown authority`), nil, Unreachable, "caBundle"},
		{"denied", nil, errors.New(`admission webhook "pod-label.peergroup.dev" denied the request: peergroup: …`), nil, Denied, ""},
		{"forbidden", nil, errors.New(`pods is forbidden: User "u" cannot create resource "pods" in the namespace "db"`), nil, Error, "permission to create pods"},
		// The URL carries ?timeout=…: only the transport error counts.
		{"Service missing", nil, errors.New(`Internal error occurred: failed calling webhook "pod-label.peergroup.dev": failed to call webhook: Post "https://peergroup.peergroup-system.svc:443/mutate-v1-pod?timeout=5s": service "peergroup" not found`), nil, Unreachable, "Service is missing"},
		{"EOF", nil, errors.New(`Internal error occurred: failed calling webhook "pod-label.peergroup.dev": failed to call webhook: Post "https://x/mutate-v1-pod?timeout=5s": EOF`), nil, Unreachable, "see docs/install.md, Reachability"},
		{"another webhook unreachable", nil, errors.New(`Internal error occurred: failed calling webhook "validate.kyverno.svc": failed to call webhook: Post "https://k/v?timeout=10s": dial tcp 10.0.0.1:443: connect: connection refused`), nil, Other, "that webhook's owner"},
		{"another webhook denies", nil, errors.New(`admission webhook "validate.kyverno.svc-fail" denied the request: policy require-labels`), nil, Other, ""},
		{"Pod Security refuses the injected pod", nil, errors.New(`pods "peergroup-check-ww4g7" is forbidden: violates PodSecurity "restricted:latest": runAsNonRoot != true (containers "seed-discovery", "probe" must not …)`), reached, Reachable, "refused the same way"},
		// A refusal that names seed-discovery without peergroup's warning
		// says nothing about peergroup (it once counted as reached).
		{"a refusal naming seed-discovery, peergroup silent", nil, errors.New(`pods "peergroup-check-x" is forbidden: policy: images of container "seed-discovery" not allowed`), nil, Error, "does the namespace exist"},
		{"a refusal after peergroup answered, naming nothing of it", nil, errors.New(`pods "peergroup-check-x" is forbidden: exceeded quota: q, requested: pods=1, used: pods=1, limited: pods=1`), reached, Reachable, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Diagnose(tc.pod, tc.err, tc.warnings)
			if r.Outcome != tc.outcome || (tc.hint != "" && !strings.Contains(strings.Join(r.Hints, "\n"), tc.hint)) {
				t.Errorf("%+v, want outcome %s with a hint %q", r, tc.outcome, tc.hint)
			}
		})
	}
}
