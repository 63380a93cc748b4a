package admit

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	resourcehelper "k8s.io/component-helpers/resource"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/internal/clip"
)

// checkLimitRanges applies the LimitRanger admission plugin's rules to the
// injected init container as the API server will (plugin/pkg/admission/
// limitranger in Kubernetes): the API server first sets a missing request
// from the limit, then LimitRanger fills what is still missing from every
// LimitRange's Container defaults, then checks each LimitRange's
// per-container min, max and maxLimitRequestRatio at its precision.
func checkLimitRanges(ic *corev1.Container, ranges []corev1.LimitRange) error {
	r := defaulted(ic.Resources, ranges)
	for _, lr := range ranges {
		for _, item := range lr.Spec.Limits {
			if item.Type != corev1.LimitTypeContainer {
				continue
			}
			if problem := limitRangeProblem(&r, item); problem != "" {
				return deny(ReasonLimitRange, "LimitRange %s/%s would reject the injected %s init container: %s; set the chart value seedDiscovery.resources (webhook flags --seed-discovery-requests and --seed-discovery-limits) to fit it, or opt this pod out with the label %s=false",
					clip.String(lr.Namespace), clip.String(lr.Name), contract.InitContainerName, problem, contract.InjectLabel)
			}
		}
	}
	return nil
}

// defaulted is a container's resources as LimitRanger judges them: a
// missing request set from the limit (the API server's defaulting), then
// what is still missing from every LimitRange's Container defaults.
func defaulted(res corev1.ResourceRequirements, ranges []corev1.LimitRange) corev1.ResourceRequirements {
	r := corev1.ResourceRequirements{Requests: res.Requests.DeepCopy(), Limits: res.Limits.DeepCopy()}
	if r.Requests == nil {
		r.Requests = corev1.ResourceList{}
	}
	if r.Limits == nil {
		r.Limits = corev1.ResourceList{}
	}
	fill(r.Requests, r.Limits)
	for _, lr := range ranges {
		for _, item := range lr.Spec.Limits {
			if item.Type == corev1.LimitTypeContainer {
				fill(r.Requests, item.DefaultRequest)
				fill(r.Limits, item.Default)
			}
		}
	}
	return r
}

// checkPodLimitRanges applies the Pod-type items of the LimitRanges (min,
// max and maxLimitRequestRatio of the pod's total, as LimitRanger sums it:
// app containers and sidecars added, init containers at their peak) to the
// mutated pod. Only a limit the injection breaks is peergroup's to report:
// a pod that breaks it already is refused by the API server with its own
// message about the user's containers.
func checkPodLimitRanges(before, after *corev1.Pod, ranges []corev1.LimitRange) error {
	for _, lr := range ranges {
		for _, item := range lr.Spec.Limits {
			if item.Type != corev1.LimitTypePod {
				continue
			}
			problem := podLimitProblem(after, ranges, item)
			if problem == "" || podLimitProblem(before, ranges, item) != "" {
				continue
			}
			return deny(ReasonLimitRange, "LimitRange %s/%s (type Pod) would reject the pod once the injected %s container is added: %s; set the chart value seedDiscovery.resources (webhook flags --seed-discovery-requests and --seed-discovery-limits) so the pod's total fits, or opt this pod out with the label %s=false",
				clip.String(lr.Namespace), clip.String(lr.Name), contract.InitContainerName, problem, contract.InjectLabel)
		}
	}
	return nil
}

// podLimitProblem is what a Pod-type LimitRange item finds in the pod's
// total, with every container defaulted as LimitRanger defaults it.
func podLimitProblem(pod *corev1.Pod, ranges []corev1.LimitRange, item corev1.LimitRangeItem) string {
	p := &corev1.Pod{Spec: corev1.PodSpec{
		Containers:     slices.Clone(pod.Spec.Containers),
		InitContainers: slices.Clone(pod.Spec.InitContainers),
		Resources:      pod.Spec.Resources,
	}}
	for _, cs := range [][]corev1.Container{p.Spec.Containers, p.Spec.InitContainers} {
		for i := range cs {
			cs[i].Resources = defaulted(cs[i].Resources, ranges)
		}
	}
	// LimitRanger leaves the RuntimeClass's overhead out.
	opts := resourcehelper.PodResourcesOptions{ExcludeOverhead: true}
	total := corev1.ResourceRequirements{Requests: resourcehelper.PodRequests(p, opts), Limits: resourcehelper.PodLimits(p, opts)}
	return limitRangeProblem(&total, item)
}

