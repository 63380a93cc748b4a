package framework

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// KwokModule holds kwok's stage files (kustomize/stage/...).
const KwokModule = "sigs.k8s.io/kwok@v0.8.0"

// SimulatedComponents are the binaries a LocalCluster needs besides
// kube-apiserver and etcd; hack/controlplane/build.sh builds them.
var SimulatedComponents = []string{"kube-controller-manager", "kube-scheduler", "kwok", "coredns"}

// LocalCluster is a whole cluster on loopback, every component real and
// built from source: kube-apiserver + etcd, kube-controller-manager,
// kube-scheduler, kwok standing in for the kubelet (pods get IPs and run),
// and CoreDNS serving cluster.local from the API server. Pod IPs are data:
// nothing here ever connects to them.
type LocalCluster struct {
	*Cluster
	Kubeconfig string
	// DNSAddr is CoreDNS's 127.0.0.1:port.
	DNSAddr string
	LogDir  string
	// Node is the real node (kubelet, containerd, runc, CNI), when asked
	// for; nil otherwise.
	Node *RealNode
	// ReadyIn is how long the start took (the wait for the node lock not
	// counted).
	ReadyIn time.Duration
	// bridgeProxy forwards the real node's pods to the API server.
	bridgeProxy *Proxy
	// mirror stands in for ghcr.io for Shell's commands (the chart).
	mirror *RegistryMirror
	procs  []*component
	assets string
}

// component is one running binary; done closes when it exits.
type component struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// LocalClusterOptions configures StartLocalCluster.
type LocalClusterOptions struct {
	LogDir string
	Nodes  int
	// Progress gets one line per step.
	Progress io.Writer
	// RealNode adds a real node beside kwok's: kubelet, containerd, runc
	// and a CNI bridge on this machine (see RealNode), with CoreDNS
	// serving its pods on the bridge address.
	RealNode bool
	// RealNodeOnly runs the real node alone, untainted, without kwok's
	// nodes: every pod runs for real, from manifests as users write them.
	RealNodeOnly bool
	// SecondRealNode adds a second real node (AddSecondNode) on the same
	// bridge, and runs the control plane with TestNodeLifecycle.
	SecondRealNode bool
}

// NodeLifecycle is how fast the control plane gives up on a node that
// stops reporting: the node controller marks it unreachable (taints it,
// its pods not ready) GracePeriod after its last lease renewal, checking
// every MonitorPeriod; its pods are evicted Toleration later (the
// DefaultTolerationSeconds admission plugin's toleration of the
// unreachable taint); the kubelet renews its lease every LeaseSeconds/4.
type NodeLifecycle struct {
	MonitorPeriod, GracePeriod, Toleration time.Duration
	LeaseSeconds                           int
}

var (
	// DefaultNodeLifecycle is Kubernetes' defaults (v1.37).
	DefaultNodeLifecycle = NodeLifecycle{MonitorPeriod: 5 * time.Second, GracePeriod: 50 * time.Second, Toleration: 300 * time.Second, LeaseSeconds: 40}
	// TestNodeLifecycle is the two-node suites': a lost node's pods leave
	// in about 40 s instead of about 6 min, the same sequence scaled.
	TestNodeLifecycle = NodeLifecycle{MonitorPeriod: 2 * time.Second, GracePeriod: 10 * time.Second, Toleration: 30 * time.Second, LeaseSeconds: 8}
)

