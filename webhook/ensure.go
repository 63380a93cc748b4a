package webhook

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ServiceEnsurer makes sure a group's headless Service exists before a
// member pod is admitted.
type ServiceEnsurer interface {
	// Ensure returns created=true only when this call created the Service
	// key; desired builds it and is called only when it is needed (a cache
	// miss or an error), keeping the common path free of allocations. With
	// dryRun nothing is written.
	Ensure(ctx context.Context, key client.ObjectKey, desired func() *corev1.Service, dryRun bool) (created bool, err error)
}

// ClusterServiceEnsurer reads Services from an informer cache, so admitting a
// pod of an existing group costs no API call, and creates on a miss.
type ClusterServiceEnsurer struct {
	// Cache is the manager's cached reader.
	Cache client.Reader
	// Live reads past the cache when a create reports AlreadyExists, to tell
	// a lost race (fine) from a non-headless Service the cache has not seen.
	Live client.Reader
	// Writer creates Services.
	Writer client.Writer
}

func (e *ClusterServiceEnsurer) Ensure(ctx context.Context, key client.ObjectKey, desired func() *corev1.Service, dryRun bool) (bool, error) {
	have := &corev1.Service{}
	err := e.Cache.Get(ctx, key, have)
	switch {
	case err == nil:
		return false, checkHeadless(have, desired)
	case !apierrors.IsNotFound(err):
		return false, fmt.Errorf("read Service %s from cache: %w", key, err)
	case dryRun:
		// sideEffects: NoneOnDryRun — the pod is still mutated as if the
		// Service existed.
		return false, nil
	}
	err = e.Writer.Create(ctx, desired())
	if err == nil {
		return true, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return false, fmt.Errorf("create headless Service %s: %w", key, err)
	}
	// Another pod or webhook replica won the race; that is success as long as
	// what exists is headless.
	if err := e.Live.Get(ctx, key, have); err != nil {
		return false, fmt.Errorf("read Service %s after AlreadyExists: %w", key, err)
	}
	return false, checkHeadless(have, desired)
}

func checkHeadless(have *corev1.Service, desired func() *corev1.Service) error {
	if IsHeadless(have) {
		return nil
	}
	return &NotHeadlessError{Namespace: have.Namespace, Name: have.Name, Group: desired().Labels[GroupLabel], ClusterIP: have.Spec.ClusterIP}
}

// NamespaceLabels returns the labels of a namespace.
type NamespaceLabels interface {
	Labels(ctx context.Context, namespace string) (map[string]string, error)
}

// CachedNamespaceLabels reads namespace metadata from the informer cache and
// falls back to a live read for a namespace created moments ago that the
// cache has not seen yet.
type CachedNamespaceLabels struct {
	Cache client.Reader
	Live  client.Reader
}

func (n *CachedNamespaceLabels) Labels(ctx context.Context, namespace string) (map[string]string, error) {
	meta := &metav1.PartialObjectMetadata{}
	meta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Namespace"))
	err := n.Cache.Get(ctx, client.ObjectKey{Name: namespace}, meta)
	if apierrors.IsNotFound(err) {
		err = n.Live.Get(ctx, client.ObjectKey{Name: namespace}, meta)
	}
	if err != nil {
		return nil, fmt.Errorf("read labels of namespace %s: %w", namespace, err)
	}
	return meta.Labels, nil
}
