package inspect

import (
	"slices"
	"sort"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/webhook/admit"
)

// Finding is a pod that belongs to a peer group but runs without the
// injection: admitted while the webhook was down with failurePolicy
// Ignore, created before peergroup was installed, or one the webhook would
// now refuse.
type Finding struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	Group     string `json:"group"`
	Reason    string `json:"reason"`
	// Recreate says whether recreating the pod injects it: the webhook
	// would inject a pod like it created now. False when the webhook would
	// deny the new pod (recreating it leaves its controller without a
	// pod), or skip it for the peergroup.dev/injected annotation it
	// carries (a template with that annotation gives the same pod again).
	// audit --fix evicts only these.
	Recreate bool `json:"recreate"`
}

// AuditCluster is what the audit read of the cluster, so each pod is
// decided with everything the webhook decides with. A nil field was not
// looked up.
type AuditCluster struct {
	// NamespaceLabels maps a namespace to its labels.
	NamespaceLabels map[string]map[string]string
	// Services and LimitRanges of the pods' namespaces.
	Services    []corev1.Service
	LimitRanges []corev1.LimitRange
	// Webhooks is the live MutatingWebhookConfiguration: a pod no entry
	// would send to peergroup is not recreated injected.
	Webhooks *admissionregistrationv1.MutatingWebhookConfiguration
}

// Uninjected asks the webhook's decision about each existing pod, as if it
// were created now, and returns the members that lack the injection. The
// LimitRanges of the pod's namespace take part in the decision (a member a
// LimitRange would refuse is a finding the webhook would deny); the
// Service and the webhook configuration, when looked up, only say whether
// the pod replacing it would be injected (Finding.Recreate).
func Uninjected(pods []corev1.Pod, cluster AuditCluster, cfg admit.Config) []Finding {
	services := make(map[client.ObjectKey]*corev1.Service, len(cluster.Services))
	for i := range cluster.Services {
		services[client.ObjectKeyFromObject(&cluster.Services[i])] = &cluster.Services[i]
	}
	ranges := map[string][]corev1.LimitRange{}
	for _, lr := range cluster.LimitRanges {
		ranges[lr.Namespace] = append(ranges[lr.Namespace], lr)
	}
	var out []Finding
	for i := range pods {
		pod := &pods[i]
		nsLabels := cluster.NamespaceLabels[pod.Namespace]
		nsRanges := ranges[pod.Namespace]
		if nsRanges == nil {
			nsRanges = []corev1.LimitRange{} // looked up, none: the decision checks them (nil means not looked up)
		}
		d, _ := decide(pod, cfg, nsLabels, &StaticServices{}, nsRanges...)
		f, ok := finding(pod, d)
		if !ok {
			continue
		}
		if f.Recreate && cluster.Services != nil {
			// Only the decision names the Service, so the pod is decided
			// again with it known.
			existing := services[client.ObjectKey{Namespace: pod.Namespace, Name: d.ServiceName}]
			if again, _ := decide(pod, cfg, nsLabels, &StaticServices{Existing: existing, Known: true}, nsRanges...); !again.Allowed() {
				f.Recreate = false
				f.Reason += "; the webhook would deny the pod replacing it: " + again.Message
			}
		}
		if f.Recreate && cluster.Webhooks != nil {
			entries := matchEntries(cluster.Webhooks, pod, nsLabels)
			if !slices.ContainsFunc(entries, func(e EntryMatch) bool { return e.Matches }) {
				f.Recreate = false
				var why []string
				for _, e := range entries {
					why = append(why, e.Name+": "+e.Why)
				}
				f.Reason += "; no entry of the webhook configuration " + cluster.Webhooks.Name + " would send the pod replacing it to peergroup (" + strings.Join(why, "; ") + ")"
			}
		}
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Pod < out[j].Pod
	})
	return out
}

// finding words the decision about a running pod; ok is false when the
// pod is not an uninjected member.
func finding(pod *corev1.Pod, d admit.Decision) (Finding, bool) {
	f := Finding{Namespace: pod.Namespace, Pod: pod.Name, Group: d.Group}
	switch {
	case d.Reason == admit.ReasonInvalidName:
		f.Reason = "invalid group: " + d.Message
	case !d.Allowed():
		f.Reason = "member of group " + d.Group + " that the webhook would deny: " + d.Message
	case d.Reason == admit.ReasonCompleted && len(d.Incomplete) > 0:
		f.Reason = "member of group " + d.Group + " (" + string(d.Source) + ") whose containers " + strings.Join(d.Incomplete, ", ") + " lack the env and seeds mount (added after the injection)"
	case d.Reason == admit.ReasonCompleted:
		return f, false // only the peer label is missing: injected before it existed
	case d.Verdict == admit.VerdictInjected:
		f.Reason = "member of group " + d.Group + " (" + string(d.Source) + ") without the seed-discovery init container"
	case d.Marker == admit.MarkerAnnotation:
		f.Reason = "member of group " + d.Group + " (" + string(d.Source) + ") carries the peergroup.dev/injected annotation but not the seed-discovery init container"
	default:
		return f, false
	}
	f.Recreate = d.Allowed() && d.Verdict == admit.VerdictInjected && d.Marker != admit.MarkerAnnotation
	return f, true
}
