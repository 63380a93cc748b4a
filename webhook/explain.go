package webhook

import (
	"context"
	"fmt"
	"slices"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// Verdicts of Explain.
const (
	VerdictInjected        = "would be injected"
	VerdictAlreadyInjected = "already injected"
	VerdictNotInjected     = "not injected"
	VerdictDenied          = "would be denied"
)

// EntryMatch says whether one webhook entry would be called for the pod.
type EntryMatch struct {
	Name    string `json:"name"`
	Matches bool   `json:"matches"`
	Why     string `json:"why"`
}

// Explanation answers "would this pod be injected, and why (not)?".
type Explanation struct {
	Pod     string       `json:"pod"`
	Entries []EntryMatch `json:"entries,omitempty"`
	Group   string       `json:"group,omitempty"`
	Source  Source       `json:"source,omitempty"`
	Service string       `json:"service,omitempty"`
	// ServiceState: "exists, headless", "will be created", or the conflict.
	ServiceState string   `json:"serviceState,omitempty"`
	Verdict      string   `json:"verdict"`
	Reason       string   `json:"reason"`
	Warnings     []string `json:"warnings,omitempty"`
}

// ExplainInput is what Explain looks at. NamespaceLabels, Webhooks and
// Service may be unknown (nil): offline, without a cluster.
type ExplainInput struct {
	Pod             *corev1.Pod
	NamespaceLabels map[string]string
	Config          Config
	// Webhooks is the live MutatingWebhookConfiguration.
	Webhooks *admissionregistrationv1.MutatingWebhookConfiguration
	// Service is the existing Service named for the group, if any;
	// ServiceKnown says whether it was looked up.
	Service      *corev1.Service
	ServiceKnown bool
}

// Explain says what the webhook would do with one pod and why. The
// decision is the handler's own, run as a dry-run admission (nothing is
// written) with the namespace labels and the Service looked up standing in
// for the informer caches; Explain only adds which webhook entries would
// call it and how to read the outcome.
func Explain(in ExplainInput) Explanation {
	pod := in.Pod
	e := Explanation{Pod: pod.Namespace + "/" + podDisplayName(pod)}
	if in.Webhooks != nil {
		e.Entries = matchEntries(in.Webhooks, pod, in.NamespaceLabels)
	}
	resp, out, _ := admitOffline(pod, in.Config, in.NamespaceLabels, in.Service)

	m, err := ResolveGroup(pod, in.NamespaceLabels)
	member := err == nil && m.Member() && out.reason != reasonExcludedNamespace
	if member {
		e.Group, e.Source, e.Service = m.Group, m.Source, m.Service
		switch {
		case !in.ServiceKnown:
			e.ServiceState = "not looked up (offline)"
		case in.Service == nil:
			e.ServiceState = "will be created (headless)"
		case IsHeadless(in.Service):
			e.ServiceState = "exists, headless: used as is"
		default:
			e.ServiceState = "exists and is not headless"
		}
	}
	switch {
	case member && in.Webhooks != nil && !slices.ContainsFunc(e.Entries, func(x EntryMatch) bool { return x.Matches }):
		e.Verdict, e.Reason = VerdictNotInjected, "no entry of webhook configuration "+in.Webhooks.Name+" matches the pod, so the API server never calls peergroup for it"
	case out.result == resultDenied || out.result == resultErrored || !resp.Allowed:
		e.Verdict, e.Reason = VerdictDenied, out.message
		if e.Reason == "" && resp.Result != nil {
			e.Reason = resp.Result.Message
		}
	case out.reason == reasonExcludedNamespace:
		e.Verdict, e.Reason = VerdictNotInjected, "namespace "+pod.Namespace+" is excluded (the webhook's own namespace, kube-system, or --excluded-namespaces)"
	case out.reason == reasonAlreadyInjected:
		e.Verdict, e.Reason = VerdictAlreadyInjected, "the pod carries the seed-discovery init container or the "+InjectedAnnotation+" annotation"
	case out.result == resultInjected:
		e.Verdict, e.Reason, e.Warnings = VerdictInjected, fmt.Sprintf("member of group %s (%s)", m.Group, m.Source), resp.Warnings
	default:
		e.Verdict, e.Reason = VerdictNotInjected, resp.Result.Message
	}
	return e
}

// admitOffline runs the webhook's handler on pod as a dry-run admission,
// with namespace labels and the group's existing Service (nil: none)
// standing in for the informer caches; it returns the handler's answer and
// the Service the webhook would create. explain and inject decide through
// it, so they never hold a second copy of the webhook's rules.
func admitOffline(pod *corev1.Pod, cfg Config, nsLabels map[string]string, existing *corev1.Service) (admission.Response, outcome, *corev1.Service) {
	// The direct patch: with no raw object there is nothing to diff.
	cfg.PatchMode = PatchDirect
	services := &offlineServices{existing: existing}
	h := &Handler{Config: cfg, Namespaces: fixedNamespaceLabels(nsLabels), Services: services}
	resp, out, _ := h.handle(context.Background(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       "offline",
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: pod.Namespace,
		Operation: admissionv1.Create,
		DryRun:    ptr.To(true),
		Object:    runtime.RawExtension{Object: pod},
	}})
	return resp, out, services.desired
}