// StartLocalCluster starts all components and waits until the fake nodes
// are Ready and CoreDNS answers.
func StartLocalCluster(ctx context.Context, o LocalClusterOptions) (_ *LocalCluster, err error) {
	if o.SecondRealNode {
		o.RealNode = true
	}
	if o.RealNodeOnly {
		o.RealNode, o.Nodes = true, 0
	} else if o.Nodes == 0 {
		o.Nodes = 2
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	say := func(format string, args ...any) { fmt.Fprintf(o.Progress, "    "+format+"\n", args...) }
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	for _, bin := range SimulatedComponents {
		if _, err := os.Stat(filepath.Join(assets, bin)); err != nil {
			return nil, fmt.Errorf("%s missing in %s: run `hack/controlplane/build.sh %s`", bin, assets, strings.Join(SimulatedComponents, " "))
		}
	}
	if err := os.MkdirAll(o.LogDir, 0o755); err != nil {
		return nil, err
	}
	t0 := time.Now()
	var node *RealNode
	if o.RealNode {
		if node, err = PrepareRealNode(ctx, assets, o.LogDir, say); err != nil {
			return nil, err
		}
		node.Tainted = !o.RealNodeOnly
		if o.SecondRealNode {
			node.LeaseSeconds = TestNodeLifecycle.LeaseSeconds
			second, err := node.AddSecondNode()
			if err != nil {
				node.Stop()
				return nil, err
			}
			second.LeaseSeconds = TestNodeLifecycle.LeaseSeconds
		}
		t0 = time.Now() // not counting the wait for the node lock
	}
	say("kube-apiserver + etcd")
	var bridgeErr error
	base, err := StartClusterWith(func(env *envtest.Environment) {
		if node == nil {
			return
		}
		// The kubelet's node IP cannot be loopback, so the API server
		// reaches it (logs, exec) by its hostname, localhost.
		env.ControlPlane.GetAPIServer().Configure().Set("kubelet-preferred-address-types", "Hostname")
		bridgeErr = serveOnBridge(env, filepath.Join(o.LogDir, "apiserver-certs"))
		if o.SecondRealNode {
			tol := strconv.Itoa(int(TestNodeLifecycle.Toleration.Seconds()))
			env.ControlPlane.GetAPIServer().Configure().Set("default-not-ready-toleration-seconds", tol)
			env.ControlPlane.GetAPIServer().Configure().Set("default-unreachable-toleration-seconds", tol)
		}
		if o.RealNodeOnly {
			// Pods as users run them get their ServiceAccount token (envtest
			// turns the admission plugin off; the chart's webhook needs it).
			env.ControlPlane.GetAPIServer().Configure().Set("disable-admission-plugins", "")
		}
	})
	if err == nil && bridgeErr != nil {
		_ = base.Stop()
		err = bridgeErr
	}
	if err != nil {
		if node != nil {
			node.Stop()
		}
		return nil, err
	}
	lc := &LocalCluster{Cluster: base, LogDir: o.LogDir, assets: assets, Kubeconfig: filepath.Join(o.LogDir, "kubeconfig"), Node: node}
	defer func() {
		if err != nil {
			lc.Stop()
		}
	}()
	if err := lc.WriteKubeconfig(lc.Kubeconfig); err != nil {
		return nil, err
	}
	kc := "--kubeconfig=" + lc.Kubeconfig

	say("kube-controller-manager (replication, replicaset, deployment, statefulset, endpointslice, namespace, garbage collector, ...)")
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	kcmArgs := []string{kc,
		"--authentication-kubeconfig=" + lc.Kubeconfig, "--authorization-kubeconfig=" + lc.Kubeconfig,
		"--controllers=*,-serviceaccount-token", "--use-service-account-credentials=false",
		"--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(port),
		"--concurrent-replicaset-syncs=5", "--concurrent-statefulset-syncs=5"}
	if o.SecondRealNode {
		kcmArgs = append(kcmArgs, "--node-monitor-period="+TestNodeLifecycle.MonitorPeriod.String(),
			"--node-monitor-grace-period="+TestNodeLifecycle.GracePeriod.String())
	}
	if err := lc.start("kube-controller-manager", kcmArgs...); err != nil {
		return nil, err
	}

	say("kube-scheduler")
	if port, err = FreePort(); err != nil {
		return nil, err
	}
	if err := lc.start("kube-scheduler", kc,
		"--authentication-kubeconfig="+lc.Kubeconfig, "--authorization-kubeconfig="+lc.Kubeconfig,
		"--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(port)); err != nil {
		return nil, err
	}

	if o.Nodes > 0 {
		say("kwok as the kubelet of %d fake nodes", o.Nodes)
		stages, err := kwokStages()
		if err != nil {
			return nil, err
		}
		for i := range o.Nodes {
			if err := lc.createFakeNode(ctx, fmt.Sprintf("kwok-node-%d", i)); err != nil {
				return nil, err
			}
		}
		if port, err = FreePort(); err != nil {
			return nil, err
		}
		kwokArgs := []string{kc, "--manage-all-nodes=false", "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
			"--cidr=10.244.0.1/16", "--node-ip=10.240.0.1", "--server-address=127.0.0.1:" + strconv.Itoa(port)}
		for _, s := range stages {
			kwokArgs = append(kwokArgs, "--config="+s)
		}
		if err := lc.start("kwok", kwokArgs...); err != nil {
			return nil, err
		}
	}

	say("CoreDNS with the kubernetes plugin on 127.0.0.1")
	if port, err = FreePort(); err != nil {
		return nil, err
	}
	lc.DNSAddr = "127.0.0.1:" + strconv.Itoa(port)
	corefile := filepath.Join(o.LogDir, "Corefile")
	// ttl 1: the seed-discovery margin must exceed the records' TTL.
	zone := fmt.Sprintf(`    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig %s envtest
        pods insecure
        ttl 1
    }
`, lc.Kubeconfig)
	conf := fmt.Sprintf(".:%d {\n    bind 127.0.0.1\n%s}\n", port, zone)
	if node != nil {
		// The real node's pods ask the kubelet's clusterDNS, the bridge
		// address, on port 53.
		conf += fmt.Sprintf(".:53 {\n    bind %s\n%s}\n", RealNodeBridgeIP, zone)
	}
	if err := os.WriteFile(corefile, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	if err := lc.start("coredns", "-conf", corefile); err != nil {
		return nil, err
	}

	nodes := o.Nodes
	if node != nil {
		say("API server for the real node's pods on %s:%d (a proxy to its loopback port)", RealNodeBridgeIP, APIServerBridgePort)
		api, err := url.Parse(lc.Config.Host)
		if err != nil {
			return nil, fmt.Errorf("API server address %q: %w", lc.Config.Host, err)
		}
		if lc.bridgeProxy, err = StartProxyOn(fmt.Sprintf("%s:%d", RealNodeBridgeIP, APIServerBridgePort), api.Host); err != nil {
			return nil, err
		}
		if err := node.Start(ctx, lc.Kubeconfig); err != nil {
			return nil, err
		}
		lc.procs = append(lc.procs, node.procs...)
		nodes++
		if b := node.second; b != nil {
			if err := b.Start(ctx, lc.Kubeconfig); err != nil {
				return nil, err
			}
			lc.procs = append(lc.procs, b.procs...)
			nodes++
		}
	}
	if err := lc.waitReady(ctx, nodes); err != nil {
		return nil, err
	}
	if node != nil {
		say("the chart as users install it, oci://%s/peergroup/charts/peergroup, from the loopback registry", ChartRegistryHost)
		if lc.mirror, err = StartRegistryMirror(node.Registry.Host, o.LogDir); err != nil {
			return nil, err
		}
		if err := lc.pushChart(ctx); err != nil {
			return nil, err
		}
	}
	lc.ReadyIn = time.Since(t0)
	say("cluster ready in %s; logs in %s", lc.ReadyIn.Round(100*time.Millisecond), o.LogDir)
	return lc, nil
}

func (lc *LocalCluster) start(name string, args ...string) error {
	c, err := startLogged(lc.LogDir, lc.assets, nil, name, args...)
	if err != nil {
		return err
	}
	lc.procs = append(lc.procs, c)
	return nil
}

// startLogged starts the binary name from assets with args (env added to
// this process's), its output in logDir/name.log, closed when it exits.
func startLogged(logDir, assets string, env []string, name string, args ...string) (*component, error) {
	return startLoggedAs(logDir, assets, env, name, name, args...)
}

// startLoggedAs is startLogged with the log (and component) named logName:
// a daemon that runs twice (two nodes, a node that returns) keeps one log
// per node, appended to.
func startLoggedAs(logDir, assets string, env []string, logName, name string, args ...string) (*component, error) {
	logf, err := os.OpenFile(filepath.Join(logDir, logName+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(logf, "%s %s at %s\n", startMarker, name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(filepath.Join(assets, name), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	c, err := startComponent(logName, cmd)
	if err != nil {
		logf.Close()
		return nil, err
	}
	go func() {
		<-c.done
		logf.Close()
	}()
	return c, nil
}

// startMarker begins the lines of each start of a component in its log.
const startMarker = "=== peergroup test framework: starting"

// startComponent starts cmd, which dies with the process that started it
// even on a crash, so no stray listeners survive a test run.
func startComponent(name string, cmd *exec.Cmd) (*component, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &component{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// stopComponents sends SIGTERM to each, last started first, and kills
// whatever has not exited after grace.
func stopComponents(procs []*component, grace time.Duration) {
	for i := len(procs) - 1; i >= 0; i-- {
		_ = procs[i].cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.Now().Add(grace)
	for _, p := range procs {
		select {
		case <-p.done:
		case <-time.After(time.Until(deadline)):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}

func (lc *LocalCluster) createFakeNode(ctx context.Context, name string) error {
	node := &corev1.Node{}
	node.Name = name
	node.Annotations = map[string]string{"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"}
	node.Labels = map[string]string{"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "kwok"}
	node.Status.Allocatable = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourceMemory: resource.MustParse("256Gi"), corev1.ResourcePods: resource.MustParse("110")}
	node.Status.Capacity = node.Status.Allocatable
	if err := lc.Client.Create(ctx, node); err != nil {
		return fmt.Errorf("create node %s: %w", name, err)
	}
	return nil
}

func (lc *LocalCluster) waitReady(ctx context.Context, nodes int) error {
	deadline := time.Now().Add(90 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return err
		}
		last = lc.checkReady(ctx, nodes)
		if last == nil {
			return nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("local cluster not ready after 90s (logs in %s): %w", lc.LogDir, last)
}

func (lc *LocalCluster) checkReady(ctx context.Context, nodes int) error {
	for _, p := range lc.procs {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited: %v; the end of its log:\n%s", p.name, p.err, LogTail(filepath.Join(lc.LogDir, p.name+".log"), 15))
		default:
		}
	}
	list := &corev1.NodeList{}
	if err := lc.Client.List(ctx, list); err != nil {
		return err
	}
	ready := 0
	for _, n := range list.Items {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready++
			}
		}
	}
	if ready < nodes {
		return fmt.Errorf("%d of %d nodes Ready", ready, nodes)
	}
	// CoreDNS serves the default kubernetes Service once it synced.
	m := new(dns.Msg)
	m.SetQuestion("kubernetes.default.svc.cluster.local.", dns.TypeA)
	resp, err := dns.Exchange(m, lc.DNSAddr)
	if err != nil {
		return fmt.Errorf("CoreDNS: %w", err)
	}
	if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) == 0 {
		return fmt.Errorf("CoreDNS not serving cluster.local yet: %s", dns.RcodeToString[resp.Rcode])
	}
	return nil
}

// Stop ends every component, the real node and what it made, then the
// API server.
func (lc *LocalCluster) Stop() {
	if lc.mirror != nil {
		lc.mirror.Stop()
	}
	stopComponents(lc.procs, 10*time.Second)
	if lc.bridgeProxy != nil {
		lc.bridgeProxy.Close()
	}
	if lc.Node != nil {
		lc.Node.Stop()
	}
	_ = lc.Cluster.Stop()
}

// kwokStages returns kwok's fast node stage and general pod stages from
// its module.
func kwokStages() ([]string, error) {
	dir, err := moduleDir(KwokModule)
	if err != nil {
		return nil, err
	}
	stages := []string{filepath.Join(dir, "kustomize", "stage", "node", "fast", "node-initialize.yaml")}
	pods, err := filepath.Glob(filepath.Join(dir, "kustomize", "stage", "pod", "general", "pod-*.yaml"))
	if err != nil || len(pods) == 0 {
		return nil, errors.Join(errors.New("no kwok pod stages found"), err)
	}
	return append(stages, pods...), nil
}

// LogTail returns the last n lines of a component's log, for an error
// that must explain itself after the log directory is gone.
func LogTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
