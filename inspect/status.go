package inspect

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/contract"
)

// MemberStatus is one member of a group as it sees itself: what its
// seed-discovery decided and what its refreshing sidecar sees now, read
// from seed-discovery's log (the channel that needs no exec and no access
// to the pod's files).
type MemberStatus struct {
	Pod   string `json:"pod"`
	Node  string `json:"node"`
	IP    string `json:"ip"`
	Ready bool   `json:"ready"`
	// Injected: the webhook admitted the pod (its annotation).
	Injected bool `json:"injected"`
	// Terminating: the pod is being deleted.
	Terminating bool `json:"terminating,omitempty"`
	// Role is founder, seed or joiner; empty while it decides (or when its
	// log has no decision).
	Role  string   `json:"role,omitempty"`
	Seeds []string `json:"seeds,omitempty"`
	// Peers is how many pods its last view held: the decision's, or the
	// refreshing sidecar's at its last change, with (up to ten of) their
	// hosts then; -1 when the log tells neither.
	Peers     int      `json:"peers"`
	PeerHosts []string `json:"peerHosts,omitempty"`
	// Waiting is the reason seed-discovery last gave for not deciding yet.
	Waiting string `json:"waiting,omitempty"`
	// Problems are the states a user must act on.
	Problems []string `json:"problems,omitempty"`
}

// GroupStatus is `peergroup status`: the group as its members see it.
type GroupStatus struct {
	Group     string         `json:"group"`
	Namespace string         `json:"namespace"`
	Members   []MemberStatus `json:"members"`
	// OneSeedList: every live founder and seed took the same seeds (joiners
	// take the live peers they found, so they are not compared).
	OneSeedList bool     `json:"oneSeedList"`
	Problems    []string `json:"problems,omitempty"`
}

// LogSource returns the current log of a pod's container (kubectl logs).
type LogSource func(ctx context.Context, namespace, pod, container string) (string, error)

// Status reads the group's members in namespace and their seed-discovery
// logs through the API server. It needs get on the namespace, list pods
// and get pods/log there.
func Status(ctx context.Context, c client.Reader, logs LogSource, namespace, group string, now time.Time) (GroupStatus, error) {
	ns := &corev1.Namespace{}
	if err := c.Get(ctx, client.ObjectKey{Name: namespace}, ns); err != nil {
		return GroupStatus{}, fmt.Errorf("namespace %s: %w", namespace, err)
	}
	pods := &corev1.PodList{}
	if err := c.List(ctx, pods, client.InNamespace(namespace)); err != nil {
		return GroupStatus{}, fmt.Errorf("list pods in %s: %w", namespace, err)
	}
	members := Members(pods.Items, ns.Labels, group)
	podLogs := map[string]string{}
	for _, p := range members {
		if !hasContainer(p, contract.InitContainerName) {
			continue
		}
		log, err := logs(ctx, namespace, p.Name, contract.InitContainerName)
		if err != nil {
			// A pod whose container has not started has no log yet; the
			// status says it decided nothing.
			podLogs[p.Name] = ""
			continue
		}
		podLogs[p.Name] = log
	}
	return StatusOf(members, podLogs, group, namespace, now), nil
}

