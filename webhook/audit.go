package webhook

import (
	"sort"

	corev1 "k8s.io/api/core/v1"
)

// Finding is a pod that belongs to a peer group but was not injected:
// admitted while the webhook was down with failurePolicy Ignore, or created
// before peergroup was installed.
type Finding struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	Group     string `json:"group"`
	Reason    string `json:"reason"`
}

// Uninjected applies the webhook's own membership rules to existing pods
// and returns the members that lack the injection. nsLabels maps a
// namespace to its labels.
func Uninjected(pods []corev1.Pod, nsLabels map[string]map[string]string, cfg Config) []Finding {
	var out []Finding
	for i := range pods {
		pod := &pods[i]
		if cfg.excluded(pod.Namespace) || IsInjected(pod) {
			continue
		}
		m, err := ResolveGroup(pod, nsLabels[pod.Namespace])
		switch {
		case err != nil:
			out = append(out, Finding{pod.Namespace, pod.Name, pod.Labels[GroupLabel], "invalid group: " + err.Error()})
		case m.Member():
			out = append(out, Finding{pod.Namespace, pod.Name, m.Group, "member of group " + m.Group + " (" + string(m.Source) + ") without the seed-discovery init container"})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Pod < out[j].Pod
	})
	return out
}
