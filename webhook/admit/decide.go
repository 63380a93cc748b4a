// Package admit is peergroup's admission core: every rule of what happens
// to a pod, and nothing about HTTP or informers. Decider.Decide takes one
// admission request and returns a Decision; the webhook, the CLI's inject,
// explain and audit, and the tests all decide through it. The rules are
// pure functions (ResolveGroup, Mutate, DesiredService); the cluster is
// reached only through its ports (NamespaceLabels, ServiceEnsurer,
// LimitRanges, ValidationPhase),
// which the webhook backs with informer caches and the CLI with what it
// looked up. The JSON patch is written directly (DirectPatch), with
// jsonpatch as its oracle in the tests. docs/design.md, "The admission
// decision", walks through it.
package admit

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/contract"
)

// Decider holds what a decision reads besides the request: the
// configuration and the ports to the cluster (or their offline stand-ins).
type Decider struct {
	Config     Config
	Namespaces NamespaceLabels
	Services   ServiceEnsurer
	// LimitRanges, when set, are checked against the injected init
	// container; offline, without a cluster, they are not known.
	LimitRanges LimitRanges
	// InitContainers caches encoded init containers for the patch; nil
	// encodes each one.
	InitContainers *InitContainerCache
	// Validation, when set and in force, leaves a missing Service to the
	// validating phase (Validate); nil: Decide creates it, as a webhook
	// registered for the mutating phase only must.
	Validation ValidationPhase
}

// Decide runs the admission: request checks → group → mutation → Service
// → patch. The order is the contract: a non-CREATE is skipped before any rule runs, a
// non-member never touches the cluster, and a pod is denied before its
// Service is created. With the validating phase in force the Service is
// only checked here, and created by Validate.
func (d *Decider) Decide(ctx context.Context, req Request) Decision {
	pod, dec, done := d.admittedPod(req)
	if done {
		return dec
	}
	var err error
	dec, m, ok := d.member(ctx, req.Namespace, pod)
	if !ok {
		return dec
	}
	injected := IsInjected(pod)
	if !injected {
		dec.Mutated, dec.Warnings, err = Mutate(pod, m, d.Config)
	} else {
		dec.Incomplete = incompleteContainers(pod, m)
		dec.Mutated, dec.Warnings, err = Complete(pod, m, d.Config)
	}
	if err != nil {
		return dec.deny(reasonOf(err), err)
	}
	if !injected && d.LimitRanges != nil {
		ranges, err := d.LimitRanges.LimitRanges(ctx, req.Namespace)
		if err != nil {
			return dec.fail(http.StatusInternalServerError, ReasonNamespaceLookup, fmt.Errorf("peergroup: read the LimitRanges of namespace %s: %w", req.Namespace, err))
		}
		ic := injectedContainer(dec.Mutated) // last, or first with init-first
		if err := checkLimitRanges(ic, ranges); err != nil {
			return dec.deny(reasonOf(err), err)
		}
		if err := checkPodLimitRanges(pod, dec.Mutated, ranges); err != nil {
			return dec.deny(reasonOf(err), err)
		}
	}
	if err := checkServiceInputs(pod); err != nil {
		return dec.deny(reasonOf(err), err)
	}
	// Ensured even for an already injected pod (reinvocation, offline
	// injection): a cache hit costs nothing and the Service must exist.
	create := !req.DryRun && (d.Validation == nil || !d.Validation.InForce())
	if dec = d.ensureService(ctx, req, m, dec, create); dec.Verdict != "" {
		return dec
	}
	if !create && !req.DryRun && dec.Service == ServiceMissing {
		dec.Service = ServiceDeferred
	}
	if injected {
		dec.Marker = MarkerAnnotation
		if hasInitContainer(pod) {
			dec.Marker = MarkerInitContainer
		}
	}
	if dec.Mutated == nil {
		dec.Verdict, dec.Reason, dec.Message = VerdictSkipped, ReasonAlreadyInjected, "already injected"
		return dec
	}
	dec.Verdict = VerdictInjected
	if injected {
		// A reinvocation after another webhook added a container, or a
		// pod injected before the peer label existed.
		dec.Reason = ReasonCompleted
	}
	cache := d.InitContainers
	if !dec.GroupInCluster() {
		// A group with no Service yet may be one of any number of dry-run
		// names: it must not take one of the cache's bounded entries.
		cache = nil
	}
	if dec.Patch, err = directPatch(pod, dec.Mutated, cache); err != nil {
		return dec.fail(http.StatusInternalServerError, ReasonNone, fmt.Errorf("build JSON patch: %w", err))
	}
	return dec
}

// Validate is the validating phase: the API server sends the pod as it is
// about to be stored — mutated, and past its own validation and
// LimitRanger — and a missing Service of the pod's group is created now,
// still before the pod exists. A pod the API server refuses never gets
// here, so it leaves no Service behind. Nothing else is decided again: a
// member pod is allowed unless its Service cannot be used or created.
func (d *Decider) Validate(ctx context.Context, req Request) Decision {
	pod, dec, done := d.admittedPod(req)
	if done {
		dec.Warnings = nil // said once, in the mutating phase
		return dec
	}
	dec, m, ok := d.member(ctx, req.Namespace, pod)
	if !ok {
		return dec
	}
	if err := checkServiceInputs(pod); err != nil {
		return dec.deny(reasonOf(err), err)
	}
	if dec = d.ensureService(ctx, req, m, dec, !req.DryRun); dec.Verdict != "" {
		return dec
	}
	dec.Verdict = VerdictSkipped
	return dec
}

