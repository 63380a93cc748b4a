package webhook

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/webhook/admit"
)

// MissingServices creates the group's Service for a new member pod that
// was stored without it. Admission creates it first in every ordinary
// case; this covers the moments when the mutating phase left it to a
// validating call the API server did not make after all — the validating
// configuration deleted or changed a moment before the webhook's watch
// saw it, an API server of an HA control plane that had not loaded it yet,
// a later webhook that took the pod out of the configuration's selectors
// (docs/design.md, "Two phases"). seed-discovery waits until DNS shows its
// own pod, so the pod waits for the Service instead of deciding without it.
//
// Only pods younger than Window are looked at, and only on their own
// events: a Service an operator deletes under a running group is theirs to
// replace (with another name in peergroup.dev/service, say), not the
// webhook's to put back.
type MissingServices struct {
	// Reader reads pod metadata from the peers' cache; Services is the
	// Service cache; Live reads past any cache.
	Reader   client.Reader
	Services client.Reader
	Live     client.Reader
	// Decider creates the Service as the validating phase does.
	Decider admit.Decider
	// Events, when set, reports each Service created here.
	Events *Events
	Window time.Duration
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

var _ reconcile.Reconciler = (*MissingServices)(nil)

// Young reports whether a peer is one MissingServices looks at: running,
// and created less than window ago.
func Young(pod metav1.Object, window time.Duration, now time.Time) bool {
	return pod.GetDeletionTimestamp() == nil && pod.GetLabels()[contract.PeerLabel] == contract.PeerValue &&
		now.Sub(pod.GetCreationTimestamp().Time) < window
}

// ServiceNameOf is the Service a member pod's metadata names: the
// peergroup.dev/service annotation, else its group label (which the
// injection stamps on every member).
func ServiceNameOf(pod metav1.Object) string {
	if name := pod.GetAnnotations()[contract.ServiceAnnotation]; name != "" {
		return name
	}
	return pod.GetLabels()[contract.GroupLabel]
}

func (r *MissingServices) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	meta := PodMeta()
	if err := r.Reader.Get(ctx, req.NamespacedName, meta); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	name := ServiceNameOf(meta)
	if !Young(meta, r.Window, now()) || name == "" {
		return reconcile.Result{}, nil
	}
	key := client.ObjectKey{Namespace: req.Namespace, Name: name}
	err := r.Services.Get(ctx, key, &corev1.Service{})
	if !apierrors.IsNotFound(err) {
		return reconcile.Result{}, err // nil: it exists, the case of every admitted pod
	}
	// The validating phase created it a moment before the pod was stored,
	// and the Service cache's watch may not have it yet.
	err = r.Live.Get(ctx, key, &corev1.Service{})
	if !apierrors.IsNotFound(err) {
		return reconcile.Result{}, err
	}
	pod := &corev1.Pod{}
	if err := r.Live.Get(ctx, req.NamespacedName, pod); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	d := r.Decider.Validate(ctx, admit.Request{
		Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: req.Namespace, Operation: "CREATE", Pod: pod,
	})
	logger := log.FromContext(ctx).WithValues("pod", req.NamespacedName, "group", d.Group, "service", d.ServiceName)
	switch {
	case d.Service == admit.ServiceCreated:
		logger.Info("created the missing Service of a stored member pod (its admission did not)")
		r.Events.storedWithoutService(ctx, pod, d)
	case d.Verdict == admit.VerdictErrored:
		return reconcile.Result{}, fmt.Errorf("create the missing Service of stored member pod %s: %s", req.NamespacedName, d.Message)
	case d.Verdict == admit.VerdictDenied:
		logger.Info("a stored member pod has no usable Service", "reason", d.Message)
	}
	return reconcile.Result{}, nil
}
