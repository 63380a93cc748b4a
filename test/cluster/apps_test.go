package cluster

// Real servers nobody here wrote, from Debian's packages, each reading one
// seed format through the wrapper its example manifest holds, applied as
// written (the test adds the real node's selector and toleration): Redis
// Cluster (seed-hostports → CLUSTER MEET, a StatefulSet), RabbitMQ
// (seed-hosts with stable names → classic peer discovery, a StatefulSet),
// JGroups (seed-jgroups → TCPPING, a Deployment) and Serf (seed-hostports
// → -retry-join, peer-hostports when alone, a Deployment). Every scenario
// is asserted from what the server itself reports.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/test/framework"
)

// debianApp pushes app's image once per test binary and returns it with
// the extracted root its client tools run from.
func debianApp(t *testing.T, name string) (framework.DebianApp, framework.DebianRoot) {
	t.Helper()
	app := framework.DebianApps[name]
	pushed := appImages.get(name, func() (framework.DebianRoot, error) {
		say := func(f string, a ...any) { t.Logf(f, a...) }
		return framework.PushDebianApp(context.Background(), lc.Node, filepath.Join(framework.RepoRoot(), ".cache", "debian"), app, say)
	})
	if pushed.err != nil {
		t.Fatalf("%s image: %v", name, pushed.err)
	}
	return app, pushed.root
}

type pushedApp struct {
	root framework.DebianRoot
	err  error
}

// appImageCache pushes each application's image once, applications in
// parallel (the JGroups image, with its JVM, takes the longest).
type appImageCache struct {
	mu   sync.Mutex
	once map[string]*sync.Once
	done map[string]pushedApp
}

var appImages appImageCache

func (c *appImageCache) get(name string, push func() (framework.DebianRoot, error)) pushedApp {
	c.mu.Lock()
	if c.once == nil {
		c.once, c.done = map[string]*sync.Once{}, map[string]pushedApp{}
	}
	once, ok := c.once[name]
	if !ok {
		once = &sync.Once{}
		c.once[name] = once
	}
	c.mu.Unlock()
	once.Do(func() {
		root, err := push()
		c.mu.Lock()
		c.done[name] = pushedApp{root, err}
		c.mu.Unlock()
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.done[name]
}

// appWorkload is the example's workload, as written, placed on the real
// node in ns.
func appWorkload(t *testing.T, app framework.DebianApp, ns string) client.Object {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(framework.RepoRoot(), "docs", "examples", app.Manifest))
	if err != nil {
		t.Fatal(err)
	}
	var kind struct{ Kind string }
	if err := yaml.Unmarshal(data, &kind); err != nil {
		t.Fatal(err)
	}
	var obj client.Object
	var tmpl *corev1.PodTemplateSpec
	switch kind.Kind {
	case "StatefulSet":
		sts := &appsv1.StatefulSet{}
		err, obj, tmpl = yaml.UnmarshalStrict(data, sts), sts, &sts.Spec.Template
	case "Deployment":
		dep := &appsv1.Deployment{}
		err, obj, tmpl = yaml.UnmarshalStrict(data, dep), dep, &dep.Spec.Template
	default:
		t.Fatalf("docs/examples/%s: kind %q", app.Manifest, kind.Kind)
	}
	if err != nil {
		t.Fatalf("docs/examples/%s: %v", app.Manifest, err)
	}
	obj.SetNamespace(ns)
	onRealNode(&tmpl.Spec)
	return obj
}

// appRun is one application's run through the scenarios.
type appRun struct {
	t    *testing.T
	app  framework.DebianApp
	root framework.DebianRoot
	ns   string
	obj  client.Object
}

func (r *appRun) views(ctx context.Context, pods []corev1.Pod) []framework.ServerView {
	return r.app.Views(ctx, framework.AppEnv{Root: r.root, Cluster: lc.Cluster}, pods)
}

func (r *appRun) scale(n int32) {
	r.t.Helper()
	patch := client.RawPatch(types.MergePatchType, fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, n))
	if err := lc.Client.Patch(context.Background(), r.obj, patch); err != nil {
		r.t.Fatal(err)
	}
}

