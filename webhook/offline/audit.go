package offline

import (
	"sort"
	"strings"

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

// Uninjected asks the webhook's decision about each existing pod, as if it
// were created now, and returns the members that lack the injection.
// nsLabels maps a namespace to its labels. Services are not looked up, so
// a non-headless Service is not reported here (explain reports it).
func Uninjected(pods []corev1.Pod, nsLabels map[string]map[string]string, cfg admit.Config) []Finding {
	return uninjected(pods, nsLabels, nil, cfg)
}

// UninjectedWithServices is Uninjected with the cluster's Services in the
// pods' namespaces looked up, for audit --fix: it reports the same pods,
// and a member whose group's Service exists and is not headless gets
// Recreate false, since the webhook would deny the pod that replaces it.
func UninjectedWithServices(pods []corev1.Pod, nsLabels map[string]map[string]string, services []corev1.Service, cfg admit.Config) []Finding {
	index := make(map[client.ObjectKey]*corev1.Service, len(services))
	for i := range services {
		index[client.ObjectKeyFromObject(&services[i])] = &services[i]
	}
	return uninjected(pods, nsLabels, index, cfg)
}

// uninjected decides each pod; services nil means not looked up.
func uninjected(pods []corev1.Pod, nsLabels map[string]map[string]string, services map[client.ObjectKey]*corev1.Service, cfg admit.Config) []Finding {
	var out []Finding
	for i := range pods {
		pod := &pods[i]
		d, _ := decide(pod, cfg, nsLabels[pod.Namespace], &admit.StaticServices{})
		f, ok := finding(pod, d)
		if !ok {
			continue
		}
		if f.Recreate && services != nil {
			// Only the decision names the Service, so the pod is decided
			// again with it known. The findings stay those of Uninjected:
			// the Service only says whether a replacement would be denied.
			existing := services[client.ObjectKey{Namespace: pod.Namespace, Name: d.ServiceName}]
			if again, _ := decide(pod, cfg, nsLabels[pod.Namespace], &admit.StaticServices{Existing: existing, Known: true}); !again.Allowed() {
				f.Recreate = false
				f.Reason += "; the webhook would deny the pod replacing it: " + again.Message
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
