package admit

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// podLevelResources reports whether the pod sets resources for the whole
// pod (spec.resources), which then also decide its QoS class.
func podLevelResources(pod *corev1.Pod) bool {
	r := pod.Spec.Resources
	return r != nil && (len(r.Requests) > 0 || len(r.Limits) > 0)
}

func isSidecar(c *corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

// leftOver is the pod's requests minus what runs beside the sidecar, never
// below zero, per resource: the app containers and the pod's own sidecars
// all along, and, when it runs first (init-first), each ordinary init
// container in turn. The API server sums the sidecars started before an
// init container with it; counting every sidecar of the pod there is a
// bound that can only leave the injected sidecar less.
func leftOver(requests corev1.ResourceList, pod *corev1.Pod, first bool) corev1.ResourceList {
	out := corev1.ResourceList{}
	for name, total := range requests {
		var sidecars, apps, initMax resource.Quantity
		for i := range pod.Spec.InitContainers {
			c := &pod.Spec.InitContainers[i]
			if q, ok := c.Resources.Requests[name]; ok && isSidecar(c) {
				sidecars.Add(q)
			} else if ok && first && q.Cmp(initMax) > 0 {
				initMax = q.DeepCopy()
			}
		}
		for i := range pod.Spec.Containers {
			if q, ok := pod.Spec.Containers[i].Resources.Requests[name]; ok {
				apps.Add(q)
			}
		}
		used := apps
		if initMax.Cmp(used) > 0 {
			used = initMax
		}
		used.Add(sidecars)
		left := total.DeepCopy()
		left.Sub(used)
		if left.Sign() < 0 {
			left = resource.Quantity{Format: total.Format}
		}
		out[name] = left
	}
	return out
}

// fitToPod cuts each request and limit to the pod's own, and a request to
// its limit.
func fitToPod(r, pod corev1.ResourceRequirements) corev1.ResourceRequirements {
	out := corev1.ResourceRequirements{Requests: r.Requests.DeepCopy(), Limits: r.Limits.DeepCopy()}
	cut := func(list, bound corev1.ResourceList) {
		for name, q := range list {
			if b, ok := bound[name]; ok && q.Cmp(b) > 0 {
				list[name] = b.DeepCopy()
			}
		}
	}
	cut(out.Limits, pod.Limits)
	cut(out.Requests, pod.Requests)
	cut(out.Requests, out.Limits)
	return out
}

// guaranteed reports whether the pod's QoS class is Guaranteed: every
// container, init containers included, has CPU and memory limits and
// requests equal to them (the API server has defaulted requests from
// limits before admission). Databases usually run so, and the static CPU
// manager requires it.
func guaranteed(pod *corev1.Pod) bool {
	if len(pod.Spec.Containers)+len(pod.Spec.InitContainers) == 0 {
		return false
	}
	for _, cs := range [2][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			if !guaranteedContainer(&cs[i]) {
				return false
			}
		}
	}
	return true
}

func guaranteedContainer(c *corev1.Container) bool {
	for _, name := range [2]corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		limit, ok := c.Resources.Limits[name]
		if !ok || limit.IsZero() {
			return false
		}
		if request, ok := c.Resources.Requests[name]; ok && request.Cmp(limit) != 0 {
			return false
		}
	}
	return true
}

// guaranteedResources makes the init container's requests equal its
// limits (or its limits equal its requests, when only those are set), so
// injecting it keeps a Guaranteed pod Guaranteed.
func guaranteedResources(r corev1.ResourceRequirements) corev1.ResourceRequirements {
	from := r.Limits
	if from.Cpu().IsZero() || from.Memory().IsZero() {
		from = r.Requests
	}
	return corev1.ResourceRequirements{Requests: from.DeepCopy(), Limits: from.DeepCopy()}
}
