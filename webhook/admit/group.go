package admit

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/internal/clip"
)

// Source says where a pod's group came from.
type Source string

const (
	SourceNone      Source = ""
	SourcePod       Source = "pod-label"
	SourceNamespace Source = "namespace-label"
)

// Membership is the outcome of group resolution for one pod.
type Membership struct {
	// Group is empty when the pod is not a member.
	Group string
	// Service is the headless Service name (the group unless overridden).
	Service string
	Source  Source
	// Reason explains a non-membership; it is the skip message.
	Reason string
}

// Member reports whether the pod joins a group.
func (m Membership) Member() bool { return m.Group != "" }

// invalidName refuses a group or Service name that is not a DNS-1035
// label. The message quotes the value and the rule, because the user sees
// it verbatim in `kubectl apply` output. what is "pod label
// peergroup.dev/group", "annotation peergroup.dev/service", ...
func invalidName(what, value string, problems []string) *Denial {
	return deny(ReasonInvalidName, "%s value %s is invalid: it must be a DNS-1035 label (lowercase letters, digits and '-', at most 63 characters, starting with a letter and ending with a letter or digit): %s",
		what, clip.Quote(value), strings.Join(problems, "; "))
}

// ResolveGroup decides whether a pod is a peer-group member. The pod's own
// label wins over the namespace label; the opt-out label wins over both.
// nsLabels may be nil when the namespace is unknown.
func ResolveGroup(pod *corev1.Pod, nsLabels map[string]string) (Membership, error) {
	if optedOut(pod) {
		return Membership{Reason: "opted out with " + contract.InjectLabel + "=false"}, nil
	}
	m := Membership{}
	if g, ok := pod.Labels[contract.GroupLabel]; ok {
		m.Group, m.Source = g, SourcePod
	} else if g, ok := nsLabels[contract.GroupLabel]; ok {
		m.Group, m.Source = g, SourceNamespace
	} else {
		return Membership{Reason: "no " + contract.GroupLabel + " label on the pod or its namespace"}, nil
	}
	if errs := validation.IsDNS1035Label(m.Group); len(errs) > 0 {
		what := "pod label " + contract.GroupLabel
		if m.Source == SourceNamespace {
			what = "namespace label " + contract.GroupLabel
		}
		return Membership{}, invalidName(what, m.Group, errs)
	}
	m.Service = m.Group
	if s, ok := pod.Annotations[contract.ServiceAnnotation]; ok {
		if errs := validation.IsDNS1035Label(s); len(errs) > 0 {
			return Membership{}, invalidName("annotation "+contract.ServiceAnnotation, s, errs)
		}
		m.Service = s
	}
	return m, nil
}

func optedOut(pod *corev1.Pod) bool { return pod.Labels[contract.InjectLabel] == "false" }

// needsNamespaceLabels reports whether ResolveGroup would read the
// namespace's labels for pod, so the lookup is skipped when it would not.
func needsNamespaceLabels(pod *corev1.Pod) bool {
	_, labelled := pod.Labels[contract.GroupLabel]
	return !labelled && !optedOut(pod)
}
