package cluster

// Scenarios on the real node: kubelet, containerd and runc run the injected
// seed-discovery from the image `make image` builds, and NATS servers
// (docs/examples/nats.yaml, as users would deploy it) form their cluster
// from the seeds. Every scenario asserts one cluster of exactly the live
// pods, seen from every member, within a deadline; a failure names the
// islands.

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/inspect"
	"github.com/peergroup/peergroup/test/framework"
)

// oneClusterDeadline bounds the time from the last pod Running to one full
// cluster: seed-discovery has decided before the app starts, so what is
// left is NATS connecting its routes and gossiping the rest.
const oneClusterDeadline = 60 * time.Second

// natsTemplate is the pod template of docs/examples/nats.yaml with the
// image from the node's registry, placed on the real node.
func natsTemplate(t *testing.T, app string) corev1.PodTemplateSpec {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(framework.RepoRoot(), "docs", "examples", "nats.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	rc := &corev1.ReplicationController{}
	if err := yaml.UnmarshalStrict(data, rc); err != nil {
		t.Fatalf("docs/examples/nats.yaml: %v", err)
	}
	tmpl := *rc.Spec.Template
	tmpl.Labels["app"] = app
	tmpl.Spec.Containers[0].Image = images.NATS
	onRealNode(&tmpl.Spec)
	return tmpl
}

func onRealNode(spec *corev1.PodSpec) {
	spec.NodeSelector = map[string]string{framework.RealNodeLabel: "true"}
	spec.Tolerations = append(spec.Tolerations, corev1.Toleration{Key: framework.RealNodeTaint, Operator: corev1.TolerationOpExists})
}

// runningOn waits until exactly n pods of app are Running and ready, none
// terminating, and returns them sorted by name.
func runningOn(t *testing.T, ns, app string, n int) []corev1.Pod {
	t.Helper()
	pods, err := framework.RunningReady(context.Background(), lc.Cluster, ns, map[string]string{"app": app}, n, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return pods
}

// requireOneCluster waits until the n live pods of app form one NATS
// cluster, each seeing exactly the others, and logs how long that took
// after the last of them started. It fails naming the islands.
func requireOneCluster(t *testing.T, ns, app string, n int) []corev1.Pod {
	t.Helper()
	pods, took, err := waitOneCluster(t, ns, app, n, oneClusterDeadline)
	if err != nil {
		logDecisions(t, pods)
		t.Fatalf("%s: %v (after %s)", app, err, oneClusterDeadline)
	}
	t.Logf("one cluster of %d %s after the last pod started", n, took.Round(100*time.Millisecond))
	figures.add(t, took, pods)
	return pods
}

// figures collects, over the scenarios, the time from the last pod
// started to one full cluster, and each pod's DNS queries until it
// decided; TestMain prints them for test/bench/RESULTS.md.
var figures realNodeFigures

type realNodeFigures struct {
	mu           sync.Mutex
	toOneCluster []time.Duration
	queries      map[string]int // by pod namespace/name
	// refreshLag: pods settled → every member's peer files equal the group
	// (the refreshing sidecar).
	refreshLag []time.Duration
}

func (f *realNodeFigures) addRefresh(took time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refreshLag = append(f.refreshLag, took)
}

// add records one scenario's convergence time (the moment only, when the
// cluster was already formed by pods that had been running: a scale down)
// and the queries of pods not seen before.
func (f *realNodeFigures) add(t *testing.T, took time.Duration, pods []corev1.Pod) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.queries == nil {
		f.queries = map[string]int{}
	}
	if len(pods) > 1 {
		f.toOneCluster = append(f.toOneCluster, took)
	}
	for _, p := range pods {
		key := p.Namespace + "/" + p.Name
		if _, seen := f.queries[key]; seen {
			continue
		}
		if n, ok := framework.LoggedQueries(containerLog(t, p.Namespace, p.Name, "seed-discovery")); ok {
			f.queries[key] = n
		}
	}
}

// summary is one line per figure: p50 and max.
func (f *realNodeFigures) summary() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.toOneCluster) == 0 {
		return "no real-node scenario ran"
	}
	d := slices.Clone(f.toOneCluster)
	slices.Sort(d)
	q := make([]int, 0, len(f.queries))
	for _, n := range f.queries {
		q = append(q, n)
	}
	slices.Sort(q)
	out := fmt.Sprintf("last pod started -> one full cluster: p50 %s, max %s over %d runs", d[len(d)/2].Round(100*time.Millisecond), d[len(d)-1].Round(100*time.Millisecond), len(d))
	if len(q) > 0 {
		out += fmt.Sprintf("; DNS queries per pod until it decided: p50 %d, max %d over %d pods", q[len(q)/2], q[len(q)-1], len(q))
	}
	if r := slices.Sorted(slices.Values(f.refreshLag)); len(r) > 0 {
		out += fmt.Sprintf("; one cluster formed -> every peer file current (refresh 5s): p50 %s, max %s over %d scalings", r[len(r)/2].Round(100*time.Millisecond), r[len(r)-1].Round(100*time.Millisecond), len(r))
	}
	return out
}

