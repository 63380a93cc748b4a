package webhook

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/webhook/admit"
)

// ClusterServiceEnsurer is the admit.ServiceEnsurer of a running webhook: it
// reads Services from an informer cache, so admitting a pod of an existing
// group costs no API call, and creates on a miss.
type ClusterServiceEnsurer struct {
	// Cache is the manager's cached reader.
	Cache client.Reader
	// Live reads past the cache when a create reports AlreadyExists, to tell
	// a lost race (fine) from a non-headless Service the cache has not seen.
	Live client.Reader
	// Writer creates Services.
	Writer client.Writer
}

var _ admit.ServiceEnsurer = (*ClusterServiceEnsurer)(nil)

func (e *ClusterServiceEnsurer) Ensure(ctx context.Context, key client.ObjectKey, desired func() *corev1.Service, usable func(*corev1.Service) error, dryRun bool) (admit.ServiceState, error) {
	have := &corev1.Service{}
	err := e.Cache.Get(ctx, key, have)
	switch {
	case err == nil:
		return admit.ServiceExists, usable(have)
	case !apierrors.IsNotFound(err):
		return admit.ServiceFailed, fmt.Errorf("read Service %s from cache: %w", key, err)
	case dryRun:
		// sideEffects: NoneOnDryRun — the pod is still mutated as if the
		// Service existed.
		return admit.ServiceMissing, nil
	}
	err = e.Writer.Create(ctx, desired())
	if err == nil {
		return admit.ServiceCreated, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return admit.ServiceFailed, fmt.Errorf("create headless Service %s: %w", key, err)
	}
	// Another pod or webhook replica won the race; that is success as long as
	// what exists is headless.
	if err := e.Live.Get(ctx, key, have); err != nil {
		return admit.ServiceFailed, fmt.Errorf("read Service %s after AlreadyExists: %w", key, err)
	}
	return admit.ServiceExists, usable(have)
}

// CachedNamespaceLabels is the admit.NamespaceLabels of a running webhook:
// namespace metadata from the informer cache, with a live read for a
// namespace created moments ago that the cache has not seen yet.
type CachedNamespaceLabels struct {
	Cache client.Reader
	Live  client.Reader
}

var _ admit.NamespaceLabels = (*CachedNamespaceLabels)(nil)

// FreshLabels reads the namespace from the API server.
func (n *CachedNamespaceLabels) FreshLabels(ctx context.Context, namespace string) (map[string]string, error) {
	meta, err := NamespaceMeta(ctx, n.Live, namespace)
	if err != nil {
		return nil, fmt.Errorf("read labels of namespace %s: %w", namespace, err)
	}
	return meta.Labels, nil
}

func (n *CachedNamespaceLabels) Labels(ctx context.Context, namespace string) (map[string]string, error) {
	meta, err := NamespaceMeta(ctx, n.Cache, namespace)
	if apierrors.IsNotFound(err) {
		meta, err = NamespaceMeta(ctx, n.Live, namespace)
	}
	if err != nil {
		return nil, fmt.Errorf("read labels of namespace %s: %w", namespace, err)
	}
	return meta.Labels, nil
}

// NamespaceMeta reads a namespace's metadata only (the webhook caches
// namespaces as metadata, never whole objects).
func NamespaceMeta(ctx context.Context, r client.Reader, namespace string) (*metav1.PartialObjectMetadata, error) {
	meta := &metav1.PartialObjectMetadata{}
	meta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	return meta, r.Get(ctx, client.ObjectKey{Name: namespace}, meta)
}

// CachedLimitRanges is the admit.LimitRanges of a running webhook: a
// namespace's LimitRanges from the informer cache.
type CachedLimitRanges struct {
	Cache client.Reader
}

var _ admit.LimitRanges = (*CachedLimitRanges)(nil)

func (l *CachedLimitRanges) LimitRanges(ctx context.Context, namespace string) ([]corev1.LimitRange, error) {
	list := &corev1.LimitRangeList{}
	if err := l.Cache.List(ctx, list, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("list LimitRanges of namespace %s: %w", namespace, err)
	}
	return list.Items, nil
}
