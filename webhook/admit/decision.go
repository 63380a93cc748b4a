package admit

import (
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Verdict is what an admission does with the pod. The values are the
// result label of peergroup_admissions_total.
type Verdict string

const (
	// VerdictInjected: allowed with the patch.
	VerdictInjected Verdict = "injected"
	// VerdictSkipped: allowed unchanged.
	VerdictSkipped Verdict = "skipped"
	// VerdictDenied: refused because of the pod or its group's Service.
	VerdictDenied Verdict = "denied"
	// VerdictErrored: refused because of the request or the cluster;
	// Code is the HTTP status.
	VerdictErrored Verdict = "errored"
)

// Reason says why; the values are a fixed set (metrics labels).
type Reason string

const (
	ReasonNone              Reason = ""
	ReasonNotCreate         Reason = "not-create"
	ReasonExcludedNamespace Reason = "excluded-namespace"
	ReasonNotMember         Reason = "not-member"
	ReasonOptedOut          Reason = "opted-out"
	ReasonAlreadyInjected   Reason = "already-injected"
	// ReasonCompleted: an injected pod got what was missing since (a
	// container added by a later webhook, the peer label).
	ReasonCompleted           Reason = "completed"
	ReasonInvalidName         Reason = "invalid-name"
	ReasonInvalidTuning       Reason = "invalid-tuning"
	ReasonCollision           Reason = "collision"
	ReasonUnsupportedOS       Reason = "unsupported-os"
	ReasonInvalidPod          Reason = "invalid-pod"
	ReasonUnsupportedDNS      Reason = "unsupported-dns"
	ReasonLimitRange          Reason = "limit-range"
	ReasonServiceNotHeadless  Reason = "service-not-headless"
	ReasonServiceCreateFailed Reason = "service-create-failed"
	ReasonNamespaceLookup     Reason = "namespace-lookup-failed"
	ReasonBadRequest          Reason = "bad-request"
)

// ServiceState is what is known of the group's Service after the decision.
type ServiceState string

const (
	// ServiceNotReached: the decision ended before the Service.
	ServiceNotReached ServiceState = ""
	// ServiceUnknown: not looked up (offline, without a cluster).
	ServiceUnknown ServiceState = "unknown"
	// ServiceExists: it exists and is headless; used as is.
	ServiceExists ServiceState = "exists"
	// ServiceCreated: this admission created it.
	ServiceCreated ServiceState = "created"
	// ServiceMissing: it does not exist; a dry run creates nothing.
	ServiceMissing ServiceState = "missing"
	// ServiceDeferred: it does not exist, and the validating phase
	// (Decider.Validate) creates it once the API server has accepted the pod.
	ServiceDeferred ServiceState = "deferred"
	// ServiceNotHeadless: it exists with a cluster IP: the pod is denied.
	ServiceNotHeadless ServiceState = "not-headless"
	// ServiceFailed: reading or creating it failed.
	ServiceFailed ServiceState = "failed"
)

// Marker says how an already injected pod was recognised.
type Marker string

const (
	MarkerNone          Marker = ""
	MarkerInitContainer Marker = "init-container"
	// MarkerAnnotation: only the peergroup.dev/injected annotation; the pod
	// has no seed-discovery init container of peergroup's.
	MarkerAnnotation Marker = "annotation"
)

// Request is one admission as Decide sees it.
type Request struct {
	Kind        metav1.GroupVersionKind
	SubResource string
	Namespace   string
	Operation   admissionv1.Operation
	DryRun      bool
	// Pod is the pod under admission, decoded by the caller (the HTTP edge,
	// or the CLI from a manifest); nil is a bad request.
	Pod *corev1.Pod
}

// Decision is everything one admission decided. The webhook's response,
// metrics and events, and the CLI's inject, explain and audit are all
// derived from it; none of them keeps a rule of its own.
type Decision struct {
	Verdict Verdict
	Reason  Reason
	// Message is what the user reads: the denial, the error, or why the
	// pod was skipped.
	Message string
	// Code is the HTTP status of an errored decision.
	Code int32

	// Group is the pod's group where it has one (for an invalid name, the
	// pod label's value as given).
	Group       string
	Source      Source
	ServiceName string
	Service     ServiceState
	// Marker is set for an already injected pod.
	Marker Marker
	// Incomplete names the app containers of an already injected pod that
	// lacked the env or the seeds mount.
	Incomplete []string

	// Pod is the pod decided on, Mutated the injected copy (nil unless
	// VerdictInjected), Patch the JSON patch between them.
	Pod      *corev1.Pod
	Mutated  *corev1.Pod
	Patch    []byte
	Warnings []string
}

// GroupInCluster reports whether the decision saw the group's Service in
// the cluster (or created it). Only such a group may become a metrics label
// value: any user who can create pods can send dry-run pods with any number
// of distinct group names, and a label value per name would grow the
// webhook's memory without bound.
//
// A Service this admission created is real. One that existed counts only
// when it bears the group's own name: the peergroup.dev/service annotation
// may name any Service, and would otherwise let any number of group names
// through one existing Service.
func (d Decision) GroupInCluster() bool {
	switch d.Service {
	case ServiceCreated:
		return true
	case ServiceExists, ServiceNotHeadless:
		return d.ServiceName == d.Group
	}
	return false
}

// Allowed reports whether the pod is admitted.
func (d Decision) Allowed() bool { return d.Verdict == VerdictInjected || d.Verdict == VerdictSkipped }
