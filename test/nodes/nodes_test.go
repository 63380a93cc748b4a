// Package nodes runs peergroup on two real nodes (two kubelets, each with
// its own containerd, on one bridge) and takes one of them away as a dead
// machine goes: a peer group keeps one cluster, the webhook keeps
// admitting pods, and a drain, a kubelet restart and a containerd restart
// change nothing they should not. `go test -short` skips it.
package nodes

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/test/framework"
)

const release, releaseNS = "peergroup", "peergroup-system"

// suite is the two-node cluster every scenario shares, one after another.
type suite struct {
	ctx    context.Context
	lc     *framework.LocalCluster
	a, b   *framework.RealNode
	images framework.NodeImages
	logDir string
	roots  map[string]framework.DebianRoot
}

func TestTwoRealNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("two-node suite skipped by -short")
	}
	// Room to wait for the node lock while another package's node holds it.
	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Minute)
	defer cancel()
	logDir := filepath.Join(t.TempDir(), "logs")
	lc, err := framework.StartLocalCluster(ctx, framework.LocalClusterOptions{LogDir: logDir, Progress: os.Stdout, RealNodeOnly: true, SecondRealNode: true})
	if err != nil {
		t.Fatal(err)
	}
	s := &suite{ctx: ctx, lc: lc, a: lc.Node, b: lc.Node.Second(), logDir: logDir, roots: map[string]framework.DebianRoot{}}
	defer func() {
		lc.Stop()
		if left := lc.Node.Left; len(left) > 0 {
			t.Errorf("the two nodes left: %s", strings.Join(left, "; "))
		}
	}()
	t.Logf("figure: two real nodes Ready in %s (lifecycle: %+v)", lc.ReadyIn.Round(100*time.Millisecond), framework.TestNodeLifecycle)
	if s.images, err = framework.PushNodeImages(ctx, lc.Node); err != nil {
		t.Fatal(err)
	}
	values := filepath.Join(logDir, "no-kube-proxy.yaml")
	if err := framework.NoKubeProxyValues(values); err != nil {
		t.Fatal(err)
	}
	s.shell(t, "helm install "+release+" charts/peergroup -n "+releaseNS+" --create-namespace --wait --timeout 3m -f "+values)

	ok := t.Run("the chart's defaults place one webhook replica per node", func(t *testing.T) {
		s.requireSpread(t)
		pdbs := &policyv1.PodDisruptionBudgetList{}
		if err := s.lc.Client.List(s.ctx, pdbs, client.InNamespace(releaseNS)); err != nil {
			t.Fatal(err)
		}
		if len(pdbs.Items) != 1 || pdbs.Items[0].Spec.MinAvailable == nil || pdbs.Items[0].Spec.MinAvailable.IntValue() != 1 {
			t.Fatalf("want the chart's PodDisruptionBudget (minAvailable 1), got %d budgets", len(pdbs.Items))
		}
	})
	if !ok {
		return
	}
	ok = t.Run("a node with the founder and a webhook replica is lost", func(t *testing.T) {
		s.loseANode(t, "founder-lost", true)
	})
	if !ok {
		return
	}
	ok = t.Run("a node holding no founder is lost", func(t *testing.T) {
		s.loseANode(t, "joiners-lost", false)
	})
	if ok {
		t.Run("a kubelet restart and a containerd restart change nothing", func(t *testing.T) {
			s.restartDaemons(t)
		})
	}
	t.Run("kubectl drain of a node with a webhook replica refuses no pod", func(t *testing.T) {
		s.drain(t)
	})
}

func (s *suite) shell(t *testing.T, line string) string {
	t.Helper()
	var out bytes.Buffer
	if err := s.lc.Shell(s.ctx, &out, line); err != nil {
		var diag bytes.Buffer
		for _, d := range []string{"kubectl get nodes -o wide", "kubectl get pods -A -o wide", "kubectl get events -A"} {
			_ = s.lc.Shell(context.Background(), &diag, "echo '$ "+d+"'; "+d)
		}
		t.Fatalf("%v\n%s\n%s", err, out.String(), diag.String())
	}
	t.Logf("$ %s\n%s", line, strings.TrimSpace(out.String()))
	return out.String()
}