// admittedPod checks what the request is and decodes its pod; done is
// true when that already decides (not a pod, not a CREATE, unreadable, an
// excluded namespace).
func (d *Decider) admittedPod(req Request) (*corev1.Pod, Decision, bool) {
	if req.Kind.Group != "" || req.Kind.Version != "v1" || req.Kind.Kind != "Pod" || req.SubResource != "" {
		return nil, BadRequest(fmt.Errorf("peergroup mutates only v1 Pod objects, got %s %s/%s subresource %q",
			req.Kind.Kind, req.Kind.Group, req.Kind.Version, req.SubResource)), true
	}
	if req.Operation != admissionv1.Create {
		return nil, Decision{Verdict: VerdictSkipped, Reason: ReasonNotCreate, Message: "peergroup only acts on CREATE"}, true
	}
	pod := req.Pod
	if pod == nil {
		return nil, BadRequest(errors.New("admission request has no object")), true
	}
	if d.Config.Excluded(req.Namespace) {
		return pod, Decision{Verdict: VerdictSkipped, Reason: ReasonExcludedNamespace, Pod: pod,
			Warnings: []string{fmt.Sprintf("peergroup: pods in namespace %s are never injected", req.Namespace)}}, true
	}
	return pod, Decision{}, false
}

// member resolves the pod's group; ok is false when the decision is made
// (not a member, or an invalid name).
func (d *Decider) member(ctx context.Context, namespace string, pod *corev1.Pod) (Decision, Membership, bool) {
	dec := Decision{Pod: pod}
	var nsLabels map[string]string
	if needsNamespaceLabels(pod) {
		var err error
		if nsLabels, err = d.Namespaces.Labels(ctx, namespace); err != nil {
			return dec.fail(http.StatusInternalServerError, ReasonNamespaceLookup, err), Membership{}, false
		}
		if _, labelled := nsLabels[contract.GroupLabel]; !labelled {
			// The API server calls the webhook for a pod without its own
			// group label only because the namespace's label matched the
			// configuration's namespaceSelector: if the cache says the
			// namespace has none, the cache is behind (a namespace labelled
			// a moment ago). Admitting the pod uninjected would let it found
			// a second cluster, so ask the API server.
			if nsLabels, err = d.Namespaces.FreshLabels(ctx, namespace); err != nil {
				return dec.fail(http.StatusInternalServerError, ReasonNamespaceLookup, err), Membership{}, false
			}
		}
	}
	m, err := ResolveGroup(pod, nsLabels)
	if err != nil {
		dec.Group = pod.Labels[contract.GroupLabel]
		return dec.deny(reasonOf(err), err), m, false
	}
	if !m.Member() {
		reason := ReasonNotMember
		if optedOut(pod) {
			reason = ReasonOptedOut
		}
		dec.Verdict, dec.Reason, dec.Message = VerdictSkipped, reason, m.Reason
		return dec, m, false
	}
	dec.Group, dec.Source, dec.ServiceName = m.Group, m.Source, m.Service
	return dec, m, true
}

// ensureService records the Service's state, and decides (denied or
// errored) when it cannot be used; otherwise the verdict stays empty. A
// missing Service is created only when create is set.
func (d *Decider) ensureService(ctx context.Context, req Request, m Membership, dec Decision, create bool) Decision {
	pod, ns := dec.Pod, req.Namespace // the closure captures these, not the whole Decision
	desired := func() *corev1.Service { return DesiredService(pod, ns, m) }
	key := client.ObjectKey{Namespace: req.Namespace, Name: m.Service}
	usable := func(have *corev1.Service) error { return CheckExisting(have, pod) }
	state, err := d.Services.Ensure(ctx, key, desired, usable, !create)
	dec.Service = state
	var denial *Denial
	switch {
	case errors.As(err, &denial):
		if denial.Reason == ReasonServiceNotHeadless {
			dec.Service = ServiceNotHeadless
		}
		return dec.deny(denial.Reason, err)
	case apierrors.IsInvalid(err):
		// The Service the pod asks for is one the API server refuses (a
		// RequireDualStack policy on a single-stack cluster): the pod's
		// doing, not the webhook's fault.
		dec.Service = ServiceFailed
		return dec.deny(ReasonInvalidPod, fmt.Errorf("peergroup: the API server refuses the headless Service %s/%s this pod asks for: %w", req.Namespace, m.Service, err))
	case err != nil:
		dec.Service = ServiceFailed
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w (the API server did not answer within the webhook's budget, 4/5 of its timeoutSeconds)", err)
		}
		err = fmt.Errorf("peergroup: cannot ensure headless Service %s/%s for group %s: %w", req.Namespace, m.Service, m.Group, err)
		return dec.fail(http.StatusInternalServerError, ReasonServiceCreateFailed, err)
	}
	return dec
}

func (dec Decision) deny(reason Reason, err error) Decision {
	dec.Verdict, dec.Reason, dec.Message = VerdictDenied, reason, err.Error()
	dec.Mutated, dec.Warnings = nil, nil
	return dec
}

func (dec Decision) fail(code int32, reason Reason, err error) Decision {
	dec.Verdict, dec.Reason, dec.Code, dec.Message = VerdictErrored, reason, code, err.Error()
	dec.Mutated, dec.Warnings, dec.Patch = nil, nil, nil
	return dec
}

// BadRequest is the decision for a request that is not a pod admission
// peergroup can read: HTTP 400.
func BadRequest(err error) Decision {
	return Decision{}.fail(http.StatusBadRequest, ReasonBadRequest, err)
}

// reasonOf is the reason of the Denial err is; every check returns one,
// so anything else is the webhook's own failure to decide.
func reasonOf(err error) Reason {
	var denial *Denial
	if errors.As(err, &denial) {
		return denial.Reason
	}
	return ReasonInvalidPod
}
