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

// The refreshing sidecar runs beside the app, so the API server adds its
// requests to the app containers' within the pod's budget: a pod whose app
// containers already request the whole budget is still admitted.
func TestPodLevelResourcesWithTheSidecar(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, map[string]string{contract.GroupLabel: "podlevel"})
	budget := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("5m"), corev1.ResourceMemory: resource.MustParse("8Mi")}
	for _, tc := range []struct {
		name string
		app  corev1.ResourceList
	}{
		{"app-takes-all", budget},
		{"app-takes-half", corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2m"), corev1.ResourceMemory: resource.MustParse("4Mi")}},
		{"app-requests-nothing", nil},
	} {
		pod := plainPod(ns, tc.name, nil)
		pod.Annotations = map[string]string{contract.Refresh.Annotation: "30s"}
		pod.Spec.Resources = &corev1.ResourceRequirements{
			Requests: budget,
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("24Mi")},
		}
		pod.Spec.Containers[0].Resources.Requests = tc.app
		if err := cluster.Client.Create(ctx, pod); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		requireInjected(t, pod)
	}
}

// First among the init containers (init-first), the sidecar also runs
// beside each ordinary one; the API server sums them against the pod.
func TestPodLevelResourcesWithTheSidecarFirst(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, map[string]string{contract.GroupLabel: "podlevel"})
	budget := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("20m"), corev1.ResourceMemory: resource.MustParse("16Mi")}
	pod := plainPod(ns, "sidecar-first", nil)
	pod.Annotations = map[string]string{contract.Refresh.Annotation: "30s", contract.InitFirstAnnotation: "true"}
	pod.Spec.Resources = &corev1.ResourceRequirements{Requests: budget}
	pod.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "busybox", Resources: corev1.ResourceRequirements{Requests: budget}}}
	pod.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4m")}
	if err := cluster.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	requireInjected(t, pod)
	if pod.Spec.InitContainers[0].Name != contract.InitContainerName {
		t.Fatalf("init containers %v", pod.Spec.InitContainers)
	}
}
