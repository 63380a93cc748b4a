package inspect

import (
	"context"

	"github.com/peergroup/peergroup/webhook/admit"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

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

func (s *StaticServices) Ensure(_ context.Context, key client.ObjectKey, desired func() *corev1.Service, usable func(*corev1.Service) error, _ bool) (admit.ServiceState, error) {
	s.Desired = desired()
	switch {
	case s.Existing != nil && s.Existing.Name == key.Name && s.Existing.Namespace == key.Namespace:
		return admit.ServiceExists, usable(s.Existing)
	case s.Known:
		return admit.ServiceMissing, nil
	}
	return admit.ServiceUnknown, nil
}