// waitOneCluster waits up to within for the n running pods of app to form
// one cluster (framework.WaitOneNATSCluster).
func waitOneCluster(t *testing.T, ns, app string, n int, within time.Duration) ([]corev1.Pod, time.Duration, error) {
	t.Helper()
	return framework.WaitOneNATSCluster(context.Background(), lc.Cluster, ns, map[string]string{"app": app}, n, within)
}

// requireSeedsMadeIt checks that no pod needed the routes to the current
// members: the one cluster came from the seeds alone.
func requireSeedsMadeIt(t *testing.T, pods []corev1.Pod) {
	t.Helper()
	for _, p := range pods {
		if log := containerLog(t, p.Namespace, p.Name, "nats"); strings.Contains(log, "also routing to the members alive now") {
			t.Errorf("%s needed the routes to the current members: its seeds did not answer", p.Name)
		}
	}
	if t.Failed() {
		logDecisions(t, pods)
	}
}

// logDecisions logs what each pod's seed-discovery decided and how its
// server started, for a failure's reader.
func logDecisions(t *testing.T, pods []corev1.Pod) {
	t.Helper()
	for _, p := range pods {
		t.Logf("%s (%s):\n%s\n%s", p.Name, p.Status.PodIP, containerLog(t, p.Namespace, p.Name, "seed-discovery"), firstLines(containerLog(t, p.Namespace, p.Name, "nats"), 3))
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

func natsRC(t *testing.T, ns, app string, replicas int32) *corev1.ReplicationController {
	t.Helper()
	return createRC(t, ns, app, replicas, natsTemplate(t, app))
}

// createRC creates a ReplicationController of app running tmpl.
func createRC(t *testing.T, ns, app string, replicas int32, tmpl corev1.PodTemplateSpec) *corev1.ReplicationController {
	t.Helper()
	rc := &corev1.ReplicationController{}
	rc.Name, rc.Namespace = app, ns
	rc.Spec.Replicas = ptr.To(replicas)
	rc.Spec.Selector = map[string]string{"app": app}
	rc.Spec.Template = &tmpl
	if err := lc.Client.Create(context.Background(), rc); err != nil {
		t.Fatal(err)
	}
	return rc
}

func scaleRC(t *testing.T, rc *corev1.ReplicationController, replicas int32) {
	t.Helper()
	patch := client.MergeFrom(rc.DeepCopy())
	rc.Spec.Replicas = ptr.To(replicas)
	if err := lc.Client.Patch(context.Background(), rc, patch); err != nil {
		t.Fatal(err)
	}
}

// restrictedNamespace is a namespace whose pods must pass Pod Security
// "restricted": the injected container and the NATS example both do.
func restrictedNamespace(t *testing.T) string {
	return newNamespace(t, map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
}

// TestRealNATS runs the seed walkthrough with real servers and then the
// events that split clusters in production, one after the other on the
// same ReplicationController.
func TestRealNATS(t *testing.T) {
	ns := restrictedNamespace(t)
	rc := natsRC(t, ns, "nats", 1)

	var founder corev1.Pod
	t.Run("a walkthrough: the founder, then scaled to 3", func(t *testing.T) {
		founder = requireOneCluster(t, ns, "nats", 1)[0]
		scaleRC(t, rc, 3)
		pods := requireOneCluster(t, ns, "nats", 3)
		requireSeedsMadeIt(t, pods)
		requireDecision(t, founder, "role founder")
		for _, p := range pods {
			if p.Name != founder.Name {
				requireJoined(t, p)
			}
		}
		requireStatus(t, ns, founder.Name, pods)
	})
	if t.Failed() {
		return
	}

	t.Run("b full restart: every pod deleted at once", func(t *testing.T) {
		old := runningOn(t, ns, "nats", 3)
		if err := lc.Client.DeleteAllOf(context.Background(), &corev1.Pod{}, client.InNamespace(ns), client.MatchingLabels{"app": "nats"}); err != nil {
			t.Fatal(err)
		}
		pods := requireOneCluster(t, ns, "nats", 3)
		requireSeedsMadeIt(t, pods)
		for _, p := range pods {
			if slices.ContainsFunc(old, func(o corev1.Pod) bool { return o.UID == p.UID }) {
				t.Fatalf("pod %s survived the restart: not a full restart", p.Name)
			}
		}
	})

	t.Run("c founder and first seeds gone: scale down to the newest, then up", func(t *testing.T) {
		pods := runningOn(t, ns, "nats", 3)
		sort.Slice(pods, func(i, j int) bool { return pods[i].CreationTimestamp.Before(&pods[j].CreationTimestamp) })
		newest := pods[len(pods)-1]
		// The ReplicationController removes the pods of lowest deletion
		// cost first: keep the newest.
		for i := range pods {
			cost := "-100"
			if pods[i].Name == newest.Name {
				cost = "100"
			}
			patch := client.MergeFrom(pods[i].DeepCopy())
			if pods[i].Annotations == nil {
				pods[i].Annotations = map[string]string{}
			}
			pods[i].Annotations["controller.kubernetes.io/pod-deletion-cost"] = cost
			if err := lc.Client.Patch(context.Background(), &pods[i], patch); err != nil {
				t.Fatal(err)
			}
		}
		scaleRC(t, rc, 1)
		if left := requireOneCluster(t, ns, "nats", 1); left[0].Name != newest.Name {
			t.Fatalf("scale down kept %s, want the newest %s", left[0].Name, newest.Name)
		}
		scaleRC(t, rc, 3)
		after := requireOneCluster(t, ns, "nats", 3)
		requireSeedsMadeIt(t, after)
		if !slices.ContainsFunc(after, func(p corev1.Pod) bool { return p.Name == newest.Name }) {
			t.Fatalf("the survivor %s is no longer a member", newest.Name)
		}
		for _, p := range after {
			if p.Name != newest.Name {
				requireJoined(t, p)
			}
		}
	})

	t.Run("e late joiner: its seeds are gone when it starts", func(t *testing.T) {
		// The late pod decides with the others alive, then sleeps before
		// its server starts; meanwhile every pod it could name is deleted
		// and replaced.
		tmpl := natsTemplate(t, "nats-late")
		tmpl.Spec.Containers[0].Args[0] = "sleep 25\n" + tmpl.Spec.Containers[0].Args[0]
		late := &corev1.Pod{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec}
		late.Name, late.Namespace = "nats-late", ns
		if err := lc.Client.Create(context.Background(), late); err != nil {
			t.Fatal(err)
		}
		waitDecided(t, late)
		seeds := requireDecision(t, *late, "role joiner")
		if err := lc.Client.DeleteAllOf(context.Background(), &corev1.Pod{}, client.InNamespace(ns), client.MatchingLabels{"app": "nats"}); err != nil {
			t.Fatal(err)
		}
		requireOneCluster(t, ns, "nats", 3)
		// What happens: none of its seeds answers, so it also routes to
		// the members its sidecar lists now; and it recovers: one cluster
		// with the others.
		deadline := time.Now().Add(oneClusterDeadline + 60*time.Second)
		for {
			var all []corev1.Pod
			for _, p := range lc.Pods(t, ns) {
				if p.DeletionTimestamp == nil && p.Status.PodIP != "" && p.Status.Phase == corev1.PodRunning {
					all = append(all, p)
				}
			}
			err := framework.OneCluster(framework.NATSViews(context.Background(), all))
			if err == nil && len(all) == 4 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("late joiner (seeds %s) did not join: %d pods, %v", seeds, len(all), err)
			}
			time.Sleep(time.Second)
		}
		log := containerLog(t, ns, late.Name, "nats")
		_, members, ok := strings.Cut(log, "also routing to the members alive now:")
		if !ok {
			t.Fatalf("late joiner's log does not say its seeds were gone:\n%s", log)
		}
		members, _, _ = strings.Cut(members, "\n")
		// The routes went to the replacements, not to the seeds it decided on.
		for _, ip := range strings.Fields(members) {
			if slices.Contains(strings.Split(seeds, ","), ip) {
				t.Errorf("late joiner routed to %s, one of its gone seeds %s: peer-hosts was not current", ip, seeds)
			}
		}
		if len(strings.Fields(members)) != 3 {
			t.Errorf("late joiner routed to %q, want the 3 members alive", members)
		}
	})
}

// TestRealNATSStatefulSetAndRollingUpdate: a StatefulSet started in
// parallel with founding ordinal0, and a Deployment's rolling update; at
// no sampled moment do two clusters exist.
func TestRealNATSStatefulSetAndRollingUpdate(t *testing.T) {
	t.Run("d StatefulSet, Parallel, founding ordinal0", func(t *testing.T) {
		ns := restrictedNamespace(t)
		tmpl := natsTemplate(t, "nats-sts")
		tmpl.Annotations["peergroup.dev/founding"] = "ordinal0"
		sts := &appsv1.StatefulSet{}
		sts.Name, sts.Namespace = "nats-sts", ns
		sts.Spec = appsv1.StatefulSetSpec{
			Replicas: ptr.To[int32](3), ServiceName: "nats", PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector: metav1LabelSelector("nats-sts"), Template: tmpl,
		}
		stop := sampleNeverTwo(t, ns, "nats-sts", framework.NATSViews)
		if err := lc.Client.Create(context.Background(), sts); err != nil {
			t.Fatal(err)
		}
		requireSeedsMadeIt(t, requireOneCluster(t, ns, "nats-sts", 3))
		stop()
	})
	t.Run("d Deployment rolling update", func(t *testing.T) {
		ns := restrictedNamespace(t)
		tmpl := natsTemplate(t, "nats-deploy")
		dep := &appsv1.Deployment{}
		dep.Name, dep.Namespace = "nats-deploy", ns
		dep.Spec = appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](3), Selector: metav1LabelSelector("nats-deploy"), Template: tmpl,
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{
				MaxSurge: ptr.To(intstr.FromInt32(1)), MaxUnavailable: ptr.To(intstr.FromInt32(0)),
			}},
		}
		if err := lc.Client.Create(context.Background(), dep); err != nil {
			t.Fatal(err)
		}
		old := requireOneCluster(t, ns, "nats-deploy", 3)
		stop := sampleNeverTwo(t, ns, "nats-deploy", framework.NATSViews)
		patch := client.MergeFrom(dep.DeepCopy())
		dep.Spec.Template.Annotations["rollout"] = "1"
		if err := lc.Client.Patch(context.Background(), dep, patch); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(4 * time.Minute)
		for {
			pods, err := framework.RunningReady(context.Background(), lc.Cluster, ns, map[string]string{"app": "nats-deploy"}, 3, 3*time.Minute)
			if err == nil && !slices.ContainsFunc(pods, func(p corev1.Pod) bool {
				return slices.ContainsFunc(old, func(o corev1.Pod) bool { return o.UID == p.UID })
			}) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("rolling update did not replace every pod in 4m: %v", err)
			}
			time.Sleep(time.Second)
		}
		stop()
		for _, p := range requireOneCluster(t, ns, "nats-deploy", 3) {
			requireJoined(t, p)
		}
	})
}

