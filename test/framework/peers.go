package framework

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// realNodePods is the real node's pod range: the only non-loopback
// addresses a test may connect to (DESIGN.md section 5, network rule).
var realNodePods = netip.MustParsePrefix(RealNodeSubnet)

// CheckPodAddress refuses any address outside the real node's pod range,
// so a test never dials a kwok pod's (made-up) IP, a cluster IP or
// anything beyond the machine.
func CheckPodAddress(ip string) error {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return fmt.Errorf("pod IP %q: %w", ip, err)
	}
	if !realNodePods.Contains(a) || a == netip.MustParseAddr(RealNodeBridgeIP) {
		return fmt.Errorf("pod IP %s is not a pod of the real node's network %s: not dialled", ip, RealNodeSubnet)
	}
	return nil
}

// bridgeDialer dials from the bridge's own address: were the bridge gone
// (a test that outlived its node), the dial fails at once instead of
// leaving the machine by its default route.
var bridgeDialer = &net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(RealNodeBridgeIP)}}

// ServerView is what one NATS server reports of its cluster on its
// monitoring port (/routez): its own id and the ids of the servers it has
// routes to. Routes are pooled, so ids are counted, not connections.
type ServerView struct {
	Pod, IP string
	ID      string
	// Peers maps the ids of the servers it routes to to their names.
	Peers map[string]string
	Err   error
}

// Members is the server's cluster as it sees it: itself and its peers.
func (v ServerView) Members() []string {
	ids := []string{v.ID}
	for id := range v.Peers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return slices.Compact(ids)
}

// NATSViews asks every pod's NATS server for its routes, all at once.
func NATSViews(ctx context.Context, pods []corev1.Pod) []ServerView {
	views := make([]ServerView, len(pods))
	var wg sync.WaitGroup
	httpc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: bridgeDialer.DialContext, DisableKeepAlives: true}}
	for i := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			views[i] = natsView(ctx, httpc, &pods[i])
		}()
	}
	wg.Wait()
	return views
}

