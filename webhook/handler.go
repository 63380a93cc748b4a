// Package webhook is peergroup's admission webhook as the API server sees
// it: the HTTP edge (HTTPHandler), the admission.Handlers that turn a request
// into an admit.Decision and the Decision into a response (Handler for the
// mutating phase, ValidatingHandler for the validating one), the
// Decision's metrics and events, the informer-backed ports the decision
// reads the cluster through, and the controllers that watch member pods
// (TerminatingPeers, MissingServices). Every rule lives in webhook/admit.
package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/peergroup/peergroup/internal/clip"
	"github.com/peergroup/peergroup/webhook/admit"
)

// Path is where the API server sends pod admission reviews.
const Path = "/mutate-v1-pod"

// ValidatePath is where the API server sends the same pods again for
// validation, after its own validation and LimitRanger: the group's Service
// is created there (ValidatingHandler).
const ValidatePath = "/validate-v1-pod"

// Handler is the admission.Handler for pods: the request goes to
// admit.Decider, and the answer, the metrics and the events are derived
// from the Decision it returns.
type Handler struct {
	Decider admit.Decider
	Metrics *Metrics
	// Events, when set, reports denials and created Services on the pod's
	// owner (or its namespace); never for dry-run requests.
	Events *Events
}

var _ admission.Handler = (*Handler)(nil)

func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	start := time.Now()
	dryRun := ptr.Deref(req.DryRun, false)
	d := decide(ctx, req, h.Decider.Decide)
	logDecision(ctx, req, d)
	h.Metrics.observe(req.Namespace, d, time.Since(start))
	if h.Events != nil && !dryRun && d.Pod != nil {
		h.Events.record(ctx, req.Namespace, d)
	}
	return Response(d)
}

// ValidatingHandler is the admission.Handler of the validating phase: it
// creates a missing Service of the pod's group (admit.Decider.Validate),
// and reports that and refusals as Handler does.
type ValidatingHandler struct {
	Decider admit.Decider
	Metrics *Metrics
	Events  *Events
	// Phase, when set, learns from each call that the API server sends
	// pods to this phase.
	Phase *ValidationWatch
}

var _ admission.Handler = (*ValidatingHandler)(nil)

func (h *ValidatingHandler) Handle(ctx context.Context, req admission.Request) admission.Response {
	h.Phase.called()
	dryRun := ptr.Deref(req.DryRun, false)
	d := decide(ctx, req, h.Decider.Validate)
	logDecision(ctx, req, d)
	h.Metrics.observeValidation(req.Namespace, d)
	if h.Events != nil && !dryRun && d.Pod != nil {
		h.Events.record(ctx, req.Namespace, d)
	}
	return Response(d)
}

// Response is the admission answer a Decision implies.
func Response(d admit.Decision) admission.Response {
	switch d.Verdict {
	case admit.VerdictInjected:
		pt := admissionv1.PatchTypeJSONPatch
		resp := admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: true, Patch: d.Patch, PatchType: &pt}}
		return resp.WithWarnings(d.Warnings...)
	case admit.VerdictSkipped:
		return admission.Allowed(d.Message).WithWarnings(d.Warnings...)
	case admit.VerdictDenied:
		return admission.Denied(d.Message)
	}
	return admission.Errored(d.Code, errors.New(d.Message))
}

// logDecision logs what an operator acts on: denials, failures and
// created Services; injections only at -v 1. The logger is built only
// then, because WithValues allocates and most admissions log nothing.
func logDecision(ctx context.Context, req admission.Request, d admit.Decision) {
	switch {
	case d.Reason == admit.ReasonBadRequest:
		// The HTTP edge logs malformed bodies; a wrong kind is the
		// configuration's fault and is answered, not logged.
	case d.Verdict == admit.VerdictDenied:
		logger(ctx, req, d).Info("denied", "reason", d.Message)
	case d.Verdict == admit.VerdictErrored && d.Reason == admit.ReasonNamespaceLookup:
		logger(ctx, req, d).Error(errors.New(d.Message), "namespace lookup failed")
	case d.Verdict == admit.VerdictErrored:
		logger(ctx, req, d).Error(errors.New(d.Message), "ensuring the headless Service failed")
	case d.Service == admit.ServiceCreated:
		logger(ctx, req, d).Info("created headless Service")
	}
	if d.Verdict == admit.VerdictInjected && logf.FromContext(ctx).V(1).Enabled() {
		logger(ctx, req, d).V(1).Info("injected")
	}
}

// decide hands the admission to one phase of the decision, with the pod
// the review carries.
func decide(ctx context.Context, req admission.Request, phase func(context.Context, admit.Request) admit.Decision) admit.Decision {
	pod, err := requestPod(req)
	if err != nil {
		return admit.BadRequest(err)
	}
	return phase(ctx, admit.Request{
		Kind:        req.Kind,
		SubResource: req.SubResource,
		Namespace:   req.Namespace,
		Operation:   req.Operation,
		DryRun:      ptr.Deref(req.DryRun, false),
		Pod:         pod,
	})
}

// requestPod is the pod the HTTP edge decoded with the review, or, for a
// request built elsewhere (controller-runtime's own server, tests), the
// one its raw object holds; nil without an object.
func requestPod(req admission.Request) (*corev1.Pod, error) {
	if pod, ok := req.Object.Object.(*corev1.Pod); ok {
		return pod, nil
	}
	if len(req.Object.Raw) == 0 {
		return nil, nil
	}
	pod := &corev1.Pod{}
	if err := json.Unmarshal(req.Object.Raw, pod); err != nil {
		return nil, fmt.Errorf("decode pod: %w", err)
	}
	if err := checkObjectKind(pod.TypeMeta); err != nil {
		return nil, err
	}
	return pod, nil
}

func logger(ctx context.Context, req admission.Request, d admit.Decision) logr.Logger {
	name := clip.String(req.Name) // the API server has not validated it yet
	if name == "" {
		name = "(generated)"
	}
	kv := []any{"namespace", req.Namespace, "name", name}
	if d.ServiceName != "" {
		kv = append(kv, "group", d.Group, "service", d.ServiceName)
	}
	return logf.FromContext(ctx).WithValues(kv...)
}
