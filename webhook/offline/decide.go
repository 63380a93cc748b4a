package offline

import (
	"context"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/webhook/admit"
)

// decide runs the webhook's decision on pod as a dry-run CREATE, with
// nsLabels and services standing in for the informer caches. It returns
// services too, which holds the Service the webhook would create.
func decide(pod *corev1.Pod, cfg admit.Config, nsLabels map[string]string, services *admit.StaticServices) (admit.Decision, *admit.StaticServices) {
	// The direct patch: offline there is no raw object to diff against.
	cfg.PatchMode = admit.PatchDirect
	d := &admit.Decider{Config: cfg, Namespaces: admit.StaticNamespaceLabels(nsLabels), Services: services}
	return d.Decide(context.Background(), admit.Request{
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Namespace: pod.Namespace,
		Operation: admissionv1.Create,
		DryRun:    true,
		Pod:       pod,
	}), services
}

// namespaceLabels stands in for the namespace label peergroup.dev/group;
// nil when no group is given.
func namespaceLabels(group string) map[string]string {
	if group == "" {
		return nil
	}
	return map[string]string{contract.GroupLabel: group}
}
