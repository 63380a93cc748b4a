package e2e

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/peergroup/peergroup/contract"
)

// A pod with pod-level resources (spec.resources) is admitted: the API
// server requires every container's requests to fit the pod's, so the
// injected init container must not bring fixed requests of its own into
// that budget.
func TestPodLevelResourcesAdmitted(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, map[string]string{contract.GroupLabel: "podlevel"})
	pod := plainPod(ns, "budget", nil)
	pod.Spec.Resources = &corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("5m"), corev1.ResourceMemory: resource.MustParse("8Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("24Mi")},
	}
	if err := cluster.Client.Create(ctx, pod); err != nil {
		t.Fatalf("a pod with pod-level resources: %v", err)
	}
	requireInjected(t, pod)
}
