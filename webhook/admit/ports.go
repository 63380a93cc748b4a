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