// requireOneCluster waits for n running pods forming one cluster as the
// servers report it, and records the time from the last pod started. A
// failure names each pod, its seed file and its server's own report.
func (r *appRun) requireOneCluster(t *testing.T, n int) []corev1.Pod {
	t.Helper()
	deadline := oneClusterDeadline
	if r.app.Name == "jgroups" {
		// JGroups 2.12's tcp.xml: a member whose initial_hosts do not name
		// a newcomer learns its address only by discovery, and a view it
		// could not install is repaired by MERGE2, every 10-30 s.
		deadline += 30 * time.Second
	}
	pods, took, err := framework.WaitOneCluster(context.Background(), lc.Cluster, r.ns, map[string]string{"app": r.app.Name}, n, deadline, r.views)
	if err != nil {
		r.explain(t, r.allPods(t))
		t.Fatalf("%s: %v (after %s)", r.app.Name, err, deadline)
	}
	t.Logf("one %s cluster of %d after the last pod started: %s", r.app.Name, n, took.Round(100*time.Millisecond))
	if n > 1 {
		appFigures.add(r.app.Name, took)
	}
	if r.app.Name == "serf" {
		// The seeds made the cluster: the wrapper's fallback to the members
		// alive now (peer-hostports, when an agent is alone) was not
		// needed, or the scenario would pass without seed-hostports.
		for _, p := range pods {
			if log := containerLog(t, p.Namespace, p.Name, r.app.Container); strings.Contains(log, "alone: joined") {
				r.explain(t, pods)
				t.Fatalf("%s needed peer-hostports: its seeds did not make it a member", p.Name)
			}
		}
	}
	return pods
}

