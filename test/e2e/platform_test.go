package e2e

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/webhook/admit"
)

// The chart's seedDiscovery.imagePullSecrets reach member pods through the
// API server: added after the pod's own, never twice; non-members get
// nothing.
func TestPullSecretsOnMembers(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, map[string]string{contract.GroupLabel: "cassandra"})
	plain := cassandraPod(ns, "plain")
	own := cassandraPod(ns, "own")
	own.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "mine"}, {Name: "regcred"}}
	optedOut := cassandraPod(ns, "opted-out")
	optedOut.Labels[contract.InjectLabel] = "false"
	for pod, want := range map[*corev1.Pod]string{plain: "regcred", own: "mine,regcred", optedOut: ""} {
		if err := cluster.Client.Create(ctx, pod); err != nil {
			t.Fatalf("%s: %v", pod.Name, err)
		}
		var names []string
		for _, r := range pod.Spec.ImagePullSecrets {
			names = append(names, r.Name)
		}
		if got := strings.Join(names, ","); got != want {
			t.Errorf("%s: imagePullSecrets %q, want %q", pod.Name, got, want)
		}
	}
}

// Without fixed IDs (fixedIDs: false, for OpenShift) the injected
// container still passes Pod Security "restricted", as the API server
// itself judges it: runAsNonRoot stays, and nothing else depends on the
// user ID.
func TestInjectedWithoutFixedIDsPassesRestricted(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
	pod := cassandraPod(ns, "openshift")
	restricted := &corev1.SecurityContext{
		RunAsNonRoot: ptrTo(true), AllowPrivilegeEscalation: ptrTo(false),
		Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	pod.Spec.Containers[0].SecurityContext = restricted
	cfg := admit.DefaultConfig()
	cfg.FixedIDs = false
	// Mutated as the webhook with --seed-discovery-fixed-ids=false would,
	// and created in a namespace outside any group: only Pod Security
	// judges it.
	mutated, _, err := admit.Mutate(pod, admit.Membership{Group: "cassandra", Service: "cassandra", Source: admit.SourcePod}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	mutated.Labels[contract.InjectLabel] = "false"
	ic := mutated.Spec.InitContainers[len(mutated.Spec.InitContainers)-1]
	if ic.SecurityContext.RunAsUser != nil || ic.SecurityContext.RunAsGroup != nil {
		t.Fatalf("fixed IDs set: %+v", ic.SecurityContext)
	}
	if err := cluster.Client.Create(ctx, mutated); err != nil {
		t.Fatalf("Pod Security restricted refused the injected pod without fixed IDs: %v", err)
	}
}

func ptrTo[T any](v T) *T { return &v }

// peergroup.dev/ip-family-policy on the pod that creates the group's
// Service, through the API server of a single-stack cluster:
// PreferDualStack is stored as asked (one family here), RequireDualStack is
// refused by the API server and the pod denied with that cause, and a
// value that is no policy is denied by peergroup with the rule.
func TestIPFamilyPolicyOfTheService(t *testing.T) {
	ctx := testContext(t)
	for policy, want := range map[string]string{
		"PreferDualStack":  "",
		"RequireDualStack": "this cluster is not configured for dual-stack services",
		"DualStack":        "it must be SingleStack, PreferDualStack or RequireDualStack",
	} {
		ns := newNamespace(t, map[string]string{contract.GroupLabel: "cassandra"})
		pod := cassandraPod(ns, "first")
		pod.Annotations = map[string]string{contract.IPFamilyPolicyAnnotation: policy}
		err := cluster.Client.Create(ctx, pod)
		if want != "" {
			if err == nil || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(want)) {
				t.Errorf("%s: %v, want a denial saying %q", policy, err, want)
			}
			if len(services(t, ns)) != 0 {
				t.Errorf("%s: a Service was left behind", policy)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", policy, err)
		}
		svc := getService(t, ns, "cassandra")
		if svc.Spec.IPFamilyPolicy == nil || string(*svc.Spec.IPFamilyPolicy) != policy || len(svc.Spec.IPFamilies) != 1 {
			t.Errorf("%s: Service ipFamilyPolicy %v, families %v", policy, svc.Spec.IPFamilyPolicy, svc.Spec.IPFamilies)
		}
	}
}