func metav1LabelSelector(app string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}
}

// sampleNeverTwo samples the servers of app (views) every 500ms until stop is
// called, and fails the test if two clusters (two groups of connected
// servers with at least two members each, each holding a live pod) ever
// exist at once. A lone server that is still connecting is not a cluster
// yet; that it joins is what requireOneCluster checks. Pods being deleted
// are asked too, so a new pod that joined a leaving cluster is seen; a
// group of leaving pods only (a full restart's old cluster, winding down)
// is not counted. explain, when given, logs the pods of a split.
func sampleNeverTwo(t *testing.T, ns, app string, views func(context.Context, []corev1.Pod) []framework.ServerView, explain ...func(*testing.T, []corev1.Pod)) (stop func()) {
	t.Helper()
	done := make(chan struct{})
	finished := make(chan struct{})
	samples := 0
	var split string
	var splitPods []corev1.Pod
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			case <-time.After(500 * time.Millisecond):
			}
			list := &corev1.PodList{}
			if err := lc.Client.List(context.Background(), list, client.InNamespace(ns), client.MatchingLabels{"app": app}); err != nil {
				continue
			}
			var pods []corev1.Pod
			leaving := map[string]bool{}
			for _, p := range list.Items {
				if p.Status.PodIP != "" && p.Status.Phase == corev1.PodRunning {
					pods = append(pods, p)
					leaving[p.Name] = p.DeletionTimestamp != nil
				}
			}
			samples++
			var counted [][]string
			for _, c := range framework.Clusters(views(context.Background(), pods)) {
				if len(c) >= 2 && slices.ContainsFunc(c, func(name string) bool { return !leaving[name] }) {
					counted = append(counted, c)
				}
			}
			if len(counted) >= 2 && split == "" {
				// Name each pod's state and decision, so a failure shows
				// how the two clusters were seeded.
				var who []string
				for _, p := range pods {
					log, _ := framework.ContainerLog(context.Background(), lc.Cluster, ns, p.Name, contract.InitContainerName)
					role, seeds, _ := framework.LoggedDecision(log)
					state := ""
					if leaving[p.Name] {
						state = " leaving"
					}
					who = append(who, fmt.Sprintf("%s %s%s (%s, seeds %s)", p.Name, p.Status.PodIP, state, role, seeds))
				}
				split = fmt.Sprintf("%s at %s; %s", framework.DescribeClusters(counted), time.Now().Format("15:04:05.0"), strings.Join(who, "; "))
				splitPods = pods
			}
		}
	}()
	var once sync.Once
	halt := func() { once.Do(func() { close(done); <-finished }) }
	// Also when the test fails before calling stop: no sampling outlives it.
	t.Cleanup(halt)
	return func() {
		halt()
		t.Logf("%d samples of %s", samples, app)
		if split != "" {
			appFigures.split(app)
			for _, e := range explain {
				e(t, splitPods)
			}
			t.Fatalf("two clusters at once: %s", split)
		}
	}
}