func natsView(ctx context.Context, httpc *http.Client, pod *corev1.Pod) ServerView {
	v := ServerView{Pod: pod.Name, IP: pod.Status.PodIP}
	if v.Err = CheckPodAddress(v.IP); v.Err != nil {
		return v
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+v.IP+":8222/routez", nil)
	if err != nil {
		v.Err = err
		return v
	}
	resp, err := httpc.Do(req)
	if err != nil {
		v.Err = err
		return v
	}
	defer resp.Body.Close()
	var rz struct {
		ID     string `json:"server_id"`
		Routes []struct {
			RemoteID   string `json:"remote_id"`
			RemoteName string `json:"remote_name"`
		} `json:"routes"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&rz); err != nil {
		v.Err = fmt.Errorf("/routez: %w", err)
		return v
	}
	v.ID, v.Peers = rz.ID, map[string]string{}
	for _, r := range rz.Routes {
		v.Peers[r.RemoteID] = r.RemoteName
	}
	return v
}

// Clusters groups the servers that answered into the clusters their routes
// form (connected components), each a sorted list of pod names, largest
// first. Servers that did not answer are left out.
func Clusters(views []ServerView) [][]string {
	byID := map[string]int{}
	for i, v := range views {
		if v.Err == nil {
			byID[v.ID] = i
		}
	}
	parent := make([]int, len(views))
	for i := range parent {
		parent[i] = i
	}
	var find func(int) int
	find = func(i int) int {
		if parent[i] != i {
			parent[i] = find(parent[i])
		}
		return parent[i]
	}
	for i, v := range views {
		if v.Err != nil {
			continue
		}
		for id := range v.Peers {
			if j, ok := byID[id]; ok {
				parent[find(i)] = find(j)
			}
		}
	}
	groups := map[int][]string{}
	for i, v := range views {
		if v.Err == nil {
			groups[find(i)] = append(groups[find(i)], v.Pod)
		}
	}
	out := make([][]string, 0, len(groups))
	for _, g := range groups {
		sort.Strings(g)
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool {
		if len(out[i]) != len(out[j]) {
			return len(out[i]) > len(out[j])
		}
		return out[i][0] < out[j][0]
	})
	return out
}

// OneCluster is nil when every server answered and each sees exactly the
// same members: all of the servers asked, and no one else. Otherwise it
// says what is wrong, naming the islands.
func OneCluster(views []ServerView) error {
	all := make([]string, 0, len(views))
	var problems []string
	for _, v := range views {
		if v.Err != nil {
			problems = append(problems, fmt.Sprintf("%s (%s) did not answer: %v", v.Pod, v.IP, v.Err))
			continue
		}
		all = append(all, v.ID)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	if len(all) == 0 {
		return fmt.Errorf("no server to ask")
	}
	sort.Strings(all)
	for _, v := range views {
		if got := v.Members(); !slices.Equal(got, all) {
			problems = append(problems, fmt.Sprintf("%s sees %d of %d servers", v.Pod, len(got), len(all)))
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("not one cluster of %d: islands %s; %s", len(views), DescribeClusters(Clusters(views)), strings.Join(problems, "; "))
}

// DescribeClusters writes clusters as "[a b] [c]".
func DescribeClusters(clusters [][]string) string {
	parts := make([]string, len(clusters))
	for i, c := range clusters {
		parts[i] = "[" + strings.Join(c, " ") + "]"
	}
	return strings.Join(parts, " ")
}

// RunningReady waits until exactly n pods in ns match sel, none
// terminating, all Running and ready with an IP; it returns them sorted by
// name.
func RunningReady(ctx context.Context, c *Cluster, ns string, sel map[string]string, n int, timeout time.Duration) ([]corev1.Pod, error) {
	deadline := time.Now().Add(timeout)
	for {
		list := &corev1.PodList{}
		if err := c.Client.List(ctx, list, client.InNamespace(ns), client.MatchingLabels(sel)); err != nil {
			return nil, err
		}
		var pods []corev1.Pod
		live := 0
		for _, p := range list.Items {
			if p.DeletionTimestamp != nil {
				continue
			}
			live++
			if p.Status.PodIP != "" && PodReady(&p) {
				pods = append(pods, p)
			}
		}
		if len(pods) == n && live == n {
			sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
			return pods, nil
		}
		if time.Now().After(deadline) {
			return pods, fmt.Errorf("%d of %d pods %v in %s running and ready (%d live) after %s", len(pods), n, sel, ns, live, timeout)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// PodReady says whether p runs and passes its readiness: Running with
// the Ready condition true.
func PodReady(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodRunning && slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool {
		return c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue
	})
}

// LastStarted is when the last of pods' app containers started.
func LastStarted(pods []corev1.Pod) time.Time {
	var last time.Time
	for _, p := range pods {
		for _, s := range p.Status.ContainerStatuses {
			if s.State.Running != nil && s.State.Running.StartedAt.After(last) {
				last = s.State.Running.StartedAt.Time
			}
		}
	}
	return last
}

// WaitOneNATSCluster waits until the n running pods matching sel form one
// NATS cluster, each seeing exactly the others, within `within` of their
// being running; it returns them and the time since the last one started,
// or the pods and the last error, naming the islands.
func WaitOneNATSCluster(ctx context.Context, c *Cluster, ns string, sel map[string]string, n int, within time.Duration) ([]corev1.Pod, time.Duration, error) {
	return WaitOneCluster(ctx, c, ns, sel, n, within, NATSViews)
}

// ContainerLog reads a container's log through the API server, which
// fetches it from the kubelet: what `kubectl logs POD -c NAME` shows.
func ContainerLog(ctx context.Context, c *Cluster, ns, pod, container string) (string, error) {
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return "", err
	}
	data, err := cs.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container}).DoRaw(ctx)
	if err != nil {
		return "", fmt.Errorf("logs of %s/%s -c %s: %w", ns, pod, container, err)
	}
	return string(data), nil
}

// LoggedDecision finds seed-discovery's decision in its log ("decided
// after 3.2s: role joiner, seeds 10.246.0.10, 3 peers (ip order)") and
// returns the role and the seeds; ok is false when the log has none.
func LoggedDecision(log string) (role, seeds string, ok bool) {
	for _, line := range strings.Split(log, "\n") {
		_, rest, found := strings.Cut(line, "decided after ")
		if !found {
			continue
		}
		_, rest, _ = strings.Cut(rest, "role ")
		role, rest, _ = strings.Cut(rest, ", seeds ")
		seeds, _, _ = strings.Cut(rest, ", ")
		return role, seeds, true
	}
	return "", "", false
}

// LoggedQueries finds how many DNS queries seed-discovery sent until it
// decided, from its decision line ("..., 7 DNS queries").
func LoggedQueries(log string) (int, bool) {
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, "decided after ") {
			continue
		}
		var n int
		fields := strings.Fields(line)
		if len(fields) >= 3 && fields[len(fields)-2] == "DNS" && fields[len(fields)-1] == "queries" {
			if _, err := fmt.Sscan(fields[len(fields)-3], &n); err == nil {
				return n, true
			}
		}
	}
	return 0, false
}
