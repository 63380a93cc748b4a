package inspect

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
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
	// Started: its seed-discovery has run (false for a pending pod, whose
	// log is not read).
	Started bool `json:"started"`
	// Decided says the container decided, by its status (the sidecar
	// started: its startup probe saw the seeds file; an init container
	// exited 0), whatever the log still shows.
	Decided bool `json:"decided"`
	// Note says what the status could not read (an unreadable or rotated
	// log).
	Note string `json:"note,omitempty"`
	// Problems are the states a user must act on.
	Problems []string `json:"problems,omitempty"`
}

// GroupStatus is `peergroup status`: the group as its members see it.
type GroupStatus struct {
	Group     string         `json:"group"`
	Namespace string         `json:"namespace"`
	Members   []MemberStatus `json:"members"`
	// OneSeedList: every live founder and seed took the same seeds (joiners
	// take the live peers they found, so they are not compared; a seed
	// that decided beside a live cluster took the list of that moment).
	// Informational: only lists with no seed in common are a problem.
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
	podLogs := map[string]PodLog{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	reads := make(chan struct{}, concurrentLogReads)
	for _, p := range members {
		// A container that never ran has no log to read: a pending pod
		// costs no request (a group of pending pods would cost one each).
		if !hasContainer(p, contract.InitContainerName) || !everStarted(p) {
			continue
		}
		// Checked before and after waiting for a slot: a select with both
		// ready picks either, and a cancelled status starts no read.
		if ctx.Err() == nil {
			select {
			case reads <- struct{}{}:
			case <-ctx.Done():
			}
		}
		if err := ctx.Err(); err != nil {
			wg.Wait()
			return GroupStatus{}, fmt.Errorf("read the logs of group %s: %w", group, err)
		}
		wg.Add(1)
		go func() {
			defer func() { <-reads; wg.Done() }()
			log, err := logs(ctx, namespace, p.Name, contract.InitContainerName)
			mu.Lock()
			podLogs[p.Name] = PodLog{Text: log, Err: err}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return StatusOf(members, podLogs, group, namespace, now), nil
}

// concurrentLogReads bounds the log requests in flight: one per member,
// so a large group is read in a fraction of the sequential time without
// a burst the API server's priority and fairness would queue.
const concurrentLogReads = 8

// everStarted says whether p's seed-discovery container has run: it
// runs, ran, or ran before a restart.
func everStarted(p corev1.Pod) bool {
	st := seedDiscoveryStatus(p)
	return st != nil && (st.State.Running != nil || st.State.Terminated != nil || st.LastTerminationState.Terminated != nil)
}

// notStartedReason is why p's seed-discovery has not started, as its
// status says (ImagePullBackOff, PodInitializing…), or "".
func notStartedReason(p corev1.Pod) string {
	if st := seedDiscoveryStatus(p); st != nil && st.State.Waiting != nil {
		return st.State.Waiting.Reason
	}
	return ""
}

// seedDiscoveryStatus is the status of p's seed-discovery container, or
// nil before the kubelet reported one.
func seedDiscoveryStatus(p corev1.Pod) *corev1.ContainerStatus {
	for i := range p.Status.InitContainerStatuses {
		if p.Status.InitContainerStatuses[i].Name == contract.InitContainerName {
			return &p.Status.InitContainerStatuses[i]
		}
	}
	return nil
}

// ownStartFailures are the kubelet's reasons for a container not
// starting that are the container's own (its image, its spec): acting on
// seed-discovery can fix them. Anything else (PodInitializing while a
// volume attaches or an earlier init container runs) is the pod's, and
// no reason to act on the group.
var ownStartFailures = []string{"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError", "CreateContainerError", "RunContainerError"}

// PodLog is a member's seed-discovery log, or why it could not be read
// (RBAC without pods/log, a node that is gone, a container not started).
type PodLog struct {
	Text string
	Err  error
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
func StatusOf(members []corev1.Pod, logs map[string]PodLog, group, namespace string, now time.Time) GroupStatus {
	s := GroupStatus{Group: group, Namespace: namespace, Members: []MemberStatus{}}
	// Live: not terminating and not done (a Failed or evicted pod keeps
	// its IP in the API but runs nothing).
	liveIPs, podIP := map[string]bool{}, map[string]string{}
	for _, p := range members {
		if isLive(p) {
			for _, ip := range p.Status.PodIPs {
				liveIPs[canonicalIP(ip.IP)] = true
			}
			podIP[p.Name] = canonicalIP(p.Status.PodIP)
		}
	}
	// A seed is an IP, or with seed-address hostname a pod's DNS name
	// (its first label is the pod's name): both compare as the IP.
	norm := func(host string) string {
		if a, err := netip.ParseAddr(host); err == nil {
			return a.WithZone("").String()
		}
		if ip, ok := podIP[strings.SplitN(host, ".", 2)[0]]; ok {
			return ip
		}
		return host
	}
	founders := 0
	var seedLists [][]string
	for _, p := range members {
		m := MemberStatus{Pod: p.Name, Node: p.Spec.NodeName, IP: p.Status.PodIP, Ready: podReady(p), Peers: -1,
			Injected:    p.Annotations[contract.InjectedAnnotation] != "" && hasContainer(p, contract.InitContainerName),
			Terminating: !isLive(p), Decided: decidedByStatus(p), Started: everStarted(p)}
		log, read := logs[p.Name]
		readLog(&m, log.Text)
		notStarted := m.Injected && !read && !m.Started
		switch {
		case log.Err != nil:
			m.Note = "log unavailable: " + log.Err.Error()
		case notStarted:
			m.Note = "seed-discovery not started"
			if r := notStartedReason(p); r != "" {
				m.Note += ": " + r
			}
		case m.Role == "" && m.Decided:
			m.Note = "decided; its log no longer shows the decision"
		}
		pastTimeout := !m.Terminating && p.Status.StartTime != nil && now.Sub(p.Status.StartTime.Time) > timeoutOf(p)
		switch {
		case !m.Injected:
			m.Problems = append(m.Problems, "not injected: it has no seeds (recreate it through the webhook: peergroup audit --fix)")
		case notStarted && pastTimeout && slices.Contains(ownStartFailures, notStartedReason(p)):
			m.Problems = append(m.Problems, fmt.Sprintf("%s %s after the pod started, past its timeout %s", m.Note, now.Sub(p.Status.StartTime.Time).Round(time.Second), timeoutOf(p)))
		case m.Role == "" && !m.Decided && log.Err == nil && !notStarted && pastTimeout:
			m.Problems = append(m.Problems, fmt.Sprintf("still deciding %s after it started, past its timeout %s", now.Sub(p.Status.StartTime.Time).Round(time.Second), timeoutOf(p)))
		}
		seeds := make([]string, 0, len(m.Seeds))
		for _, h := range m.Seeds {
			seeds = append(seeds, norm(h))
		}
		if m.Role != "" && !m.Terminating && len(seeds) > 0 && !slices.ContainsFunc(seeds, func(ip string) bool { return liveIPs[ip] }) {
			m.Problems = append(m.Problems, "every seed it took is gone: restarted now, it would find no seed; if the app needs its seeds to rejoin, recreate it while its peers run")
		}
		if !m.Terminating {
			if m.Role == "founder" {
				founders++
			}
			if m.Role == "founder" || m.Role == "seed" {
				slices.Sort(seeds)
				seedLists = append(seedLists, seeds)
			}
		}
		s.Members = append(s.Members, m)
	}
	s.OneSeedList = true
	disjoint := false
	for i := range seedLists {
		for j := range i {
			s.OneSeedList = s.OneSeedList && slices.Equal(seedLists[i], seedLists[j])
			disjoint = disjoint || !slices.ContainsFunc(seedLists[i], func(ip string) bool { return slices.Contains(seedLists[j], ip) })
		}
	}
	if founders > 1 {
		s.Problems = append(s.Problems, fmt.Sprintf("%d live founders: each started a cluster of its own", founders))
	}
	if disjoint {
		s.Problems = append(s.Problems, "founders or seeds took seed lists with no seed in common: they may have formed more than one cluster")
	}
	return s
}

// isLive: neither being deleted nor finished.
func isLive(p corev1.Pod) bool {
	return p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodFailed && p.Status.Phase != corev1.PodSucceeded
}

// decidedByStatus reads the container's status: the refreshing sidecar
// started (its startup probe passes once the seeds file exists), or the
// init container exited 0.
func decidedByStatus(p corev1.Pod) bool {
	st := seedDiscoveryStatus(p)
	if st == nil {
		return false
	}
	if st.State.Terminated != nil && st.State.Terminated.ExitCode == 0 {
		return true
	}
	return st.Started != nil && *st.Started && st.State.Running != nil && isSidecar(p)
}

func isSidecar(p corev1.Pod) bool {
	return slices.ContainsFunc(p.Spec.InitContainers, func(c corev1.Container) bool {
		return c.Name == contract.InitContainerName && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
	})
}

// canonicalIP is s as netip writes it (IPv6 compressed, no zone), or s.
func canonicalIP(s string) string {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.WithZone("").String()
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