// waitDecided waits until pod's seed-discovery decided: the init container
// completed, or the refreshing sidecar passed its startup probe.
func waitDecided(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	waitSeedDiscovery(t, pod, "decide", func(s corev1.ContainerStatus) bool {
		done := s.State.Terminated != nil && s.State.Terminated.ExitCode == 0
		return done || s.Started != nil && *s.Started && s.State.Running != nil
	})
}

// waitInitDone waits until pod's seed-discovery has terminated.
func waitInitDone(t *testing.T, pod *corev1.Pod) *corev1.ContainerStateTerminated {
	t.Helper()
	s := waitSeedDiscovery(t, pod, "finish", func(s corev1.ContainerStatus) bool { return s.State.Terminated != nil })
	return s.State.Terminated
}

// waitSeedDiscovery waits up to 2 minutes until pod's seed-discovery
// status satisfies ok, updates pod and returns that status.
func waitSeedDiscovery(t *testing.T, pod *corev1.Pod, what string, ok func(corev1.ContainerStatus) bool) corev1.ContainerStatus {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got := &corev1.Pod{}
		if err := lc.Client.Get(context.Background(), client.ObjectKeyFromObject(pod), got); err != nil {
			t.Fatal(err)
		}
		for _, s := range got.Status.InitContainerStatuses {
			if s.Name == "seed-discovery" && ok(s) {
				*pod = *got
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: seed-discovery did not %s in 2m: %+v", pod.Name, what, got.Status.InitContainerStatuses)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// containerLog is `kubectl logs POD -c NAME` (framework.ContainerLog).
func containerLog(t *testing.T, ns, pod, container string) string {
	t.Helper()
	log, err := framework.ContainerLog(context.Background(), lc.Cluster, ns, pod, container)
	if err != nil {
		t.Fatal(err)
	}
	return log
}

// requireJoined checks that a pod started beside a running cluster did not
// found: a joiner of the live peers, or, when it came first in the order
// and the live peers were all its seeds, a seed with the order's seeds.
func requireJoined(t *testing.T, pod corev1.Pod) {
	t.Helper()
	log := containerLog(t, pod.Namespace, pod.Name, "seed-discovery")
	role, seeds, ok := framework.LoggedDecision(log)
	if !ok || (role != "joiner" && role != "seed") {
		t.Fatalf("%s decided role %s (seeds %s), want joiner or seed (it started beside a running cluster):\n%s", pod.Name, role, seeds, log)
	}
}

// requireDecision checks the decision seed-discovery logged, as `kubectl
// logs POD -c seed-discovery` shows it, and returns the seeds.
func requireDecision(t *testing.T, pod corev1.Pod, want string) string {
	t.Helper()
	log := containerLog(t, pod.Namespace, pod.Name, "seed-discovery")
	role, seeds, ok := framework.LoggedDecision(log)
	if !ok {
		t.Fatalf("%s: no decision in `kubectl logs -c seed-discovery`:\n%s", pod.Name, log)
	}
	if "role "+role != want {
		t.Fatalf("%s decided role %s (seeds %s), want %s", pod.Name, role, seeds, want)
	}
	return seeds
}

// TestRealNodeOnlyAKubeletShows: what the simulated cluster cannot show.
func TestRealNodeOnlyAKubeletShows(t *testing.T) {
	ns := restrictedNamespace(t)
	t.Run("the injected container runs from the image as 65532, read-only, restricted", func(t *testing.T) {
		natsRC(t, ns, "nats-check", 1)
		pod := runningOn(t, ns, "nats-check", 1)[0]
		var init corev1.ContainerStatus
		for _, s := range pod.Status.InitContainerStatuses {
			if s.Name == "seed-discovery" {
				init = s
			}
		}
		// The example runs it as the refreshing sidecar: decided
		// (started) and still running beside the server.
		if init.State.Running == nil || init.Started == nil || !*init.Started || init.RestartCount != 0 {
			t.Fatalf("seed-discovery is not a running sidecar that decided: %+v (restarts %d)", init.State, init.RestartCount)
		}
		if !strings.HasPrefix(init.ImageID, images.Repository+"@sha256:") || !strings.HasSuffix(images.Peergroup, strings.TrimPrefix(init.ImageID, images.Repository)) {
			t.Fatalf("seed-discovery ran image %s, want %s", init.ImageID, images.Peergroup)
		}
		if init.User == nil || init.User.Linux == nil || init.User.Linux.UID != 65532 || init.User.Linux.GID != 65532 {
			t.Fatalf("seed-discovery ran as %+v, want uid and gid 65532", init.User)
		}
		readOnly, err := lc.Node.RootReadOnly(strings.TrimPrefix(init.ContainerID, "containerd://"))
		if err != nil || !readOnly {
			t.Fatalf("seed-discovery's root filesystem read-only in its runtime spec: %v (%v)", readOnly, err)
		}
		// The app reads the seeds through its read-only mount.
		if log := containerLog(t, ns, pod.Name, "nats"); !strings.Contains(log, "seeds "+pod.Status.PodIP+";") {
			t.Fatalf("the app did not read its seeds from the mount:\n%s", log)
		}
	})
	t.Run("a seed-discovery that fails leaves its reason in the termination message", func(t *testing.T) {
		// A user's own headless Service of that name selects other pods:
		// the pod's IP never appears under it.
		svc := &corev1.Service{}
		svc.Name, svc.Namespace = "elsewhere", ns
		svc.Spec.ClusterIP = corev1.ClusterIPNone
		svc.Spec.Selector = map[string]string{"app": "someone-else"}
		svc.Spec.Ports = []corev1.ServicePort{{Name: "cluster", Port: 6222}}
		if err := lc.Client.Create(context.Background(), svc); err != nil {
			t.Fatal(err)
		}
		tmpl := natsTemplate(t, "nats-lost")
		tmpl.Annotations["peergroup.dev/service"] = "elsewhere"
		tmpl.Annotations["peergroup.dev/timeout"] = "10s"
		// The init container's failure: a sidecar would be restarted.
		delete(tmpl.Annotations, "peergroup.dev/refresh")
		pod := &corev1.Pod{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec}
		pod.Name, pod.Namespace = "nats-lost", ns
		pod.Spec.RestartPolicy = corev1.RestartPolicyNever
		if err := lc.Client.Create(context.Background(), pod); err != nil {
			t.Fatal(err)
		}
		term := waitInitDone(t, pod)
		if term.ExitCode != 3 || !strings.Contains(term.Message, "never") {
			t.Fatalf("seed-discovery terminated with exit %d, message %q; want exit 3 and the reason", term.ExitCode, term.Message)
		}
		t.Logf("termination message (kubectl describe): %s", term.Message)
	})
}

// TestIslandsAreNamed is a test of the test: with a seed-discovery that
// writes only the pod's own IP, every server founds its own cluster, and
// the check of scenario a fails naming each island.
func TestIslandsAreNamed(t *testing.T) {
	ns := restrictedNamespace(t)
	tmpl := natsTemplate(t, "nats-broken")
	restricted := tmpl.Spec.Containers[0].SecurityContext
	// The pod brings its own (broken) seed-discovery, so the webhook sees
	// it as injected and leaves it alone.
	tmpl.Spec.InitContainers = []corev1.Container{{
		Name: "seed-discovery", Image: images.NATS, Command: []string{"sh", "-c", `echo "$POD_IP" > /var/run/peergroup/seeds`},
		Env:             []corev1.EnvVar{{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}}},
		VolumeMounts:    []corev1.VolumeMount{{Name: "peergroup-seeds", MountPath: "/var/run/peergroup"}},
		SecurityContext: restricted,
	}}
	tmpl.Spec.Volumes = []corev1.Volume{{Name: "peergroup-seeds", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	app := &tmpl.Spec.Containers[0]
	app.Env = append(app.Env, corev1.EnvVar{Name: "PEERGROUP_SEEDS_FILE", Value: "/var/run/peergroup/seeds"}, corev1.EnvVar{Name: "NATS_SERVICE", Value: "nats"})
	app.VolumeMounts = []corev1.VolumeMount{{Name: "peergroup-seeds", MountPath: "/var/run/peergroup", ReadOnly: true}}
	rc := &corev1.ReplicationController{}
	rc.Name, rc.Namespace = "nats-broken", ns
	rc.Spec.Replicas = ptr.To[int32](3)
	rc.Spec.Selector = map[string]string{"app": "nats-broken"}
	rc.Spec.Template = &tmpl
	if err := lc.Client.Create(context.Background(), rc); err != nil {
		t.Fatal(err)
	}
	pods, _, err := waitOneCluster(t, ns, "nats-broken", 3, 20*time.Second)
	if err == nil {
		t.Fatal("servers that were each given only their own IP formed one cluster: the check cannot see islands")
	}
	want := make([]string, len(pods))
	for i, p := range pods {
		want[i] = "[" + p.Name + "]"
	}
	if !strings.Contains(err.Error(), "islands "+strings.Join(want, " ")) {
		t.Fatalf("the failure does not name the three islands %v: %v", want, err)
	}
	t.Logf("the check fails as it should: %v", err)
}

// TestRealNATSThirtyAtOnce: a Deployment of the NATS example created with
// 30 replicas at once on the real node forms one cluster — every server
// answers and their routes connect them all, never two clusters — beside a
// 3-pod group of the same run. It logs, for test/bench/RESULTS.md, the time
// from the last pod started to one cluster, to the full mesh of routes
// (every server routing to every other, which NATS builds by gossip; not
// asserted: it is NATS's, not the seeds'), and each pod's DNS queries until
// it decided. No timing is asserted.
func TestRealNATSThirtyAtOnce(t *testing.T) {
	if !*scaleRun {
		// Not part of `make test`: 30 servers at once on this 2-core node
		// left it answering no DNS for minutes to the tests after it (a
		// CI run, 2026-12-07). `make bench-scale` runs it alone.
		t.Skip("a measurement: make bench-scale (go test ./test/cluster -run TestRealNATSThirtyAtOnce -args -scale)")
	}
	for _, n := range []int{3, 30} {
		t.Run(fmt.Sprintf("%d at once", n), func(t *testing.T) {
			ns := restrictedNamespace(t)
			app := fmt.Sprintf("nats-%d", n)
			dep := &appsv1.Deployment{}
			dep.Name, dep.Namespace = app, ns
			dep.Spec = appsv1.DeploymentSpec{Replicas: ptr.To(int32(n)), Selector: metav1LabelSelector(app), Template: natsTemplate(t, app)}
			stop := sampleNeverTwo(t, ns, app, framework.NATSViews)
			if err := lc.Client.Create(context.Background(), dep); err != nil {
				t.Fatal(err)
			}
			pods, err := framework.RunningReady(context.Background(), lc.Cluster, ns, map[string]string{"app": app}, n, 5*time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			started := framework.LastStarted(pods)
			var connected, meshed time.Duration
			var last error
			for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline) && meshed == 0; time.Sleep(500 * time.Millisecond) {
				views := framework.NATSViews(context.Background(), pods)
				if clusters := framework.Clusters(views); connected == 0 && len(clusters) == 1 && len(clusters[0]) == n {
					connected = time.Since(started)
				}
				if last = framework.OneCluster(views); last == nil {
					meshed = time.Since(started)
				}
			}
			stop()
			if connected == 0 {
				logDecisions(t, pods[:min(len(pods), 5)])
				t.Fatalf("%d NATS pods created at once are not one cluster after 3m: %v", n, last)
			}
			mesh := "full mesh " + meshed.Round(100*time.Millisecond).String()
			if meshed == 0 {
				mesh = fmt.Sprintf("full mesh not reached in 3m (%v)", last)
			}
			var queries []int
			for _, p := range pods {
				if q, ok := framework.LoggedQueries(containerLog(t, ns, p.Name, "seed-discovery")); ok {
					queries = append(queries, q)
				}
			}
			slices.Sort(queries)
			if len(queries) != n {
				t.Fatalf("%d of %d pods logged their DNS queries", len(queries), n)
			}
			line := fmt.Sprintf("%d NATS pods created at once (stable-margin 3s): one cluster %s after the last started, %s; DNS queries per pod until it decided p50 %d, max %d",
				n, connected.Round(100*time.Millisecond), mesh, queries[n/2], queries[n-1])
			t.Log(line)
			scaleFigures.add(line)
		})
	}
}

// scaleRun turns on TestRealNATSThirtyAtOnce (make bench-scale).
var scaleRun = flag.Bool("scale", false, "run TestRealNATSThirtyAtOnce: 30 NATS pods at once on the real node")

// scaleFigures are TestRealNATSThirtyAtOnce's lines, printed by TestMain.
var scaleFigures lines

type lines struct {
	mu sync.Mutex
	l  []string
}

func (l *lines) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.l = append(l.l, s)
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.l, "; ")
}

// requireStatus checks `peergroup status` (inspect.Status, through the API
// server and seed-discovery's logs the kubelet serves) against the group:
// every pod a ready, injected member with a role, the founder the founder,
// one seed list, the refreshing sidecars seeing every pod, nothing to act
// on.
func requireStatus(t *testing.T, ns, founder string, pods []corev1.Pod) {
	t.Helper()
	ctx := context.Background()
	logs := func(ctx context.Context, ns, pod, container string) (string, error) {
		return framework.ContainerLog(ctx, lc.Cluster, ns, pod, container)
	}
	// The sidecars log a peer change within their refresh (5 s) of the
	// last pod's arrival.
	var s inspect.GroupStatus
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		if s, err = inspect.Status(ctx, lc.Client, logs, ns, "nats", time.Now()); err != nil {
			t.Fatal(err)
		}
		all := len(s.Members) == len(pods)
		for _, m := range s.Members {
			all = all && m.Peers == len(pods)
		}
		if all || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	if len(s.Members) != len(pods) || !s.OneSeedList || len(s.Problems) > 0 {
		t.Fatalf("status %+v", s)
	}
	for _, m := range s.Members {
		want := map[bool]string{true: "founder", false: m.Role}[m.Pod == founder]
		if !m.Ready || !m.Injected || m.Role == "" || m.Role != want || len(m.Problems) > 0 || m.Peers != len(pods) {
			t.Errorf("status of %s: %+v", m.Pod, m)
		}
	}
}