// webhookNodes lists the nodes of the chart's webhook replicas, sorted.
func (s *suite) webhookNodes(t *testing.T) []string {
	t.Helper()
	dep := &appsv1.Deployment{}
	if err := s.lc.Client.Get(s.ctx, client.ObjectKey{Namespace: releaseNS, Name: release}, dep); err != nil {
		t.Fatal(err)
	}
	pods := &corev1.PodList{}
	if err := s.lc.Client.List(s.ctx, pods, client.InNamespace(releaseNS), client.MatchingLabels(dep.Spec.Selector.MatchLabels)); err != nil {
		t.Fatal(err)
	}
	var on []string
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			on = append(on, p.Spec.NodeName)
		}
	}
	sort.Strings(on)
	return on
}

// requireSpread fails unless one webhook replica runs on each node.
func (s *suite) requireSpread(t *testing.T) {
	t.Helper()
	if on := s.webhookNodes(t); len(on) != 2 || on[0] == on[1] {
		t.Fatalf("webhook replicas on %v, want one on each of %s and %s", on, s.a.Name, s.b.Name)
	}
}

// group is one peer group of the scenarios: an example manifest as
// written, its pods labelled app=<app>, spread evenly over the nodes that
// take pods (maxSkew 1; a cordoned or unreachable node, tainted against
// it, not counted), and the servers' own view of their cluster.
type group struct {
	app, ns string
	obj     client.Object
	views   func(context.Context, []corev1.Pod) []framework.ServerView
	// exact: views list live members only (Serf's alive members), so one
	// cluster means each sees exactly the live pods; NATS keeps a route to
	// a dead server until its pings go unanswered (2 min apart), so there
	// each must see at least the live pods.
	exact bool
}

func (s *suite) newGroup(t *testing.T, app, ns string) *group {
	t.Helper()
	if _, err := s.lc.CreateNamespace(s.ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	g := &group{app: app, ns: ns}
	manifest := "nats.yaml"
	if app != "nats" {
		manifest = framework.DebianApps[app].Manifest
	}
	data, err := os.ReadFile(filepath.Join(framework.RepoRoot(), "docs", "examples", manifest))
	if err != nil {
		t.Fatal(err)
	}
	var spec *corev1.PodSpec
	switch app {
	case "nats":
		rc := &corev1.ReplicationController{}
		if err := yaml.UnmarshalStrict(data, rc); err != nil {
			t.Fatalf("docs/examples/%s: %v", manifest, err)
		}
		rc.Spec.Template.Spec.Containers[0].Image = s.images.NATS
		g.obj, spec, g.views = rc, &rc.Spec.Template.Spec, framework.NATSViews
	default:
		dep := &appsv1.Deployment{}
		if err := yaml.UnmarshalStrict(data, dep); err != nil {
			t.Fatalf("docs/examples/%s: %v", manifest, err)
		}
		env := framework.AppEnv{Root: s.debianRoot(t, app), Cluster: s.lc.Cluster}
		g.obj, spec, g.exact = dep, &dep.Spec.Template.Spec, true
		g.views = func(ctx context.Context, pods []corev1.Pod) []framework.ServerView {
			return framework.DebianApps[app].Views(ctx, env, pods)
		}
	}
	g.obj.SetNamespace(ns)
	spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{
		MaxSkew: 1, TopologyKey: "kubernetes.io/hostname", WhenUnsatisfiable: corev1.DoNotSchedule,
		LabelSelector:    &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}},
		NodeTaintsPolicy: ptr.To(corev1.NodeInclusionPolicyHonor),
	}}
	return g
}