// Members are the pods of namespace in group: labelled with it, or, in a
// namespace labelled with it, without a group label of their own and not
// opted out; sorted by name.
func Members(pods []corev1.Pod, nsLabels map[string]string, group string) []corev1.Pod {
	var out []corev1.Pod
	for _, p := range pods {
		own, labelled := p.Labels[contract.GroupLabel]
		switch {
		case labelled && own == group:
		case !labelled && nsLabels[contract.GroupLabel] == group && p.Labels[contract.InjectLabel] != "false":
		default:
			continue
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func hasContainer(p corev1.Pod, name string) bool {
	return slices.ContainsFunc(p.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == name })
}

var (
	decidedLine   = regexp.MustCompile(`decided after [^:]+: role (\w+), seeds ([^,]*(?:,[^,\s]+)*), (\d+) peers`)
	restartedLine = regexp.MustCompile(`restarted: keeping the decision made as \S+ \(role (\w+), seeds ([^)]*)\)`)
	peersLine     = regexp.MustCompile(`peers changed: (\d+) pods \[([^\]]*)\]`)
	waitingLine   = regexp.MustCompile(`stable but waiting: (.*)$`)
)

// StatusOf is Status without the API server: members and their
// seed-discovery logs (by pod name) give the group's status at now.
func StatusOf(members []corev1.Pod, logs map[string]string, group, namespace string, now time.Time) GroupStatus {
	s := GroupStatus{Group: group, Namespace: namespace, Members: []MemberStatus{}}
	// A seed is an IP, or with seed-address hostname a pod's DNS name
	// (its first label is the pod's name).
	live := map[string]bool{}
	for _, p := range members {
		if p.DeletionTimestamp == nil {
			live[p.Name] = true
			for _, ip := range p.Status.PodIPs {
				live[ip.IP] = true
			}
		}
	}
	alive := func(host string) bool { return live[host] || live[strings.SplitN(host, ".", 2)[0]] }
	founders := 0
	var seedLists []string
	for _, p := range members {
		m := MemberStatus{Pod: p.Name, Node: p.Spec.NodeName, IP: p.Status.PodIP, Ready: podReady(p), Peers: -1,
			Injected: p.Annotations[contract.InjectedAnnotation] != "" && hasContainer(p, contract.InitContainerName), Terminating: p.DeletionTimestamp != nil}
		readLog(&m, logs[p.Name])
		switch {
		case !m.Injected:
			m.Problems = append(m.Problems, "not injected: it has no seeds (recreate it through the webhook: peergroup audit --fix)")
		case m.Role == "" && !m.Terminating && p.Status.StartTime != nil && now.Sub(p.Status.StartTime.Time) > timeoutOf(p):
			m.Problems = append(m.Problems, fmt.Sprintf("still deciding %s after it started, past its timeout %s", now.Sub(p.Status.StartTime.Time).Round(time.Second), timeoutOf(p)))
		}
		if m.Role != "" && !m.Terminating && len(m.Seeds) > 0 && !slices.ContainsFunc(m.Seeds, alive) {
			m.Problems = append(m.Problems, "every seed it took is gone: restarted now, it would find no seed (its peers must carry it)")
		}
		if !m.Terminating {
			if m.Role == "founder" {
				founders++
			}
			if m.Role == "founder" || m.Role == "seed" {
				seedLists = append(seedLists, strings.Join(m.Seeds, ","))
			}
		}
		s.Members = append(s.Members, m)
	}
	slices.Sort(seedLists)
	s.OneSeedList = len(slices.Compact(seedLists)) <= 1
	if founders > 1 {
		s.Problems = append(s.Problems, fmt.Sprintf("%d live founders: each started a cluster of its own", founders))
	}
	if !s.OneSeedList {
		s.Problems = append(s.Problems, "the founder and seeds took different seed lists: they may form more than one cluster")
	}
	return s
}

// readLog fills in what seed-discovery's log says: the last decision (or
// the decision a restarted sidecar kept), the last peer change, and, with
// no decision, the last reason to wait.
func readLog(m *MemberStatus, log string) {
	for _, line := range strings.Split(log, "\n") {
		if sub := decidedLine.FindStringSubmatch(line); sub != nil {
			m.Role, m.Seeds, m.Waiting = sub[1], splitHosts(sub[2]), ""
			m.Peers, _ = strconv.Atoi(sub[3])
			m.PeerHosts = nil
		} else if sub := restartedLine.FindStringSubmatch(line); sub != nil {
			m.Role, m.Seeds, m.Waiting = sub[1], splitHosts(sub[2]), ""
		} else if sub := peersLine.FindStringSubmatch(line); sub != nil {
			m.Peers, _ = strconv.Atoi(sub[1])
			m.PeerHosts = strings.Fields(sub[2])
		} else if sub := waitingLine.FindStringSubmatch(line); sub != nil && m.Role == "" {
			m.Waiting = sub[1]
		}
	}
}

func splitHosts(s string) []string {
	var out []string
	for _, h := range strings.Split(s, ",") {
		if h = strings.TrimSpace(h); h != "" {
			out = append(out, h)
		}
	}
	return out
}

func podReady(p corev1.Pod) bool {
	return slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool {
		return c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue
	})
}

// timeoutOf is the pod's seed-discovery timeout (its annotation, else the
// default).
func timeoutOf(p corev1.Pod) time.Duration {
	if v, ok := p.Annotations[contract.Timeout.Annotation]; ok && contract.Timeout.Valid(v) {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return contract.DefaultTimeout
}