// fill sets what list lacks from defaults.
func fill(list, defaults corev1.ResourceList) {
	for name, q := range defaults {
		if _, ok := list[name]; !ok {
			list[name] = q.DeepCopy()
		}
	}
}

func limitRangeProblem(r *corev1.ResourceRequirements, item corev1.LimitRangeItem) string {
	var problems []string
	say := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	eachBound(r, item.Min, func(name corev1.ResourceName, min, req, lim resource.Quantity, hasReq, hasLim bool, rv, lv, mv int64) {
		switch {
		case !hasReq:
			say("%s must be at least %s (no request)", name, min.String())
		case rv < mv:
			say("%s must be at least %s (request %s)", name, min.String(), req.String())
		case hasLim && lv < mv:
			say("%s must be at least %s (limit %s)", name, min.String(), lim.String())
		}
	})
	eachBound(r, item.Max, func(name corev1.ResourceName, max, req, lim resource.Quantity, hasReq, hasLim bool, rv, lv, mv int64) {
		switch {
		case !hasLim:
			say("%s limit must be at most %s (no limit)", name, max.String())
		case lv > mv:
			say("%s limit must be at most %s (limit %s)", name, max.String(), lim.String())
		case hasReq && rv > mv:
			say("%s request must be at most %s (request %s)", name, max.String(), req.String())
		}
	})
	eachBound(r, item.MaxLimitRequestRatio, func(name corev1.ResourceName, ratio, req, lim resource.Quantity, hasReq, hasLim bool, rv, lv, _ int64) {
		if !hasReq || rv == 0 || !hasLim || lv == 0 {
			say("%s limit/request ratio must be at most %s (request and limit must both be set)", name, ratio.String())
			return
		}
		observed, enforced := float64(lv)/float64(rv), float64(ratio.Value())
		if ratio.Value() <= resource.MaxMilliValue {
			observed, enforced = observed*1000, float64(ratio.MilliValue())
		}
		if observed > enforced {
			say("%s limit/request ratio must be at most %s (%s/%s)", name, ratio.String(), lim.String(), req.String())
		}
	})
	return strings.Join(problems, "; ")
}

// eachBound calls check for each resource bounded in bounds, in name
// order, with the container's request and limit of it and the three
// values as LimitRanger compares them (enforcedValues).
func eachBound(r *corev1.ResourceRequirements, bounds corev1.ResourceList,
	check func(name corev1.ResourceName, bound, req, lim resource.Quantity, hasReq, hasLim bool, rv, lv, bv int64)) {
	for _, name := range slices.Sorted(maps.Keys(bounds)) {
		bound := bounds[name]
		req, hasReq := r.Requests[name]
		lim, hasLim := r.Limits[name]
		rv, lv, bv := enforcedValues(req, lim, bound)
		check(name, bound, req, lim, hasReq, hasLim, rv, lv, bv)
	}
}

// enforcedValues are request, limit and the LimitRange's bound at one
// precision, as LimitRanger's requestLimitEnforcedValues gives them:
// milli-units rounded up, or units when any of the three is too large.
func enforcedValues(request, limit, enforced resource.Quantity) (r, l, e int64) {
	r, l, e = request.Value(), limit.Value(), enforced.Value()
	if r <= resource.MaxMilliValue && l <= resource.MaxMilliValue && e <= resource.MaxMilliValue {
		r, l, e = request.MilliValue(), limit.MilliValue(), enforced.MilliValue()
	}
	return r, l, e
}
