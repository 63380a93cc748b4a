package admit

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// staticNamespaces gives every namespace the same labels.
type staticNamespaces map[string]string

func (s staticNamespaces) Labels(context.Context, string) (map[string]string, error) { return s, nil }

func (s staticNamespaces) FreshLabels(ctx context.Context, ns string) (map[string]string, error) {
	return s.Labels(ctx, ns)
}

// staticLimitRanges gives every namespace the same LimitRanges.
type staticLimitRanges []corev1.LimitRange

func (s staticLimitRanges) LimitRanges(context.Context, string) ([]corev1.LimitRange, error) {
	return s, nil
}

// staticServices is a cluster holding at most Existing; Known false makes
// every other Service unknown rather than missing. What would be created
// is kept in Desired, and nothing is.
type staticServices struct {
	Existing *corev1.Service
	Known    bool
	Desired  *corev1.Service
}

func (s *staticServices) Ensure(_ context.Context, key client.ObjectKey, desired func() *corev1.Service, usable func(*corev1.Service) error, _ bool) (ServiceState, error) {
	s.Desired = desired()
	switch {
	case s.Existing != nil && s.Existing.Name == key.Name && s.Existing.Namespace == key.Namespace:
		return ServiceExists, usable(s.Existing)
	case s.Known:
		return ServiceMissing, nil
	}
	return ServiceUnknown, nil
}