// debianRoot pushes a Debian application's image once and returns the
// extracted packages its client tools run from.
func (s *suite) debianRoot(t *testing.T, app string) framework.DebianRoot {
	t.Helper()
	if root, ok := s.roots[app]; ok {
		return root
	}
	say := func(f string, a ...any) { t.Logf(f, a...) }
	root, err := framework.PushDebianApp(s.ctx, s.lc.Node, filepath.Join(framework.RepoRoot(), ".cache", "debian"), framework.DebianApps[app], say)
	if err != nil {
		t.Fatalf("%s image: %v", app, err)
	}
	s.roots[app] = root
	return root
}

func (s *suite) cordon(t *testing.T, node *framework.RealNode, on bool) {
	t.Helper()
	n := &corev1.Node{}
	if err := s.lc.Client.Get(s.ctx, client.ObjectKey{Name: node.Name}, n); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(n.DeepCopy())
	n.Spec.Unschedulable = on
	if err := s.lc.Client.Patch(s.ctx, n, patch); err != nil {
		t.Fatal(err)
	}
}

func (s *suite) scale(t *testing.T, g *group, n int32) {
	t.Helper()
	patch := client.RawPatch(types.MergePatchType, fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, n))
	if err := s.lc.Client.Patch(s.ctx, g.obj, patch); err != nil {
		t.Fatal(err)
	}
}

// pods lists the group's pods: live (not terminating) and terminating.
func (s *suite) pods(t *testing.T, g *group) (live, terminating []corev1.Pod) {
	t.Helper()
	list := &corev1.PodList{}
	if err := s.lc.Client.List(s.ctx, list, client.InNamespace(g.ns), client.MatchingLabels{"app": g.app}); err != nil {
		t.Fatal(err)
	}
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			live = append(live, p)
		} else {
			terminating = append(terminating, p)
		}
	}
	return live, terminating
}

func onNode(pods []corev1.Pod, node string) []corev1.Pod {
	var out []corev1.Pod
	for _, p := range pods {
		if p.Spec.NodeName == node {
			out = append(out, p)
		}
	}
	return out
}

func names(pods []corev1.Pod) []string {
	out := make([]string, len(pods))
	for i, p := range pods {
		out[i] = p.Name + "@" + p.Spec.NodeName
	}
	return out
}

// oneCluster is nil when every server of pods answers and the servers
// form one cluster of exactly pods (g.exact), or one in which each sees
// every other (a route to a server of the dead node may remain: extra
// counts those).
func oneCluster(ctx context.Context, g *group, pods []corev1.Pod) (extra int, err error) {
	views := g.views(ctx, pods)
	if g.exact {
		return 0, framework.OneCluster(views)
	}
	var ids []string
	for _, v := range views {
		if v.Err != nil {
			return 0, fmt.Errorf("%s (%s) did not answer: %v", v.Pod, v.IP, v.Err)
		}
		ids = append(ids, v.ID)
	}
	var problems []string
	for _, v := range views {
		members := v.Members()
		for _, id := range ids {
			if !slices.Contains(members, id) {
				problems = append(problems, fmt.Sprintf("%s sees %d of the %d live servers", v.Pod, len(members), len(ids)))
				break
			}
		}
		for _, m := range members {
			if !slices.Contains(ids, m) {
				extra++
			}
		}
	}
	if len(problems) > 0 {
		return extra, fmt.Errorf("not one cluster of %d: islands %s; %s", len(pods), framework.DescribeClusters(framework.Clusters(views)), strings.Join(problems, "; "))
	}
	return extra, nil
}

// waitOneCluster waits until the group has want live pods, all running
// and ready, forming one cluster; it returns them.
func (s *suite) waitOneCluster(t *testing.T, g *group, want int, within time.Duration) []corev1.Pod {
	t.Helper()
	pods, err := framework.RunningReady(s.ctx, s.lc.Cluster, g.ns, map[string]string{"app": g.app}, want, within)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(within)
	for {
		_, err := oneCluster(s.ctx, g, pods)
		if err == nil {
			return pods
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", g.ns, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (s *suite) nodeReady(t *testing.T, node string) (ready bool, taints []corev1.Taint) {
	t.Helper()
	n := &corev1.Node{}
	if err := s.lc.Client.Get(s.ctx, client.ObjectKey{Name: node}, n); err != nil {
		t.Fatal(err)
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			ready = c.Status == corev1.ConditionTrue
		}
	}
	return ready, n.Spec.Taints
}

// waitFor polls cond every 250 ms until it holds or within passes.
func (s *suite) waitFor(t *testing.T, what string, within time.Duration, cond func() bool) time.Time {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(250 * time.Millisecond)
	}
	return time.Now()
}