// allPods are the app's pods as they are, ready or not.
func (r *appRun) allPods(t *testing.T) []corev1.Pod {
	t.Helper()
	list := &corev1.PodList{}
	if err := lc.Client.List(context.Background(), list, client.InNamespace(r.ns), client.MatchingLabels{"app": r.app.Name}); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// explain logs, for each pod, its decision, the seed file its server read
// and the server's own membership report.
func (r *appRun) explain(t *testing.T, pods []corev1.Pod) {
	t.Helper()
	for _, p := range pods {
		sd, _ := framework.ContainerLog(context.Background(), lc.Cluster, p.Namespace, p.Name, "seed-discovery")
		_, seeds, _ := framework.LoggedDecision(sd)
		file, err := lc.Node.EmptyDirFile(string(p.UID), contract.SeedsVolumeName, r.app.SeedFile)
		if err != nil {
			file = []byte(err.Error())
		}
		log, _ := framework.ContainerLog(context.Background(), lc.Cluster, p.Namespace, p.Name, r.app.Container)
		t.Logf("%s (%s, %s): decided seeds %s; %s %q; %s reports:\n%s\nits log begins:\n%s\nand ends:\n%s", p.Name, p.Status.PodIP, p.Status.Phase, seeds,
			r.app.SeedFile, strings.TrimSpace(string(file)), r.app.Name, r.app.Report(context.Background(), framework.AppEnv{Root: r.root, Cluster: lc.Cluster}, &p), firstLines(log, 4), lastLines(log, 15))
	}
}

// founder is the live pod whose seed-discovery founded the cluster.
func (r *appRun) founder(t *testing.T, pods []corev1.Pod) corev1.Pod {
	t.Helper()
	for _, p := range pods {
		if role, _, _ := framework.LoggedDecision(containerLog(t, p.Namespace, p.Name, "seed-discovery")); role == "founder" {
			return p
		}
	}
	t.Fatalf("no pod of %v decided role founder", podNames(pods))
	return corev1.Pod{}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func podNames(pods []corev1.Pod) []string {
	names := make([]string, len(pods))
	for i, p := range pods {
		names[i] = p.Name
	}
	return names
}

// requireRedisSlots checks that every Redis server reports all 16384
// slots assigned and cluster_state:ok.
func (r *appRun) requireRedisSlots(t *testing.T, pods []corev1.Pod) {
	t.Helper()
	r.requireRedis(t, pods, "slots not served", func(state string, slots int) bool { return state == "ok" && slots == 16384 })
}

// requireRedisSlotsLost checks what the example documents once redis-0,
// which serves every slot, was replaced: without replicas and a volume its
// slots are gone, and every server says so (cluster_state:fail), the
// replacement assigning none beside the running cluster.
func (r *appRun) requireRedisSlotsLost(t *testing.T, pods []corev1.Pod) {
	t.Helper()
	r.requireRedis(t, pods, "redis-0 replaced: want every server to report its slots lost", func(state string, _ int) bool { return state == "fail" })
}

// requireRedis waits up to 30 s until every server's CLUSTER INFO
// satisfies want, and fails with what, naming each server that does not.
func (r *appRun) requireRedis(t *testing.T, pods []corev1.Pod, what string, want func(state string, slots int) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var bad []string
		for i := range pods {
			state, slots, err := framework.RedisClusterState(context.Background(), &pods[i])
			if err != nil || !want(state, slots) {
				bad = append(bad, fmt.Sprintf("%s: cluster_state:%s cluster_slots_assigned:%d %v", pods[i].Name, state, slots, err))
			}
		}
		if len(bad) == 0 {
			return
		}
		if time.Now().After(deadline) {
			r.explain(t, pods)
			t.Fatalf("%s: %s", what, strings.Join(bad, "; "))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// newPods fails unless no pod of pods is one of old (by UID).
func newPods(t *testing.T, old, pods []corev1.Pod, what string) {
	t.Helper()
	for _, p := range pods {
		if slices.ContainsFunc(old, func(o corev1.Pod) bool { return o.UID == p.UID }) {
			t.Fatalf("pod %s survived the %s", p.Name, what)
		}
	}
}

// TestRealApps runs each application through the events that split
// clusters in production, each in its own namespace, in parallel.
func TestRealApps(t *testing.T) {
	for _, name := range []string{"redis", "rabbitmq", "jgroups", "serf"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			app, root := debianApp(t, name)
			r := &appRun{t: t, app: app, root: root, ns: restrictedNamespace(t)}
			r.obj = appWorkload(t, app, r.ns)
			r.run(t)
		})
	}
}

func (r *appRun) run(t *testing.T) {
	sel := client.MatchingLabels{"app": r.app.Name}
	redis := r.app.Name == "redis"
	ok := t.Run("scale 1 to 3", func(t *testing.T) {
		stop := sampleNeverTwo(t, r.ns, r.app.Name, r.views, r.explain)
		if err := lc.Client.Create(context.Background(), r.obj); err != nil {
			t.Fatal(err)
		}
		first := r.requireOneCluster(t, 1)
		requireDecision(t, first[0], "role founder")
		r.scale(3)
		pods := r.requireOneCluster(t, 3)
		stop()
		for _, p := range pods {
			if p.UID != first[0].UID {
				requireJoined(t, p)
			}
		}
		if redis {
			r.requireRedisSlots(t, pods)
		}
	})
	ok = ok && t.Run("a late joiner: 3 to 4", func(t *testing.T) {
		old := runningOn(t, r.ns, r.app.Name, 3)
		stop := sampleNeverTwo(t, r.ns, r.app.Name, r.views, r.explain)
		r.scale(4)
		pods := r.requireOneCluster(t, 4)
		stop()
		for _, p := range pods {
			if !slices.ContainsFunc(old, func(o corev1.Pod) bool { return o.UID == p.UID }) {
				requireJoined(t, p)
			}
		}
		if redis {
			r.requireRedisSlots(t, pods)
		}
	})
	ok = ok && t.Run("the founder lost", func(t *testing.T) {
		pods := runningOn(t, r.ns, r.app.Name, 4)
		founder := r.founder(t, pods)
		stop := sampleNeverTwo(t, r.ns, r.app.Name, r.views, r.explain)
		if err := lc.Client.Delete(context.Background(), &founder); err != nil {
			t.Fatal(err)
		}
		after := r.requireOneCluster(t, 4)
		stop()
		for _, p := range after {
			if p.UID == founder.UID {
				t.Fatalf("the founder %s is still there", p.Name)
			}
			if !slices.ContainsFunc(pods, func(o corev1.Pod) bool { return o.UID == p.UID }) {
				requireJoined(t, p)
			}
		}
		if redis {
			r.requireRedisSlotsLost(t, after)
		}
	})
	ok = ok && t.Run("full restart: every pod deleted at once", func(t *testing.T) {
		old := runningOn(t, r.ns, r.app.Name, 4)
		stop := sampleNeverTwo(t, r.ns, r.app.Name, r.views, r.explain)
		if err := lc.Client.DeleteAllOf(context.Background(), &corev1.Pod{}, client.InNamespace(r.ns), sel); err != nil {
			t.Fatal(err)
		}
		pods := r.requireOneCluster(t, 4)
		stop()
		newPods(t, old, pods, "full restart")
		if redis {
			// A new cluster: its first seed assigned the slots again.
			r.requireRedisSlots(t, pods)
		}
	})
	if sts, isSet := r.obj.(*appsv1.StatefulSet); ok && isSet {
		t.Run("rolling update", func(t *testing.T) {
			old := runningOn(t, r.ns, r.app.Name, 4)
			stop := sampleNeverTwo(t, r.ns, r.app.Name, r.views, r.explain)
			patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"template":{"metadata":{"annotations":{"rollout":"1"}}}}}`))
			if err := lc.Client.Patch(context.Background(), sts, patch); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Minute)
			for {
				pods, err := framework.RunningReady(context.Background(), lc.Cluster, r.ns, map[string]string{"app": r.app.Name}, 4, 3*time.Minute)
				if err == nil && !slices.ContainsFunc(pods, func(p corev1.Pod) bool {
					return slices.ContainsFunc(old, func(o corev1.Pod) bool { return o.UID == p.UID })
				}) {
					break
				}
				if time.Now().After(deadline) {
					r.explain(t, r.allPods(t))
					t.Fatalf("rolling update did not replace every pod in 5m: %v", err)
				}
				time.Sleep(time.Second)
			}
			pods := r.requireOneCluster(t, 4)
			stop()
			if redis {
				r.requireRedisSlotsLost(t, pods)
			}
		})
	}
}

// appFigures collects, per application, the time from the last pod
// started to one cluster; TestMain prints them for test/bench/RESULTS.md.
var appFigures = durationsByName{}

type durationsByName struct {
	mu     sync.Mutex
	d      map[string][]time.Duration
	splits map[string]int
}

// split counts a scenario of name in which two clusters were seen at once.
func (f *durationsByName) split(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.splits == nil {
		f.splits = map[string]int{}
	}
	f.splits[name]++
}

func (f *durationsByName) add(name string, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.d == nil {
		f.d = map[string][]time.Duration{}
	}
	f.d[name] = append(f.d[name], d)
}

func (f *durationsByName) summary() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range f.d {
			if !yield(k) {
				return
			}
		}
	}) {
		d := slices.Sorted(slices.Values(f.d[name]))
		out = append(out, fmt.Sprintf("%s: last pod started -> one cluster p50 %s, max %s over %d scalings and restarts; two clusters at once in %d", name,
			d[len(d)/2].Round(100*time.Millisecond), d[len(d)-1].Round(100*time.Millisecond), len(d), f.splits[name]))
	}
	return strings.Join(out, "; ")
}
