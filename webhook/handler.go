package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// Path is where the API server sends pod admission reviews.
const Path = "/mutate-v1-pod"

// Handler is the admission.Handler for pods: decode → resolve group →
// Mutate → ensure Service → JSON patch (PatchResponseFromRaw, or the
// proven-equal direct patch; see PatchMode).
type Handler struct {
	Config     Config
	Namespaces NamespaceLabels
	Services   ServiceEnsurer
	Metrics    *Metrics
	// Events, when set, reports denials and created Services on the pod's
	// owner (or its namespace); never for dry-run requests.
	Events *Events
	// InitContainers caches encoded init containers (PatchDirect).
	InitContainers InitContainerCache
}

var _ admission.Handler = (*Handler)(nil)

// outcome is what one admission did, for metrics and events.
type outcome struct {
	result string // resultInjected, resultSkipped, resultDenied, resultErrored
	// reason is a short, fixed word (metrics label): why skipped, denied
	// or errored.
	reason string
	group  string
	// message is the denial or error the user sees.
	message string
	// service is set when this admission created the group's Service.
	service string
}

func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	start := time.Now()
	resp, out, pod := h.handle(ctx, req)
	h.Metrics.observe(req.Namespace, out, time.Since(start))
	if h.Events != nil && !ptr.Deref(req.DryRun, false) && pod != nil {
		h.Events.record(ctx, req.Namespace, pod, out)
	}
	return resp
}

func (h *Handler) handle(ctx context.Context, req admission.Request) (admission.Response, outcome, *corev1.Pod) {
	// Built only when something is logged: WithValues allocates, and most
	// admissions log nothing.
	var group []any
	log := func() logr.Logger {
		return logf.FromContext(ctx).WithValues(append([]any{"namespace", req.Namespace, "name", podName(req)}, group...)...)
	}
	if req.Kind.Group != "" || req.Kind.Version != "v1" || req.Kind.Kind != "Pod" || req.SubResource != "" {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("peergroup mutates only v1 Pod objects, got %s %s/%s subresource %q",
			req.Kind.Kind, req.Kind.Group, req.Kind.Version, req.SubResource)), outcome{result: resultErrored, reason: reasonBadRequest}, nil
	}
	if req.Operation != admissionv1.Create {
		return admission.Allowed("peergroup only acts on CREATE"), outcome{result: resultSkipped, reason: reasonNotCreate}, nil
	}
	pod, err := requestPod(req)
	if err != nil {
		return admission.Errored(http.StatusBadRequest, err), outcome{result: resultErrored, reason: reasonBadRequest}, nil
	}
	if h.Config.excluded(req.Namespace) {
		return admission.Allowed("").WithWarnings(fmt.Sprintf("peergroup: pods in namespace %s are never injected", req.Namespace)),
			outcome{result: resultSkipped, reason: reasonExcludedNamespace}, pod
	}

	var nsLabels map[string]string
	if _, ok := pod.Labels[GroupLabel]; !ok && pod.Labels[InjectLabel] != "false" {
		if nsLabels, err = h.Namespaces.Labels(ctx, req.Namespace); err != nil {
			log().Error(err, "namespace lookup failed")
			return admission.Errored(http.StatusInternalServerError, err), outcome{result: resultErrored, reason: reasonNamespaceLookup, message: err.Error()}, pod
		}
	}
	m, err := ResolveGroup(pod, nsLabels)
	if err != nil {
		log().Info("denied", "reason", err.Error())
		return admission.Denied(err.Error()), outcome{result: resultDenied, reason: reasonInvalidName, group: pod.Labels[GroupLabel], message: err.Error()}, pod
	}
	if !m.Member() {
		reason := reasonNotMember
		if pod.Labels[InjectLabel] == "false" {
			reason = reasonOptedOut
		}
		return admission.Allowed(m.Reason), outcome{result: resultSkipped, reason: reason}, pod
	}
	group = []any{"group", m.Group, "service", m.Service}

	var mutated *corev1.Pod
	var warnings []string
	if !IsInjected(pod) {
		out, w, err := Mutate(pod, m, h.Config)
		if err != nil {
			log().Info("denied", "reason", err.Error())
			return admission.Denied(err.Error()), outcome{result: resultDenied, reason: denialReason(err), group: m.Group, message: err.Error()}, pod
		}
		mutated, warnings = out, w
	}

	// Ensured even for an already injected pod (reinvocation, offline
	// injection): a cache hit costs nothing and the Service must exist.
	desired := func() *corev1.Service { return DesiredService(pod, req.Namespace, m) }
	key := client.ObjectKey{Namespace: req.Namespace, Name: m.Service}
	created, err := h.Services.Ensure(ctx, key, desired, ptr.Deref(req.DryRun, false))
	if err != nil {
		var conflict *NotHeadlessError
		if errors.As(err, &conflict) {
			log().Info("denied", "reason", err.Error())
			return admission.Denied(err.Error()), outcome{result: resultDenied, reason: reasonServiceNotHeadless, group: m.Group, message: err.Error()}, pod
		}
		log().Error(err, "ensuring the headless Service failed")
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w (the API server did not answer within the webhook's budget, 4/5 of its timeoutSeconds)", err)
		}
		err = fmt.Errorf("peergroup: cannot ensure headless Service %s/%s for group %s: %w", req.Namespace, m.Service, m.Group, err)
		return admission.Errored(http.StatusInternalServerError, err), outcome{result: resultErrored, reason: reasonServiceCreateFailed, group: m.Group, message: err.Error()}, pod
	}
	out := outcome{result: resultSkipped, reason: reasonAlreadyInjected, group: m.Group}
	if created {
		out.service = m.Service
		log().Info("created headless Service")
	}
	if mutated == nil {
		return admission.Allowed("already injected"), out, pod
	}
	if logf.FromContext(ctx).V(1).Enabled() {
		log().V(1).Info("injected")
	}
	out.result, out.reason = resultInjected, ""
	return patchResponse(h.Config.PatchMode, req.Object.Raw, pod, mutated, &h.InitContainers).WithWarnings(warnings...), out, pod
}

func denialReason(err error) string {
	var tuning *InvalidTuningError
	var collision *CollisionError
	var unsupportedOS *UnsupportedOSError
	switch {
	case errors.As(err, &tuning):
		return reasonInvalidTuning
	case errors.As(err, &collision):
		return reasonCollision
	case errors.As(err, &unsupportedOS):
		return reasonUnsupportedOS
	}
	return reasonInvalidName
}

// requestPod is the pod under admission: already decoded by the HTTP edge
// (HTTPHandler.DecodePod), or decoded from the raw object.
func requestPod(req admission.Request) (*corev1.Pod, error) {
	if pod, ok := req.Object.Object.(*corev1.Pod); ok && pod != nil {
		return pod, nil
	}
	if len(req.Object.Raw) == 0 {
		return nil, errors.New("admission request has no object")
	}
	pod := &corev1.Pod{}
	if err := json.Unmarshal(req.Object.Raw, pod); err != nil {
		return nil, fmt.Errorf("decode pod: %w", err)
	}
	return pod, nil
}

func podName(req admission.Request) string {
	if req.Name != "" {
		return req.Name
	}
	return "(generated)"
}