func hasTaint(taints []corev1.Taint, key string, effect corev1.TaintEffect) bool {
	return slices.ContainsFunc(taints, func(t corev1.Taint) bool { return t.Key == key && t.Effect == effect })
}

// groupApps are the servers the node-loss scenarios run side by side:
// NATS (the routes it was given, then gossip) and Serf (memberlist's
// failure detection, whose alive members are exactly what it reaches).
var groupApps = []string{"nats", "serf"}

// loseANode runs a group of 4 of each app over both nodes, the founders
// on the second node when founderOnLost, else on the first, then loses the
// second node and returns it.
func (s *suite) loseANode(t *testing.T, scenario string, founderOnLost bool) {
	lost, kept := s.b, s.a
	founderNode, other := kept, lost
	if founderOnLost {
		founderNode, other = lost, kept
	}
	var groups []*group
	for _, app := range groupApps {
		groups = append(groups, s.newGroup(t, app, app+"-"+scenario))
	}
	// With the founders elsewhere, one more group lives wholly on the node
	// that is lost: nothing of it survives.
	var gone *group
	if !founderOnLost {
		gone = s.newGroup(t, "nats", "nats-all-lost")
		s.cordon(t, kept, true)
		if err := s.lc.Client.Create(s.ctx, gone.obj); err != nil {
			t.Fatal(err)
		}
		s.waitOneCluster(t, gone, 1, 3*time.Minute)
		s.scale(t, gone, 2)
		if pods := s.waitOneCluster(t, gone, 2, 3*time.Minute); len(onNode(pods, lost.Name)) != 2 {
			t.Fatalf("want the whole group on %s, got %v", lost.Name, names(pods))
		}
		s.cordon(t, kept, false)
	}
	s.cordon(t, other, true)
	for _, g := range groups {
		if err := s.lc.Client.Create(s.ctx, g.obj); err != nil {
			t.Fatal(err)
		}
	}
	founders := map[string]corev1.Pod{}
	for _, g := range groups {
		founders[g.app] = s.waitOneCluster(t, g, 1, 3*time.Minute)[0]
	}
	s.cordon(t, other, false)
	before := map[string][]corev1.Pod{}
	for _, g := range groups {
		if f := founders[g.app]; f.Spec.NodeName != founderNode.Name {
			t.Fatalf("%s founder %s on %s, want %s", g.app, f.Name, f.Spec.NodeName, founderNode.Name)
		}
		s.scale(t, g, 4)
	}
	for _, g := range groups {
		pods := s.waitOneCluster(t, g, 4, 3*time.Minute)
		if len(onNode(pods, lost.Name)) != 2 {
			t.Fatalf("%s: want 2 members per node, got %v", g.app, names(pods))
		}
		if role := s.role(t, founders[g.app]); role != "founder" {
			t.Fatalf("%s: the first pod %s decided %q, want founder", g.app, founders[g.app].Name, role)
		}
		before[g.app] = pods
	}

	var loop *framework.Creations
	if on := s.webhookNodes(t); slices.Contains(on, lost.Name) {
		loop = s.startCreating(t, "creations-"+scenario)
	} else {
		t.Logf("no webhook replica on %s (replicas on %v): the webhook is not part of this loss", lost.Name, on)
	}
	// Serf's survivors drop the dead members by themselves (memberlist's
	// probes): how long until no survivor lists a dead member as alive.
	serf := groups[slices.Index(groupApps, "serf")]
	serfAlone := make(chan error, 1)
	var serfAloneAfter time.Duration
	lossAt := time.Now()
	go func() {
		survivors, dead := onNode(before["serf"], kept.Name), onNode(before["serf"], lost.Name)
		var last error
		for time.Since(lossAt) < 2*time.Minute {
			if last = noneSeesDead(serf.views(s.ctx, survivors), dead); last == nil {
				serfAloneAfter = time.Since(lossAt)
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		serfAlone <- last
	}()
	if err := lost.Lose(); err != nil {
		t.Fatal(err)
	}
	// Dead, not refusing: a connection to a dead server gets no answer.
	for _, p := range onNode(before["nats"], lost.Name) {
		if err := framework.RequireDropped(s.ctx, p.Status.PodIP, 6222, 2*time.Second); err != nil {
			t.Fatalf("%s on the lost node: %v", p.Name, err)
		}
	}
	unreachableAt := s.waitFor(t, "node "+lost.Name+" unreachable", 2*time.Minute, func() bool {
		ready, taints := s.nodeReady(t, lost.Name)
		return !ready && hasTaint(taints, "node.kubernetes.io/unreachable", corev1.TaintEffectNoSchedule)
	})

	// A member created while the dead pods are still in DNS (their
	// eviction is Toleration away): it must join the survivors, taking
	// only peers that answer as seeds.
	for _, g := range groups {
		s.scale(t, g, 5)
	}
	if gone != nil {
		s.scale(t, gone, 3)
	}
	for _, g := range groups {
		var late corev1.Pod
		s.waitFor(t, g.app+": the member created while the dead pods are in DNS running", 2*time.Minute, func() bool {
			live, _ := s.pods(t, g)
			for _, p := range live {
				if !slices.ContainsFunc(before[g.app], func(q corev1.Pod) bool { return q.Name == p.Name }) && framework.PodReady(&p) {
					late = p
					return true
				}
			}
			return false
		})
		d := s.discoveryLogged(t, late)
		if d.peers < 5 {
			t.Fatalf("%s: %s decided on %d peers, want the 5 DNS named (2 dead among them)", g.app, late.Name, d.peers)
		}
		if d.role != "joiner" {
			t.Errorf("%s: %s decided %q beside dead addresses, want joiner", g.app, late.Name, d.role)
		}
		for _, seed := range strings.Split(d.seeds, ",") {
			if slices.ContainsFunc(onNode(before[g.app], lost.Name), func(p corev1.Pod) bool { return p.Status.PodIP == seed }) {
				t.Errorf("%s: %s took the dead %s as a seed (%s)", g.app, late.Name, seed, d.seeds)
			}
		}
	}

	evictedAt := s.waitFor(t, "the dead node's pods evicted", 2*time.Minute, func() bool {
		for _, g := range groups {
			if _, terminating := s.pods(t, g); len(terminating) < 2 {
				return false
			}
		}
		return true
	})
	if gone != nil {
		s.requireRefounded(t, gone, lost.Name)
	}
	var joined []string
	for _, g := range groups {
		pods := s.waitOneCluster(t, g, 5, 3*time.Minute)
		joinedAt := time.Now()
		for _, p := range pods {
			if p.Spec.NodeName != kept.Name {
				t.Errorf("%s: %s on %s while it is lost", g.app, p.Name, p.Spec.NodeName)
			}
			if p.Name != founders[g.app].Name {
				if role := s.role(t, p); role == "founder" {
					t.Errorf("%s: %s founded a second cluster beside the survivors", g.app, p.Name)
				}
			}
			requireInjected(t, p)
		}
		extra, _ := oneCluster(s.ctx, g, pods)
		joined = append(joined, fmt.Sprintf("%s +%s (routes to dead servers still held: %d)", g.app, joinedAt.Sub(lossAt).Round(100*time.Millisecond), extra))
	}
	if err := <-serfAlone; err != nil {
		t.Errorf("serf, 2 minutes after the loss: %v", err)
	}
	t.Logf("figure: node lost (founders there: %v): Serf survivors see each other only +%s, node unreachable +%s, members created then joined beside dead addresses, evicted +%s, replacements joined one cluster of 5: %s",
		founderOnLost, serfAloneAfter.Round(100*time.Millisecond), unreachableAt.Sub(lossAt).Round(100*time.Millisecond), evictedAt.Sub(lossAt).Round(100*time.Millisecond), strings.Join(joined, ", "))

	if loop != nil {
		s.waitFor(t, "the webhook Deployment ready again", 3*time.Minute, func() bool { return s.webhookReady(t) })
		r := loop.Finish()
		r.Require(t, false)
		t.Logf("figure: webhook replica's node lost (timeoutSeconds 5): %s", r)
	}

	returnAt := time.Now()
	if err := lost.Return(s.ctx); err != nil {
		t.Fatal(err)
	}
	s.waitFor(t, "node "+lost.Name+" Ready again", 2*time.Minute, func() bool { ready, _ := s.nodeReady(t, lost.Name); return ready })
	cleanedAt := s.waitFor(t, "the dead node's stale pods gone", 2*time.Minute, func() bool {
		for _, g := range append(slices.Clone(groups), gone) {
			if g == nil {
				continue
			}
			if _, terminating := s.pods(t, g); len(terminating) > 0 {
				return false
			}
		}
		return true
	})
	for _, g := range groups {
		s.waitOneCluster(t, g, 5, time.Minute)
	}
	if gone != nil {
		s.waitOneCluster(t, gone, 3, time.Minute)
	}
	t.Logf("figure: node returned: its stale pods gone %s after, every group still one cluster of 5", cleanedAt.Sub(returnAt).Round(100*time.Millisecond))
}

// noneSeesDead is nil when every view answered and lists no dead pod
// among its members.
func noneSeesDead(views []framework.ServerView, dead []corev1.Pod) error {
	for _, v := range views {
		if v.Err != nil {
			return fmt.Errorf("%s did not answer: %w", v.Pod, v.Err)
		}
		for _, d := range dead {
			if slices.Contains(v.Members(), d.Name) {
				return fmt.Errorf("%s still lists the dead %s alive", v.Pod, d.Name)
			}
		}
	}
	return nil
}

// requireRefounded checks a group that lost every member: the member
// created while the dead ones were still in DNS waited beside them (first
// in order, none answering: founding there could split the group had they
// been alive but unreachable from it), and once they left DNS the group
// formed again, one cluster of 3 on the surviving node, founded once.
func (s *suite) requireRefounded(t *testing.T, g *group, lostNode string) {
	t.Helper()
	pods := s.waitOneCluster(t, g, 3, 3*time.Minute)
	founders := 0
	waited := false
	for _, p := range pods {
		if p.Spec.NodeName == lostNode {
			t.Errorf("%s: %s on the lost node", g.ns, p.Name)
		}
		log, err := framework.ContainerLog(s.ctx, s.lc.Cluster, p.Namespace, p.Name, "seed-discovery")
		if err != nil {
			t.Fatal(err)
		}
		waited = waited || strings.Contains(log, "none answers on the peer port")
		if role, _, _ := framework.LoggedDecision(log); role == "founder" {
			founders++
		}
	}
	if !waited {
		t.Errorf("%s: no member waited beside the dead addresses: this run does not show it", g.ns)
	}
	if founders > 1 {
		t.Errorf("%s: %d founders", g.ns, founders)
	}
	t.Logf("%s: every member lost; the group formed again on the surviving node, one cluster of %d (%d founder)", g.ns, len(pods), founders)
}

// requireInjected fails when p lacks the seed-discovery container.
func requireInjected(t *testing.T, p corev1.Pod) {
	t.Helper()
	if !slices.ContainsFunc(p.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == "seed-discovery" }) {
		t.Errorf("%s was admitted without seed-discovery", p.Name)
	}
}

type logged struct {
	role, seeds string
	peers       int
}

// discoveryLogged reads the decision seed-discovery logged: role, seeds
// and how many peers DNS named then.
func (s *suite) discoveryLogged(t *testing.T, p corev1.Pod) logged {
	t.Helper()
	log, err := framework.ContainerLog(s.ctx, s.lc.Cluster, p.Namespace, p.Name, "seed-discovery")
	if err != nil {
		t.Fatal(err)
	}
	role, seeds, ok := framework.LoggedDecision(log)
	if !ok {
		t.Fatalf("%s: no decision in its log:\n%s", p.Name, log)
	}
	var l logged
	l.role, l.seeds = role, seeds
	for _, line := range strings.Split(log, "\n") {
		if _, rest, found := strings.Cut(line, "decided after "); found {
			for _, part := range strings.Split(rest, ", ") {
				if _, err := fmt.Sscanf(part, "%d peers", &l.peers); err == nil {
					break
				}
			}
			break
		}
	}
	return l
}

func (s *suite) role(t *testing.T, p corev1.Pod) string {
	t.Helper()
	return s.discoveryLogged(t, p).role
}

// startCreating creates member pods in a new namespace ns while a
// scenario runs (framework.Creations).
func (s *suite) startCreating(t *testing.T, ns string) *framework.Creations {
	t.Helper()
	if _, err := s.lc.CreateNamespace(s.ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	return framework.StartCreations(s.ctx, t, s.lc.Client, framework.CreationsOptions{Namespace: ns, Group: "creations", Prefix: "member"})
}

// containerIDs are a pod's containers (init containers, the refreshing
// sidecar among them, first) as "name=id#restarts".
func containerIDs(p corev1.Pod) []string {
	var out []string
	for _, st := range append(slices.Clone(p.Status.InitContainerStatuses), p.Status.ContainerStatuses...) {
		out = append(out, fmt.Sprintf("%s=%s#%d", st.Name, st.ContainerID, st.RestartCount))
	}
	return out
}

// restartDaemons restarts the kubelet, then containerd, of the node that
// runs the second group's members, and checks after each that no
// container started again, the seed files are the same, the group is one
// cluster and the refreshing sidecar still follows the group.
func (s *suite) restartDaemons(t *testing.T) {
	g := &group{app: "nats", ns: "nats-joiners-lost", views: framework.NATSViews}
	before, _ := s.pods(t, g)
	if len(before) == 0 {
		t.Fatal("no member of the previous scenario is left to restart under")
	}
	node := s.a
	seeds := map[string]string{}
	for _, p := range before {
		if p.Spec.NodeName != node.Name {
			t.Fatalf("%s on %s, want every member on %s", p.Name, p.Spec.NodeName, node.Name)
		}
		data, err := node.EmptyDirFile(string(p.UID), contract.SeedsVolumeName, contract.SeedsFileName)
		if err != nil {
			t.Fatal(err)
		}
		seeds[p.Name] = string(data)
	}
	for _, restart := range []struct {
		daemon string
		do     func(context.Context) error
	}{{"kubelet", node.RestartKubelet}, {"containerd", node.RestartContainerd}} {
		if err := restart.do(s.ctx); err != nil {
			t.Fatal(err)
		}
		s.waitFor(t, "node Ready after the "+restart.daemon+" restart", time.Minute, func() bool { ready, _ := s.nodeReady(t, node.Name); return ready })
		// Two of the kubelet's syncs (syncFrequency 10s): time to re-run
		// anything it would.
		time.Sleep(25 * time.Second)
		after := s.waitOneCluster(t, g, len(before), time.Minute)
		for _, p := range after {
			i := slices.IndexFunc(before, func(q corev1.Pod) bool { return q.UID == p.UID })
			if i < 0 {
				t.Errorf("after the %s restart: %s is a new pod", restart.daemon, p.Name)
				continue
			}
			if was, now := containerIDs(before[i]), containerIDs(p); !slices.Equal(was, now) {
				t.Errorf("after the %s restart: %s's containers were %v, now %v", restart.daemon, p.Name, was, now)
			}
			data, err := node.EmptyDirFile(string(p.UID), contract.SeedsVolumeName, contract.SeedsFileName)
			if err != nil || string(data) != seeds[p.Name] {
				t.Errorf("after the %s restart: %s's seeds %q (%v), were %q", restart.daemon, p.Name, data, err, seeds[p.Name])
			}
		}
		t.Logf("%s restarted on %s: %d members, no container started again, seeds unchanged, one cluster", restart.daemon, node.Name, len(after))
	}

	// The refreshing sidecars still run: a new member shows up in every
	// old member's peer-hosts.
	g.obj = &corev1.ReplicationController{}
	if err := s.lc.Client.Get(s.ctx, client.ObjectKey{Namespace: g.ns, Name: "nats"}, g.obj); err != nil {
		t.Fatal(err)
	}
	s.scale(t, g, int32(len(before)+1))
	after := s.waitOneCluster(t, g, len(before)+1, 2*time.Minute)
	var added corev1.Pod
	for _, p := range after {
		if !slices.ContainsFunc(before, func(q corev1.Pod) bool { return q.UID == p.UID }) {
			added = p
		}
	}
	s.waitFor(t, "every old member's sidecar lists the new member "+added.Status.PodIP, time.Minute, func() bool {
		for _, p := range before {
			data, err := node.EmptyDirFile(string(p.UID), contract.SeedsVolumeName, contract.PeerHostsFileName)
			if err != nil || !slices.Contains(strings.Fields(strings.ReplaceAll(string(data), ",", " ")), added.Status.PodIP) {
				return false
			}
		}
		return true
	})
}

// drain drains a node holding one webhook replica while member pods are
// created: the PDB and the replicas' graceful shutdown refuse none.
func (s *suite) drain(t *testing.T) {
	// After a lost node both replicas run on the survivor: nothing moves
	// a running pod back (the anti-affinity is preferred, at scheduling).
	// Spread them again as docs/operations.md says: delete one; its
	// replacement is scheduled away from the other (the anti-affinity).
	if on := s.webhookNodes(t); len(on) == 2 && on[0] == on[1] {
		t.Logf("both webhook replicas on %s after the losses: deleting one", on[0])
		dep := &appsv1.Deployment{}
		if err := s.lc.Client.Get(s.ctx, client.ObjectKey{Namespace: releaseNS, Name: release}, dep); err != nil {
			t.Fatal(err)
		}
		pods := &corev1.PodList{}
		if err := s.lc.Client.List(s.ctx, pods, client.InNamespace(releaseNS), client.MatchingLabels(dep.Spec.Selector.MatchLabels)); err != nil {
			t.Fatal(err)
		}
		if err := s.lc.Client.Delete(s.ctx, &pods.Items[0]); err != nil {
			t.Fatal(err)
		}
		s.waitFor(t, "the webhook spread over both nodes", 3*time.Minute, func() bool {
			on := s.webhookNodes(t)
			return len(on) == 2 && s.webhookReady(t)
		})
	}
	s.requireSpread(t)
	node := s.a.Name
	loop := s.startCreating(t, "creations-drain")
	time.Sleep(2 * time.Second)
	s.shell(t, "kubectl drain "+node+" --ignore-daemonsets --delete-emptydir-data --timeout 4m")
	s.waitFor(t, "the webhook Deployment ready again", 3*time.Minute, func() bool { return s.webhookReady(t) })
	time.Sleep(2 * time.Second)
	r := loop.Finish()
	r.Require(t, true)
	t.Logf("figure: kubectl drain of %s (one webhook replica there): %s", node, r)
	s.shell(t, "kubectl uncordon "+node)
}

// webhookReady says whether every replica of the webhook is ready and
// updated.
func (s *suite) webhookReady(t *testing.T) bool {
	t.Helper()
	dep := &appsv1.Deployment{}
	return s.lc.Client.Get(s.ctx, client.ObjectKey{Namespace: releaseNS, Name: release}, dep) == nil &&
		dep.Status.ReadyReplicas == *dep.Spec.Replicas && dep.Status.UpdatedReplicas == *dep.Spec.Replicas &&
		dep.Status.Replicas == *dep.Spec.Replicas
}
