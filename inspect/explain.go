package inspect

import (
	"fmt"
	"slices"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/webhook/admit"
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
	Source  admit.Source `json:"source,omitempty"`
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
	Config          admit.Config
	// Webhooks is the live MutatingWebhookConfiguration.
	Webhooks *admissionregistrationv1.MutatingWebhookConfiguration
	// Service is the existing Service named for the group, if any;
	// ServiceKnown says whether it was looked up.
	Service      *corev1.Service
	ServiceKnown bool
	// LimitRanges of the pod's namespace; nil when not looked up.
	LimitRanges []corev1.LimitRange
	// PullSecrets holds, for each configured image pull secret that is not
	// usable in the pod's namespace, why: "missing", or why it could not be
	// checked; nil when not looked up.
	PullSecrets map[string]string
}

// Explain says what the webhook would do with one pod and why. The
// decision is the webhook's own (admit.Decider as a dry-run admission,
// nothing written) with the namespace labels and the Service looked up
// standing in for the informer caches; Explain only adds which webhook
// entries would call it and how to read the Decision.
func Explain(in ExplainInput) Explanation {
	pod := in.Pod
	e := Explanation{Pod: pod.Namespace + "/" + podDisplayName(pod)}
	if in.Webhooks != nil {
		e.Entries = matchEntries(in.Webhooks, pod, in.NamespaceLabels)
	}
	d, _ := decide(pod, in.Config, in.NamespaceLabels, &StaticServices{Existing: in.Service, Known: in.ServiceKnown}, in.LimitRanges...)
	member := d.ServiceName != ""
	if member {
		e.Group, e.Source, e.Service = d.Group, d.Source, d.ServiceName
		e.ServiceState = serviceStates[d.Service]
	}
	switch {
	case member && in.Webhooks != nil && !slices.ContainsFunc(e.Entries, func(x EntryMatch) bool { return x.Matches }):
		e.Verdict, e.Reason = VerdictNotInjected, "no entry of webhook configuration "+in.Webhooks.Name+" matches the pod, so the API server never calls peergroup for it"
	case !d.Allowed():
		e.Verdict, e.Reason = VerdictDenied, d.Message
	case d.Reason == admit.ReasonExcludedNamespace:
		e.Verdict, e.Reason = VerdictNotInjected, "namespace "+pod.Namespace+" is excluded (the webhook's own namespace, kube-system, or --excluded-namespaces)"
	case d.Reason == admit.ReasonCompleted:
		e.Verdict, e.Reason, e.Warnings = VerdictInjected, "already injected; the webhook adds what is missing since (env and seeds mount in containers added later, the "+contract.PeerLabel+" label, the configured image pull secrets)", d.Warnings
		e.Warnings = append(e.Warnings, pullSecretWarnings(in)...)
	case d.Reason == admit.ReasonAlreadyInjected:
		e.Verdict, e.Reason = VerdictAlreadyInjected, "the pod carries the seed-discovery init container or the "+contract.InjectedAnnotation+" annotation"
		e.Warnings = pullSecretWarnings(in) // the pod that is stuck pulling is an injected one
	case d.Verdict == admit.VerdictInjected:
		e.Verdict, e.Reason, e.Warnings = VerdictInjected, fmt.Sprintf("member of group %s (%s)", d.Group, d.Source), d.Warnings
		e.Warnings = append(e.Warnings, pullSecretWarnings(in)...)
	default:
		e.Verdict, e.Reason = VerdictNotInjected, d.Message
	}
	return e
}

// pullSecretWarnings says which configured pull secrets the kubelet will
// not find in the pod's namespace: it then cannot pull seed-discovery's
// image from a registry that needs them.
func pullSecretWarnings(in ExplainInput) []string {
	var out []string
	for _, name := range in.Config.ImagePullSecrets {
		why, bad := in.PullSecrets[name]
		switch {
		case !bad:
		case why == "missing":
			out = append(out, fmt.Sprintf("peergroup: imagePullSecret %q does not exist in namespace %s: the kubelet cannot use it to pull seed-discovery's image (%s); create it there", name, in.Pod.Namespace, in.Config.SeedDiscoveryImage))
		default:
			out = append(out, fmt.Sprintf("peergroup: imagePullSecret %q in namespace %s %s", name, in.Pod.Namespace, why))
		}
	}
	return out
}

// serviceStates words each Service state for a person; a Service that is
// not headless denies the pod, so the reason says the rest.
var serviceStates = map[admit.ServiceState]string{
	admit.ServiceUnknown:     "not looked up (offline)",
	admit.ServiceMissing:     "will be created (headless)",
	admit.ServiceDeferred:    "will be created (headless) once the API server accepts the pod",
	admit.ServiceExists:      "exists, headless: used as is",
	admit.ServiceNotHeadless: "exists and is not headless",
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
