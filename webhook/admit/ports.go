package admit

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// NamespaceLabels returns the labels of a namespace.
type NamespaceLabels interface {
	// Labels reads them, from a cache where there is one.
	Labels(ctx context.Context, namespace string) (map[string]string, error)
	// FreshLabels reads them past any cache.
	FreshLabels(ctx context.Context, namespace string) (map[string]string, error)
}

// ServiceEnsurer makes sure a group's headless Service exists before a
// member pod is admitted.
type ServiceEnsurer interface {
	// Ensure reports the Service's state after the call: ServiceExists,
	// ServiceCreated (only when this call created key), ServiceMissing
	// (dryRun: nothing is written) or ServiceUnknown. desired builds the
	// Service and is called only when it is needed, keeping a cache hit
	// free of allocations. An existing Service is passed to usable, whose
	// error is returned with ServiceExists (CheckExisting: not headless, or
	// without the pod's port-name).
	Ensure(ctx context.Context, key client.ObjectKey, desired func() *corev1.Service, usable func(have *corev1.Service) error, dryRun bool) (ServiceState, error)
}

// ValidationPhase says whether the API server sends member pods to the
// validating phase too (Decider.Validate), so the mutating phase may leave
// a missing Service to it.
type ValidationPhase interface {
	InForce() bool
}

// LimitRanges lists a namespace's LimitRanges.
type LimitRanges interface {
	LimitRanges(ctx context.Context, namespace string) ([]corev1.LimitRange, error)
}

// StaticNamespaceLabels gives every namespace the same labels: the
// offline tools' stand-in for the namespace cache.
type StaticNamespaceLabels map[string]string

func (s StaticNamespaceLabels) Labels(context.Context, string) (map[string]string, error) {
	return s, nil
}

func (s StaticNamespaceLabels) FreshLabels(ctx context.Context, ns string) (map[string]string, error) {
	return s.Labels(ctx, ns)
}

// StaticLimitRanges gives every namespace the same LimitRanges: the
// offline tools' stand-in for the LimitRange cache.
type StaticLimitRanges []corev1.LimitRange

func (s StaticLimitRanges) LimitRanges(context.Context, string) ([]corev1.LimitRange, error) {
	return s, nil
}

// StaticServices stands in for the Service cache offline: Existing is the
// one Service looked up (nil: none), Known says whether anything was
// looked up at all. Nothing is written; the Service the webhook would
// create is kept in Desired.
type StaticServices struct {
	Existing *corev1.Service
	Known    bool
	Desired  *corev1.Service
}

func (s *StaticServices) Ensure(_ context.Context, key client.ObjectKey, desired func() *corev1.Service, usable func(*corev1.Service) error, _ bool) (ServiceState, error) {
	s.Desired = desired()
	switch {
	case s.Existing != nil && s.Existing.Name == key.Name && s.Existing.Namespace == key.Namespace:
		return ServiceExists, usable(s.Existing)
	case s.Known:
		return ServiceMissing, nil
	}
	return ServiceUnknown, nil
}
