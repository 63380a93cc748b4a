package cluster

// Seeds for a pod's whole life, on the real node: the refreshing sidecar
// keeps every member's peer files equal to the group while it scales, a
// Job with the sidecar completes, a mesh-like init container before
// seed-discovery is reported instead of founding a second cluster (and
// harmless with init-first), and a terminating peer is never a seed.

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/discovery"
	"github.com/peergroup/peergroup/test/framework"
)

// peerFilesBound is how long after the group's pods settle every member's
// peer files may still be behind: the refresh interval (5s, the shortest
// allowed) with its +20% jitter, the endpoints reaching CoreDNS, and a
// round of margin.
const peerFilesBound = 15 * time.Second

// readSeedFile reads a file seed-discovery wrote in pod's seeds volume, as
// the pod's containers see it.
func readSeedFile(t *testing.T, pod corev1.Pod, name string) string {
	t.Helper()
	b, err := lc.Node.EmptyDirFile(string(pod.UID), contract.SeedsVolumeName, name)
	if err != nil {
		t.Fatalf("%s: %v", pod.Name, err)
	}
	return string(b)
}

// waitPeerFiles waits until every pod's peer-hosts file lists exactly the
// pods' IPs, and returns how long that took.
func waitPeerFiles(t *testing.T, pods []corev1.Pod) time.Duration {
	t.Helper()
	var want []string
	for _, p := range pods {
		want = append(want, p.Status.PodIP)
	}
	slices.Sort(want)
	start := time.Now()
	for {
		behind := ""
		for _, p := range pods {
			b, err := lc.Node.EmptyDirFile(string(p.UID), contract.SeedsVolumeName, contract.PeerHostsFileName)
			got := strings.Fields(string(b))
			slices.Sort(got)
			if err != nil || !slices.Equal(got, want) {
				behind = fmt.Sprintf("%s lists %v (%v)", p.Name, got, err)
				break
			}
		}
		if behind == "" {
			return time.Since(start)
		}
		if time.Since(start) > peerFilesBound {
			t.Fatalf("peer files not equal to the group %v within %s: %s", want, peerFilesBound, behind)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestRealSidecarKeepsPeersCurrent: NATS pods with the refreshing sidecar,
// scaled 3 → 5 → 2; after each step every member's peer-hosts file equals
// the live group within peerFilesBound, its seeds never change, and the
// servers form one cluster.
func TestRealSidecarKeepsPeersCurrent(t *testing.T) {
	ns := restrictedNamespace(t)
	tmpl := natsTemplate(t, "nats-fresh") // the example runs the sidecar
	if tmpl.Annotations[contract.Refresh.Annotation] != "5s" {
		t.Fatalf("docs/examples/nats.yaml: %s %q, want 5s", contract.Refresh.Annotation, tmpl.Annotations[contract.Refresh.Annotation])
	}
	rc := createRC(t, ns, "nats-fresh", 3, tmpl)
	seeds := map[string]string{} // by pod UID: the seeds file when first seen
	for i, n := range []int{3, 5, 2} {
		scaleRC(t, rc, int32(n))
		var pods []corev1.Pod
		if i < 2 {
			pods = requireOneCluster(t, ns, "nats-fresh", n)
		} else {
			// A scale down: no pod started, so no convergence figure.
			var err error
			if pods, _, err = waitOneCluster(t, ns, "nats-fresh", n, oneClusterDeadline); err != nil {
				t.Fatal(err)
			}
		}
		took := waitPeerFiles(t, pods)
		t.Logf("scale to %d: every member's peer-hosts equals the group %s after the servers formed one cluster", n, took.Round(100*time.Millisecond))
		figures.addRefresh(took)
		for _, p := range pods {
			got := readSeedFile(t, p, contract.SeedsFileName)
			if before, seen := seeds[string(p.UID)]; seen && before != got {
				t.Errorf("%s: seeds changed from %q to %q", p.Name, before, got)
			}
			seeds[string(p.UID)] = got
			// The app started after the first decision: it read seeds.
			if log := containerLog(t, ns, p.Name, "nats"); !strings.Contains(log, "seeds "+strings.TrimSpace(got)+";") {
				t.Errorf("%s: the app did not start with the seeds %q:\n%s", p.Name, got, firstLines(log, 3))
			}
			requireSidecarRunning(t, p)
		}
	}
}

// requireSidecarRunning checks that seed-discovery is a native sidecar
// still running beside the app.
func requireSidecarRunning(t *testing.T, pod corev1.Pod) {
	t.Helper()
	for _, s := range pod.Status.InitContainerStatuses {
		if s.Name == contract.InitContainerName {
			if s.State.Running == nil || s.Started == nil || !*s.Started {
				t.Errorf("%s: seed-discovery is not running as a sidecar: %+v", pod.Name, s.State)
			}
			return
		}
	}
	t.Errorf("%s: no seed-discovery status", pod.Name)
}

// TestRealSidecarJobCompletes: a Job whose pod has the refreshing sidecar
// completes; the sidecar stops with the pod, and the job's container read
// the seeds the sidecar decided before it started.
func TestRealSidecarJobCompletes(t *testing.T) {
	ns := restrictedNamespace(t)
	tmpl := natsTemplate(t, "nats-job")
	tmpl.Annotations[contract.Refresh.Annotation] = "5s"
	delete(tmpl.Annotations, contract.PeerPort.Annotation)
	c := &tmpl.Spec.Containers[0]
	c.Command, c.Args = []string{"sh", "-c", `echo "seeds $(cat "$PEERGROUP_SEEDS_FILE")"; sleep 2`}, nil
	c.ReadinessProbe = nil
	tmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
	job := &batchv1.Job{}
	job.Name, job.Namespace = "nats-job", ns
	job.Spec.Template = tmpl
	job.Spec.BackoffLimit = ptr.To[int32](0)
	if err := lc.Client.Create(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if err := lc.Client.Get(context.Background(), client.ObjectKeyFromObject(job), job); err != nil {
			t.Fatal(err)
		}
		if job.Status.Succeeded == 1 {
			break
		}
		if job.Status.Failed > 0 || time.Now().After(deadline) {
			t.Fatalf("job did not complete: %+v", job.Status)
		}
		time.Sleep(time.Second)
	}
	pods := &corev1.PodList{}
	if err := lc.Client.List(context.Background(), pods, client.InNamespace(ns), client.MatchingLabels{"job-name": job.Name}); err != nil || len(pods.Items) != 1 {
		t.Fatalf("job pods: %v %v", pods.Items, err)
	}
	pod := pods.Items[0]
	if pod.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("job pod phase %s", pod.Status.Phase)
	}
	if log := containerLog(t, ns, pod.Name, "nats"); !strings.Contains(log, "seeds "+pod.Status.PodIP) {
		t.Errorf("the job's container did not read the seeds:\n%s", log)
	}
	for _, s := range pod.Status.InitContainerStatuses {
		if s.Name == contract.InitContainerName && (s.State.Terminated == nil || s.State.Terminated.ExitCode != 0) {
			t.Errorf("the sidecar did not stop cleanly with the pod: %+v", s.State)
		}
	}
}

// meshPod is a NATS pod with a stable name under the Service (hostname and
// subdomain, as a StatefulSet's pod has), so the order is by ordinal:
// mesh-0 comes first. With blocked, a mesh-like init container runs before
// seed-discovery and drops the pod's traffic to the pod range (it keeps
// the bridge address: DNS and the API server) until the app container
// lifts it, as a mesh's proxy starting with the app would.
func meshPod(t *testing.T, ns, name string, blocked, initFirst bool) *corev1.Pod {
	t.Helper()
	tmpl := natsTemplate(t, "nats-mesh")
	tmpl.Annotations[contract.Timeout.Annotation] = "20s"
	// The init container, whose failure ends the pod (a sidecar would be
	// restarted).
	delete(tmpl.Annotations, contract.Refresh.Annotation)
	if initFirst {
		tmpl.Annotations[contract.InitFirstAnnotation] = "true"
	}
	pod := &corev1.Pod{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec}
	pod.Name, pod.Namespace = name, ns
	pod.Spec.Hostname, pod.Spec.Subdomain = name, "nats"
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	if blocked {
		// The more specific prohibit routes win over the pod's /24 route:
		// every peer is refused at once, as by a redirect to a proxy that
		// does not listen yet.
		const block = "ip route add prohibit 10.246.0.0/25 && ip route add prohibit 10.246.0.128/25 && ip route add 10.246.0.1/32 dev eth0"
		const lift = "ip route del prohibit 10.246.0.0/25; ip route del prohibit 10.246.0.128/25\n"
		root := &corev1.SecurityContext{RunAsUser: ptr.To[int64](0), RunAsNonRoot: ptr.To(false),
			Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN"}}}
		pod.Spec.InitContainers = []corev1.Container{{Name: "istio-init", Image: images.NATS, Command: []string{"sh", "-c", block}, SecurityContext: root}}
		app := &pod.Spec.Containers[0]
		app.Args[0] = lift + app.Args[0]
		app.SecurityContext = root
	}
	if err := lc.Client.Create(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	return pod
}

// TestRealMeshInitContainer: with a mesh-like init container before it,
// seed-discovery of the first pod in the order reaches no running peer;
// it does not found beside them but fails with the reason, naming
// init-first. With init-first it runs before the mesh's container and
// joins: one cluster.
func TestRealMeshInitContainer(t *testing.T) {
	ns := newNamespace(t, nil) // NET_ADMIN for the mesh's stand-in
	meshPod(t, ns, "mesh-1", false, false)
	runningOn(t, ns, "nats-mesh", 1)
	meshPod(t, ns, "mesh-2", false, false)
	requireOneCluster(t, ns, "nats-mesh", 2)

	blocked := meshPod(t, ns, "mesh-0", true, false)
	term := waitInitDone(t, blocked)
	if term.ExitCode != discovery.ExitNotStable || !strings.Contains(term.Message, "none answers on the peer port") || !strings.Contains(term.Message, contract.InitFirstAnnotation) {
		t.Fatalf("seed-discovery behind a mesh's init container: exit %d, %q; want exit %d, not founding, naming %s", term.ExitCode, term.Message, discovery.ExitNotStable, contract.InitFirstAnnotation)
	}
	t.Logf("reported: %s", term.Message)
	if err := lc.Client.Delete(context.Background(), blocked); err != nil {
		t.Fatal(err)
	}
	waitGone(t, blocked)

	first := meshPod(t, ns, "mesh-0", true, true)
	pods := requireOneCluster(t, ns, "nats-mesh", 3)
	for _, p := range pods {
		if p.Name == first.Name {
			requireDecision(t, p, "role joiner")
		}
	}
}

func waitGone(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		err := lc.Client.Get(context.Background(), client.ObjectKeyFromObject(pod), &corev1.Pod{})
		if client.IgnoreNotFound(err) == nil && err != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not gone after 1m", pod.Name)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestRealTerminatingPeerIsNoSeed: a pod that is terminating leaves its
// group's DNS at once (the webhook sets its peer label to "terminating",
// which the Service no longer selects), though it lingers in its grace
// period. A pod deciding meanwhile never sees it and joins the others.
func TestRealTerminatingPeerIsNoSeed(t *testing.T) {
	ns := restrictedNamespace(t)
	tmpl := natsTemplate(t, "nats-term")
	// The server runs in the background; SIGTERM stops it and the pod
	// lingers for a minute.
	app := &tmpl.Spec.Containers[0]
	app.Args[0] = strings.Replace(app.Args[0], "exec nats-server", "nats-server", 1)
	app.Args[0] = strings.Replace(app.Args[0], `--http_port 8222`, "--http_port 8222 &\n"+`pid=$!; trap 'kill $pid; echo stopped; sleep 60; exit 0' TERM; while :; do sleep 1; done`, 1)
	tmpl.Spec.TerminationGracePeriodSeconds = ptr.To[int64](90)
	createRC(t, ns, "nats-term", 3, tmpl)
	pods := requireOneCluster(t, ns, "nats-term", 3)
	// The lowest IP: the pod a joiner deciding by order alone would name
	// first.
	slices.SortFunc(pods, func(a, b corev1.Pod) int {
		return netip.MustParseAddr(a.Status.PodIP).Compare(netip.MustParseAddr(b.Status.PodIP))
	})
	leaving := pods[0]
	if err := lc.Client.Delete(context.Background(), &leaving); err != nil {
		t.Fatal(err)
	}
	waitLogged(t, ns, leaving.Name, "nats", "stopped")
	late := &corev1.Pod{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec}
	late.Name, late.Namespace = "nats-term-late", ns
	late.Labels = map[string]string{"app": "nats-term-late", contract.GroupLabel: "nats"}
	if err := lc.Client.Create(context.Background(), late); err != nil {
		t.Fatal(err)
	}
	waitDecided(t, late)
	seeds := requireDecision(t, *late, "role joiner")
	if slices.Contains(strings.Split(seeds, ","), leaving.Status.PodIP) {
		t.Fatalf("the joiner took the terminating pod %s (%s) as a seed: %s", leaving.Name, leaving.Status.PodIP, seeds)
	}
	if log := containerLog(t, ns, late.Name, contract.InitContainerName); strings.Contains(log, leaving.Status.PodIP+" ") || strings.Contains(log, leaving.Status.PodIP+"\n") {
		t.Fatalf("the terminating pod %s (%s) was still in the group's DNS:\n%s", leaving.Name, leaving.Status.PodIP, log)
	}
	if got := peerLabel(t, ns, leaving.Name); got != contract.PeerTerminatingValue {
		t.Fatalf("the terminating pod's %s = %q, want %q", contract.PeerLabel, got, contract.PeerTerminatingValue)
	}
	t.Logf("joiner's seeds %s; the terminating pod %s was not in its view", seeds, leaving.Status.PodIP)
	// And it joined: one cluster of the two that stay, the RC's
	// replacement and the late pod.
	if _, _, err := framework.WaitOneNATSCluster(context.Background(), lc.Cluster, ns, map[string]string{contract.GroupLabel: "nats"}, 4, oneClusterDeadline); err != nil {
		t.Fatal(err)
	}
}

// fullRestartRuns is how many full restarts TestRealFullRestartSeedsOnly
// makes; every one must end in one cluster.
const fullRestartRuns = 10

// TestRealFullRestartSeedsOnly: a server that reads only the seeds written
// once (seed-hostports, no peer files, no fallback: as Cassandra, Akka and
// Redis are configured) and keeps its peer port open for 6 s after SIGTERM
// survives full restarts (every pod deleted at once) as one cluster. Before
// terminating pods left DNS, each replacement saw the old pods still
// answering on the peer port, took them as seeds, and ended an island when
// they went.
func TestRealFullRestartSeedsOnly(t *testing.T) {
	ns := restrictedNamespace(t)
	tmpl := natsTemplate(t, "nats-restart")
	delete(tmpl.Annotations, contract.Refresh.Annotation)
	app := &tmpl.Spec.Containers[0]
	app.Args = []string{`routes=""
for hp in $(cat "$(dirname "$PEERGROUP_SEEDS_FILE")/seed-hostports"); do routes="$routes,nats-route://$hp"; done
echo "routes ${routes#,}"
nats-server --name "$POD_NAME" --cluster_name peers --cluster nats://0.0.0.0:6222 --routes "${routes#,}" --http_port 8222 &
pid=$!
trap 'echo leaving; sleep 6; kill $pid; wait $pid; exit 0' TERM
while :; do sleep 1; done`}
	app.ReadinessProbe = nil
	tmpl.Spec.TerminationGracePeriodSeconds = ptr.To[int64](30)
	createRC(t, ns, "nats-restart", 3, tmpl)
	requireOneCluster(t, ns, "nats-restart", 3)
	for run := 1; run <= fullRestartRuns; run++ {
		old := runningOn(t, ns, "nats-restart", 3)
		oldIPs := map[string]string{}
		for _, p := range old {
			oldIPs[p.Status.PodIP] = p.Name
		}
		if err := lc.Client.DeleteAllOf(context.Background(), &corev1.Pod{}, client.InNamespace(ns), client.MatchingLabels{"app": "nats-restart"}); err != nil {
			t.Fatal(err)
		}
		pods, took, err := waitOneCluster(t, ns, "nats-restart", 3, oneClusterDeadline)
		if err != nil {
			logDecisions(t, pods)
			t.Fatalf("run %d of %d: %v", run, fullRestartRuns, err)
		}
		dnsErrors := 0
		for _, p := range pods {
			if _, ok := oldIPs[p.Status.PodIP]; ok {
				t.Fatalf("run %d: pod %s has an old pod's address %s: not a full restart", run, p.Name, p.Status.PodIP)
			}
			log := containerLog(t, ns, p.Name, contract.InitContainerName)
			// Replacements once retried 8 DNS timeouts (35 s): the
			// bridge's MAC changed under the pods (RealNodeBridgeMAC).
			dnsErrors += strings.Count(log, "DNS error")
			_, seeds, ok := framework.LoggedDecision(log)
			if !ok {
				t.Fatalf("run %d: %s logged no decision", run, p.Name)
			}
			for _, s := range strings.Split(seeds, ",") {
				if name, ok := oldIPs[s]; ok {
					logDecisions(t, pods)
					t.Fatalf("run %d: %s took the terminating %s (%s) as a seed: %s", run, p.Name, name, s, seeds)
				}
			}
		}
		t.Logf("run %d of %d: one cluster of 3 after %s, no terminating seed, %d DNS errors before the decisions", run, fullRestartRuns, took.Round(100*time.Millisecond), dnsErrors)
		// Before the bridge had a fixed MAC, 2 or 3 runs in 10 lost CoreDNS
		// for about 30 s (7 to 25 timeouts): a run with a few is that again.
		if dnsErrors >= 3 {
			t.Errorf("run %d: %d DNS errors before the decisions: the pods lost CoreDNS on the bridge", run, dnsErrors)
		}
		figures.add(t, took, pods)
	}
}

// peerLabel reads a pod's peergroup.dev/peer label.
func peerLabel(t *testing.T, ns, name string) string {
	t.Helper()
	p := &corev1.Pod{}
	if err := lc.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, p); err != nil {
		t.Fatal(err)
	}
	return p.Labels[contract.PeerLabel]
}

// waitLogged waits until a container's log contains want.
func waitLogged(t *testing.T, ns, pod, container, want string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(containerLog(t, ns, pod, container), want) {
		if time.Now().After(deadline) {
			t.Fatalf("%s/%s never logged %q", pod, container, want)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
