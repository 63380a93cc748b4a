package admit

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/peergroup/peergroup/contract"
)

// LimitRangeError refuses a pod whose injected init container a LimitRange
// of its namespace would reject: the API server's own message would be
// about a container the user never wrote, and would not say which setting
// to change.
type LimitRangeError struct{ Detail string }

func (e *LimitRangeError) Error() string { return "peergroup: " + e.Detail }

// checkLimitRanges applies the rules of the LimitRanger admission plugin
// that the init container's fixed resources can break: per-container min,
// max and maxLimitRequestRatio. (Defaults do not apply: the init container
// sets its requests and limits.)
func checkLimitRanges(ic *corev1.Container, ranges []corev1.LimitRange) error {
	for _, lr := range ranges {
		for _, item := range lr.Spec.Limits {
			if item.Type != corev1.LimitTypeContainer {
				continue
			}
			if problem := limitRangeProblem(&ic.Resources, item); problem != "" {
				return &LimitRangeError{fmt.Sprintf("LimitRange %s/%s would reject the injected %s init container: %s; set the chart value seedDiscovery.resources (webhook flags --seed-discovery-requests and --seed-discovery-limits) to fit it, or opt this pod out with the label %s=false",
					lr.Namespace, lr.Name, contract.InitContainerName, problem, contract.InjectLabel)}
			}
		}
	}
	return nil
}

func limitRangeProblem(r *corev1.ResourceRequirements, item corev1.LimitRangeItem) string {
	var problems []string
	for name, min := range item.Min {
		if q, ok := requestOrLimit(r, name); !ok || q.Cmp(min) < 0 {
			problems = append(problems, fmt.Sprintf("%s must be at least %s (request %s)", name, min.String(), show(q, ok)))
		}
	}
	for name, max := range item.Max {
		if q, ok := r.Limits[name]; !ok || q.Cmp(max) > 0 {
			problems = append(problems, fmt.Sprintf("%s limit must be at most %s (limit %s)", name, max.String(), show(q, ok)))
		}
	}
	for name, ratio := range item.MaxLimitRequestRatio {
		limit, hasLimit := r.Limits[name]
		request, hasRequest := r.Requests[name]
		if !hasLimit || !hasRequest || request.IsZero() {
			continue
		}
		if limit.AsApproximateFloat64()/request.AsApproximateFloat64() > ratio.AsApproximateFloat64() {
			problems = append(problems, fmt.Sprintf("%s limit/request ratio must be at most %s (%s/%s)", name, ratio.String(), limit.String(), request.String()))
		}
	}
	return strings.Join(problems, "; ")
}

// requestOrLimit is what LimitRanger compares with min: the request, which
// the API server defaults from the limit when only that is set.
func requestOrLimit(r *corev1.ResourceRequirements, name corev1.ResourceName) (resource.Quantity, bool) {
	if q, ok := r.Requests[name]; ok {
		return q, true
	}
	q, ok := r.Limits[name]
	return q, ok
}

func show(q resource.Quantity, ok bool) string {
	if !ok {
		return "none"
	}
	return q.String()
}