// fixedNamespaceLabels stands in for the namespace cache.
type fixedNamespaceLabels map[string]string

func (f fixedNamespaceLabels) Labels(context.Context, string) (map[string]string, error) {
	return f, nil
}

// offlineServices stands in for ClusterServiceEnsurer: the one Service
// looked up (or none) is the cache, and the Service that would be created
// is kept instead of written.
type offlineServices struct {
	existing *corev1.Service
	desired  *corev1.Service
}

func (o *offlineServices) Ensure(_ context.Context, key client.ObjectKey, desired func() *corev1.Service, _ bool) (bool, error) {
	o.desired = desired()
	if o.existing != nil && o.existing.Name == key.Name && o.existing.Namespace == key.Namespace {
		return false, checkHeadless(o.existing, desired)
	}
	return false, nil
}

func podDisplayName(pod *corev1.Pod) string {
	if pod.Name != "" {
		return pod.Name
	}
	if pod.GenerateName != "" {
		return pod.GenerateName + "*"
	}
	return "(unnamed)"
}

// matchEntries evaluates each entry's rules and selectors as the API
// server would for a pod CREATE. The API server adds the label
// kubernetes.io/metadata.name to every namespace; so does this.
func matchEntries(mwc *admissionregistrationv1.MutatingWebhookConfiguration, pod *corev1.Pod, nsLabels map[string]string) []EntryMatch {
	nsSet := labels.Set{corev1.LabelMetadataName: pod.Namespace}
	for k, v := range nsLabels {
		nsSet[k] = v
	}
	var out []EntryMatch
	for _, w := range mwc.Webhooks {
		em := EntryMatch{Name: w.Name}
		switch {
		case !rulesMatchPodCreate(w.Rules):
			em.Why = "its rules do not cover CREATE of v1 pods"
		case !selectorMatches(w.NamespaceSelector, nsSet):
			em.Why = "namespaceSelector " + metav1.FormatLabelSelector(w.NamespaceSelector) + " does not match the namespace's labels"
		case !selectorMatches(w.ObjectSelector, labels.Set(pod.Labels)):
			em.Why = "objectSelector " + metav1.FormatLabelSelector(w.ObjectSelector) + " does not match the pod's labels"
		default:
			em.Matches, em.Why = true, "rules, namespaceSelector and objectSelector match"
		}
		out = append(out, em)
	}
	return out
}

func rulesMatchPodCreate(rules []admissionregistrationv1.RuleWithOperations) bool {
	for _, r := range rules {
		ops := slices.Contains(r.Operations, admissionregistrationv1.Create) || slices.Contains(r.Operations, admissionregistrationv1.OperationAll)
		groups := slices.Contains(r.APIGroups, "") || slices.Contains(r.APIGroups, "*")
		versions := slices.Contains(r.APIVersions, "v1") || slices.Contains(r.APIVersions, "*")
		resources := slices.Contains(r.Resources, "pods") || slices.Contains(r.Resources, "*")
		if ops && groups && versions && resources {
			return true
		}
	}
	return false
}

func selectorMatches(sel *metav1.LabelSelector, set labels.Set) bool {
	if sel == nil {
		return true
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && s.Matches(set)
}
