package webhook

import (
	"context"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/internal/clip"
	"github.com/peergroup/peergroup/webhook/admit"
)

// EventRecorder is the events.k8s.io recorder (controller-runtime's
// manager.GetEventRecorder).
type EventRecorder interface {
	Eventf(regarding runtime.Object, related runtime.Object, eventtype, reason, action, note string, args ...interface{})
}

// Events reports what the webhook did where users look: on the pod's
// controller (a denied pod never exists, so `kubectl describe` of its
// ReplicaSet, StatefulSet or Job shows why), or on the namespace for a bare
// pod.
type Events struct {
	Recorder EventRecorder
	// Namespaces reads namespace metadata (the cache) for the namespace's
	// UID, which `kubectl describe namespace` matches events on.
	Namespaces client.Reader
}

// Event reasons.
const (
	EventPodDenied           = "PeerGroupPodDenied"
	EventServiceCreated      = "PeerGroupServiceCreated"
	EventServiceCreateFailed = "PeerGroupServiceCreateFailed"
)

// record reports a Decision that created a Service or refused the pod.
func (e *Events) record(ctx context.Context, namespace string, d admit.Decision) {
	created := d.Service == admit.ServiceCreated
	if !created && d.Allowed() {
		return // most admissions: nothing to report, and nothing to build
	}
	pod := d.Pod
	name := clip.String(pod.Name)
	if name == "" {
		name = clip.String(pod.GenerateName) + "<generated>"
	}
	switch {
	case created:
		e.Recorder.Eventf(e.regarding(ctx, namespace, pod), nil, corev1.EventTypeNormal, EventServiceCreated, "CreateService",
			"created headless Service %s/%s for peer group %s, before admitting pod %s", namespace, d.ServiceName, d.Group, name)
	case d.Reason == admit.ReasonServiceCreateFailed:
		e.Recorder.Eventf(e.regarding(ctx, namespace, pod), nil, corev1.EventTypeWarning, EventServiceCreateFailed, "AdmitPod",
			"pod %s denied: %s", name, truncateNote(d.Message))
	case d.Message != "":
		e.Recorder.Eventf(e.regarding(ctx, namespace, pod), nil, corev1.EventTypeWarning, EventPodDenied, "AdmitPod",
			"pod %s denied: %s", name, truncateNote(d.Message))
	}
}

// storedWithoutService reports a Service MissingServices created for a
// member pod that was stored without it.
func (e *Events) storedWithoutService(ctx context.Context, pod *corev1.Pod, d admit.Decision) {
	if e == nil {
		return
	}
	e.Recorder.Eventf(e.regarding(ctx, pod.Namespace, pod), nil, corev1.EventTypeNormal, EventServiceCreated, "CreateService",
		"created headless Service %s/%s for peer group %s: member pod %s was stored without it", pod.Namespace, d.ServiceName, d.Group, pod.Name)
}

// regarding is the pod's controller, else its first owner, else its
// namespace.
func (e *Events) regarding(ctx context.Context, namespace string, pod *corev1.Pod) *corev1.ObjectReference {
	owners := pod.OwnerReferences
	if c := metav1.GetControllerOfNoCopy(pod); c != nil {
		owners = []metav1.OwnerReference{*c}
	}
	if len(owners) > 0 {
		o := owners[0]
		// From the pod as sent, before the API server validates it: cut,
		// so a huge value cannot make the Event itself invalid.
		return &corev1.ObjectReference{APIVersion: clip.String(o.APIVersion), Kind: clip.String(o.Kind), Name: clip.String(o.Name), Namespace: namespace, UID: types.UID(clip.String(string(o.UID)))}
	}
	ref := &corev1.ObjectReference{APIVersion: "v1", Kind: "Namespace", Name: namespace}
	if e.Namespaces != nil {
		if meta, err := NamespaceMeta(ctx, e.Namespaces, namespace); err == nil {
			ref.UID = meta.UID
		}
	}
	return ref
}

// truncateNote keeps an event's message within what fits the API's
// 1024-byte note beside the prefix ("pod <name> denied: ", the name cut to
// at most ~100 bytes), ending on a character boundary.
func truncateNote(s string) string {
	const max = 880
	if len(s) <= max {
		return s
	}
	cut := s[:max]
	for len(cut) > 0 && !utf8.ValidString(cut) {
		cut = cut[:len(cut)-1]
	}
	return cut + "…"
}
