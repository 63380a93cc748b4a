package offline

import (
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

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
}

// Uninjected asks the webhook's decision about each existing pod, as if it
// were created now, and returns the members that lack the injection.
// nsLabels maps a namespace to its labels. Services are not looked up, so
// a non-headless Service is not reported here (explain reports it).
func Uninjected(pods []corev1.Pod, nsLabels map[string]map[string]string, cfg admit.Config) []Finding {
	var out []Finding
	for i := range pods {
		pod := &pods[i]
		d, _ := decide(pod, cfg, nsLabels[pod.Namespace], &admit.StaticServices{})
		f := Finding{Namespace: pod.Namespace, Pod: pod.Name, Group: d.Group}
		switch {
		case d.Reason == admit.ReasonInvalidName:
			f.Reason = "invalid group: " + d.Message
		case !d.Allowed():
			f.Reason = "member of group " + d.Group + " that the webhook would deny: " + d.Message
		case d.Reason == admit.ReasonCompleted && len(d.Incomplete) > 0:
			f.Reason = "member of group " + d.Group + " (" + string(d.Source) + ") whose containers " + strings.Join(d.Incomplete, ", ") + " lack the env and seeds mount (added after the injection)"
		case d.Reason == admit.ReasonCompleted:
			continue // only the peer label is missing: injected before it existed
		case d.Verdict == admit.VerdictInjected:
			f.Reason = "member of group " + d.Group + " (" + string(d.Source) + ") without the seed-discovery init container"
		case d.Marker == admit.MarkerAnnotation:
			f.Reason = "member of group " + d.Group + " (" + string(d.Source) + ") carries the peergroup.dev/injected annotation but not the seed-discovery init container"
		default:
			continue
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
