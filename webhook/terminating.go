package webhook

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/peergroup/peergroup/contract"
)

// TerminatingPeers takes a member pod out of its group's DNS the moment it
// starts terminating, by setting its peer label to
// contract.PeerTerminatingValue. The Services peergroup creates select
// peergroup.dev/peer=true, so the EndpointSlice controller drops the pod
// and DNS stops answering with it, while the pod itself runs its grace
// period undisturbed. Without this a publishNotReadyAddresses Service keeps
// a terminating pod in DNS until it is gone, and after a full restart every
// replacement could take the old pods, still answering on the peer port,
// as its seeds (docs/design.md, "Terminating peers").
//
// It patches nothing but that one label, and only on a pod that carries
// peergroup.dev/peer=true and has a deletionTimestamp; every webhook
// replica runs it, and the patch is idempotent, so no leader is needed.
type TerminatingPeers struct {
	// Reader reads pod metadata from the peers' cache; Writer patches
	// through the API server.
	Reader client.Reader
	Writer client.Writer
}

var _ reconcile.Reconciler = (*TerminatingPeers)(nil)

// PodMeta is the metadata-only pod type the controller watches.
func PodMeta() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Pod"))
	return m
}

// Retiring reports whether a pod is a peer that has started terminating:
// the one case TerminatingPeers acts on.
func Retiring(pod metav1.Object) bool {
	return pod.GetDeletionTimestamp() != nil && pod.GetLabels()[contract.PeerLabel] == contract.PeerValue
}

// retirePatch sets the label on the pod read, on two conditions the API
// server checks (JSON patch test operations): the pod is still the one
// read (its UID: a StatefulSet's replacement has the same name, and the
// cache may still hold the old pod), and still carries the value read, so
// a pod whose label someone else changed meanwhile is left as it is.
func retirePatch(uid types.UID) []byte {
	test, _ := json.Marshal(string(uid))
	return []byte(`[{"op":"test","path":"/metadata/uid","value":` + string(test) + `},` +
		`{"op":"test","path":"/metadata/labels/peergroup.dev~1peer","value":"` + contract.PeerValue + `"},` +
		`{"op":"replace","path":"/metadata/labels/peergroup.dev~1peer","value":"` + contract.PeerTerminatingValue + `"}]`)
}

func (r *TerminatingPeers) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	pod := PodMeta()
	if err := r.Reader.Get(ctx, req.NamespacedName, pod); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !Retiring(pod) {
		return reconcile.Result{}, nil
	}
	// A fresh object: the patch's answer is decoded into it, and the one
	// read may share its maps with the cache (DefaultUnsafeDisableDeepCopy).
	target := PodMeta()
	target.Namespace, target.Name = pod.Namespace, pod.Name
	err := r.Writer.Patch(ctx, target, client.RawPatch(types.JSONPatchType, retirePatch(pod.UID)))
	switch {
	case err == nil:
		log.FromContext(ctx).Info("terminating peer left its group's DNS", "pod", req.NamespacedName, "label", contract.PeerLabel+"="+contract.PeerTerminatingValue)
		return reconcile.Result{}, nil
	case apierrors.IsNotFound(err):
		return reconcile.Result{}, nil // gone already
	case apierrors.IsInvalid(err), apierrors.IsConflict(err):
		// A failed test operation (another pod by now, or its label
		// changed under us), or a policy refusing the change: nothing
		// left to do for this pod, but say so.
		log.FromContext(ctx).Info("terminating peer not relabelled: another pod by now, its label changed, or a policy refused", "pod", req.NamespacedName, "uid", pod.UID, "label", pod.Labels[contract.PeerLabel], "reason", err.Error())
		return reconcile.Result{}, nil
	}
	return reconcile.Result{}, fmt.Errorf("relabel terminating peer %s: %w", req.NamespacedName, err)
}
