package framework

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/peergroup/peergroup/internal/ociimage"
)

// The real node's fixed names. Everything the node makes outside its state
// directory carries one of them, so a run (or the start of the next one,
// after a run was killed) removes exactly what a node made.
const (
	// RealNodeName is the Node's name and the kubelet's hostname: the API
	// server reaches the kubelet by Hostname (localhost), since the node IP
	// cannot be loopback.
	RealNodeName = "localhost"
	// RealNodeBridge is the CNI bridge: no uplink, no NAT, no gateway.
	RealNodeBridge = "pgnode0"
	// RealNodeBridgeIP is the bridge's address: the host's side of the pod
	// network, where CoreDNS serves the pods (the kubelet's clusterDNS).
	RealNodeBridgeIP = "10.246.0.1"
	// RealNodeBridgeMAC is the bridge's own address, locally administered.
	RealNodeBridgeMAC = "02:70:67:00:00:01"
	// RealNodeSubnet is the pod range (free on this machine: see ip route).
	RealNodeSubnet = "10.246.0.0/24"
	// RealNodeCgroup is the cgroup, in every hierarchy, holding containerd,
	// its shims and (as the kubelet's cgroupRoot) every container.
	RealNodeCgroup = "peergroup-node"
	// RealNodeTaint keeps pods that do not ask for the real node on kwok's
	// fake nodes; scenarios for real containers tolerate it and select the
	// node by RealNodeLabel.
	RealNodeTaint = "peergroup.dev/real-node"
	RealNodeLabel = "peergroup.dev/real-node"
)

// nodeSpec is what differs between the real nodes one machine runs: the
// first node (A) and, for the two-node suites, a second (B) on the same
// bridge. Every name a node makes outside its state directory comes from
// here, so cleanup finds exactly what each node made.
type nodeSpec struct {
	// name is the Node's name. The API server reaches kubelets by
	// Hostname: B's name is the loopback address its kubelet listens on
	// (a made-up host name would send a DNS query off the machine).
	name, address string
	// nodeIP is the kubelet's --node-ip, an address on the bridge.
	nodeIP string
	cgroup string
	// network names the CNI network (libcni's cache files carry it).
	network string
	// dirSuffix follows the first node's state directory.
	dirSuffix string
	// The pod range within RealNodeSubnet: both nodes use the same /24
	// subnet (two /25s would leave each half without a route to the other
	// under isGateway false), split by host-local's range.
	rangeStart, rangeEnd string
}

var (
	nodeA = nodeSpec{name: RealNodeName, address: "127.0.0.1", nodeIP: RealNodeBridgeIP, cgroup: RealNodeCgroup,
		network: cniNetwork, rangeStart: "10.246.0.10", rangeEnd: "10.246.0.250"}
	nodeB = nodeSpec{name: SecondNodeName, address: SecondNodeName, nodeIP: "10.246.0.2", cgroup: RealNodeCgroup + "-b",
		network: cniNetwork + "-b", dirSuffix: "-b", rangeStart: "10.246.0.130", rangeEnd: "10.246.0.250"}
	// nodeAWithB is A's range beside B.
	nodeAWithBRangeEnd = "10.246.0.126"
	// realNodeSpecs in cleanup order: the second node first.
	realNodeSpecs = []nodeSpec{nodeB, nodeA}
)

// SecondNodeName is the second real node's name (see nodeSpec).
const SecondNodeName = "127.0.0.2"

// RealNodeComponents are the binaries hack/controlplane/build.sh builds for
// the node. runc and the CNI plugins come from Debian (packages runc and
// containernetworking-plugins).
var RealNodeComponents = []string{"kubelet", "containerd", "containerd-shim-runc-v2", "ctr", "nats-server"}

const (
	runcBinary = "/usr/sbin/runc"
	cniBinDir  = "/usr/lib/cni"
)

// Paths the kubelet and containerd use whatever they are told: removed at
// stop when the node created them (recorded in the state directory).
var nodeFixedPaths = []string{
	"/var/lib/kubelet/device-plugins", "/var/lib/kubelet", "/var/log/containers", "/var/log/pods",
	"/var/lib/cni", "/run/containerd/fifo", "/run/containerd/runc", "/run/containerd/s", "/run/containerd",
}

// RealNodeSupport says why this machine cannot run a real node, or nil:
// root, cgroups, runc and the CNI plugins are needed.
func RealNodeSupport() error {
	if os.Geteuid() != 0 {
		return errors.New("a real node needs root (containers, mounts, network namespaces)")
	}
	if _, err := os.Stat("/sys/fs/cgroup/pids"); err != nil {
		if _, err2 := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err2 != nil {
			return errors.New("no cgroup hierarchy under /sys/fs/cgroup")
		}
	}
	if _, err := os.Stat(runcBinary); err != nil {
		return fmt.Errorf("%s missing: apt-get install runc", runcBinary)
	}
	for _, p := range []string{"bridge", "host-local", "loopback"} {
		if _, err := os.Stat(filepath.Join(cniBinDir, p)); err != nil {
			return fmt.Errorf("CNI plugin %s missing: apt-get install containernetworking-plugins", p)
		}
	}
	return nil
}

// RealNodeDir is the node's state directory: containerd's root and state,
// the kubelet's root, logs, CNI config and IPAM data, the lock.
func RealNodeDir() string {
	cache := os.Getenv("PEERGROUP_CACHE")
	if cache == "" {
		cache = filepath.Join(RepoRoot(), ".cache")
	}
	// Absolute and without symlinks: mounts are found by this prefix in
	// /proc/self/mountinfo, which holds resolved paths.
	if abs, err := filepath.Abs(cache); err == nil {
		cache = abs
	}
	if real, err := filepath.EvalSymlinks(cache); err == nil {
		cache = real
	}
	return filepath.Join(cache, "node")
}

// RealNode is a kubelet with containerd, runc and the CNI bridge plugin on
// this machine, registered with a LocalCluster. Images come from Registry.
type RealNode struct {
	Dir string
	// Name is the Node's name.
	Name     string
	Registry *Registry
	// PauseImage is the sandbox image reference.
	PauseImage string
	// Tainted keeps pods off the node unless they tolerate RealNodeTaint
	// (beside kwok's nodes); an untainted node takes every pod.
	Tainted bool
	// Left is what Stop found of the node after its cleanup (Leftovers),
	// checked while it still held the node lock, so no other node's
	// bridge or cgroup can be mistaken for this one's. Empty means clean.
	Left []string
	// LeaseSeconds, when set, is the kubelet's nodeLeaseDurationSeconds
	// (it renews every quarter of it): clusters that shorten the node
	// controller's grace period need a lease renewed well within it.
	LeaseSeconds int
	before       MachineState
	lock         *os.File
	procs        []*component
	assets       string
	logDir       string
	say          func(string, ...any)
	spec         nodeSpec
	// second is the first node's second node (AddSecondNode): stopped and
	// cleaned with it, under its lock.
	second *RealNode
	// primary is the second node's first node (nil on the first).
	primary *RealNode
	// downed are the host-side veths Lose set down.
	downed     []string
	kubeconfig string
}

// PrepareRealNode takes the node lock (one node on this machine at a time:
// the bridge and the cgroup are fixed names), removes whatever a killed run
// left, creates the bridge with its address, and starts the registry with
// the pause image. Start then starts containerd and the kubelet.
func PrepareRealNode(ctx context.Context, assets, logDir string, say func(string, ...any)) (_ *RealNode, err error) {
	if err := RealNodeSupport(); err != nil {
		return nil, err
	}
	for _, bin := range RealNodeComponents {
		if _, err := os.Stat(filepath.Join(assets, bin)); err != nil {
			return nil, fmt.Errorf("%s missing in %s: run `hack/controlplane/build.sh %s`", bin, assets, strings.Join(RealNodeComponents, " "))
		}
	}
	n := &RealNode{Dir: RealNodeDir(), Name: nodeA.name, spec: nodeA, assets: assets, logDir: logDir, say: say}
	if err := os.MkdirAll(filepath.Dir(n.Dir), 0o755); err != nil {
		return nil, err
	}
	say("real node: waiting for the node lock %s", NodeLockPath)
	if n.lock, err = LockRealNode(ctx); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			n.Stop()
		}
	}()
	if err := cleanPrevious(n.Dir); err != nil {
		return nil, fmt.Errorf("remove a previous run's node: %w", err)
	}
	if err := checkNoOtherRuntime(); err != nil {
		return nil, err
	}
	if err := n.saveSysctls(); err != nil {
		return nil, err
	}
	n.before = SnapshotMachine()
	if err := n.recordFixedPaths(); err != nil {
		return nil, err
	}
	for _, d := range []string{"containerd/root", "containerd/state", "runc", "cni/net.d", "cni/ipam", "cni/cache", "kubelet/pki", "kubelet/pod-logs", "kubelet/plugins", "certs.d"} {
		if err := os.MkdirAll(filepath.Join(n.Dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	say("real node: bridge %s %s/24 (no uplink, no NAT, no forwarding)", RealNodeBridge, RealNodeBridgeIP)
	for _, args := range [][]string{
		// A fixed MAC: a bridge without one takes the lowest MAC of its
		// ports, so it changed when a full restart removed and added
		// veths, and every pod's cached gateway MAC went stale: all of
		// them lost CoreDNS (on the bridge address) until their neighbour
		// entry expired, about 30 s (7-8 DNS timeouts in a row before the fixed MAC).
		{"link", "add", "name", RealNodeBridge, "address", RealNodeBridgeMAC, "type", "bridge"},
		{"addr", "add", RealNodeBridgeIP + "/24", "dev", RealNodeBridge},
		{"link", "set", RealNodeBridge, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	if n.Registry, err = StartRegistry(); err != nil {
		return nil, err
	}
	say("real node: image registry on %s; building the pause image", n.Registry.Host)
	buildDir := filepath.Join(n.Dir, "build")
	if err := ociimage.BuildStatic(ctx, buildDir, "dev", "", "./test/images/pause"); err != nil {
		return nil, err
	}
	bin := filepath.Join(buildDir, "pause")
	img, err := ociimage.Build(ociimage.Spec{
		Files:      map[string]ociimage.File{"/pause": {Source: bin, Mode: 0o755}},
		Entrypoint: []string{"/pause"},
		User:       ociimage.NonrootUser,
	})
	if err != nil {
		return nil, err
	}
	if n.PauseImage, err = n.Registry.Push(ctx, "pause:1", img); err != nil {
		return nil, err
	}
	// The sandbox image is pinned by tag: containerd's pinned image is a name.
	n.PauseImage = strings.SplitN(n.PauseImage, "@", 2)[0]
	return n, nil
}

// AddSecondNode prepares a second node beside n, before n starts: its own
// containerd, kubelet, cgroup, state directory and pod range, on n's
// bridge (its node IP a second address there) and n's registry, under n's
// lock. n stops and cleans it first.
func (n *RealNode) AddSecondNode() (*RealNode, error) {
	if n.second != nil || n.primary != nil || len(n.procs) > 0 {
		return nil, errors.New("a second node is added once, to the first node, before it starts")
	}
	b := &RealNode{Dir: n.Dir + nodeB.dirSuffix, Name: nodeB.name, spec: nodeB, Registry: n.Registry, PauseImage: n.PauseImage,
		Tainted: n.Tainted, assets: n.assets, logDir: n.logDir, say: n.say, primary: n}
	for _, d := range []string{"containerd/root", "containerd/state", "runc", "cni/net.d", "cni/ipam", "cni/cache", "kubelet/pki", "kubelet/pod-logs", "kubelet/plugins"} {
		if err := os.MkdirAll(filepath.Join(b.Dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if out, err := exec.Command("ip", "addr", "add", nodeB.nodeIP+"/24", "dev", RealNodeBridge).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip addr add %s: %w: %s", nodeB.nodeIP, err, out)
	}
	n.second = b
	return b, nil
}

// NodeLockPath is the machine's node lock: one node at a time on this
// machine, whatever checkout or cache directory starts it (the bridge and
// the cgroup are machine-wide names). Beside it, NodeLockPath+".dir" names
// the state directory of the last node started, so the next start cleans a
// killed run's mounts wherever its checkout was.
const NodeLockPath = "/run/lock/peergroup-node.lock"

// LockRealNode takes the node lock, polling while another process's node
// holds it, until ctx ends; closing the file releases it. While it is
// held no node starts, so what is on the machine under the node's names is
// a previous node's. The file can be handed to a child process
// (ExtraFiles, fd 3, PEERGROUP_NODE_LOCK_FD=3), whose node then runs under
// this lock, which outlives the child: a process started so uses fd 3.
func LockRealNode(ctx context.Context) (*os.File, error) {
	var f *os.File
	if os.Getenv("PEERGROUP_NODE_LOCK_FD") == "3" {
		// Not to be inherited by containerd, its shims or the kubelet.
		syscall.CloseOnExec(3)
		f = os.NewFile(3, NodeLockPath)
	} else {
		if err := os.MkdirAll(filepath.Dir(NodeLockPath), 0o755); err != nil {
			return nil, err
		}
		var err error
		if f, err = os.OpenFile(NodeLockPath, os.O_CREATE|os.O_RDWR, 0o644); err != nil {
			return nil, err
		}
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("node lock %s: %w", NodeLockPath, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for the node lock %s (another node runs): %w", NodeLockPath, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// cleanPrevious removes what the last node started on this machine left,
// wherever its state directory was, then records dir as the current one.
func cleanPrevious(dir string) error {
	record := NodeLockPath + ".dir"
	var errs []error
	if prev, err := os.ReadFile(record); err == nil && filepath.IsAbs(string(prev)) && string(prev) != dir {
		errs = append(errs, CleanRealNode(string(prev)))
	}
	errs = append(errs, CleanRealNode(dir))
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return os.WriteFile(record, []byte(dir), 0o644)
}

// Start writes the configurations and starts containerd, then the kubelet
// registered with the API server of kubeconfig. It returns when containerd
// answers; the caller waits for the Node to be Ready.
func (n *RealNode) Start(ctx context.Context, kubeconfig string) error {
	if err := n.writeCNIConfig(); err != nil {
		return err
	}
	if n.primary == nil {
		if err := n.writeRegistryHosts(); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(n.Dir, "containerd.toml"), []byte(n.containerdConfig()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(n.Dir, "resolv.conf"), nil, 0o644); err != nil {
		return err
	}
	n.kubeconfig = kubeconfig
	return n.startDaemons(ctx)
}

// startDaemons starts containerd, then the kubelet, on the node's state
// as it is: at the first start, and when a lost node returns.
func (n *RealNode) startDaemons(ctx context.Context) error {
	n.say("real node %s: containerd %s (runc %s, CNI bridge + host-local)", n.Name, "v2.4.2", runcBinary)
	if err := n.startContainerd(ctx); err != nil {
		return err
	}
	return n.startKubeletServing(ctx)
}

// startContainerd starts containerd on the node's configuration and waits
// until it answers on its socket.
func (n *RealNode) startContainerd(ctx context.Context) error {
	cd, err := n.start("containerd", "--config", filepath.Join(n.Dir, "containerd.toml"))
	if err != nil {
		return err
	}
	// containerd and every shim it starts live in the node's cgroup, so
	// stopping the node finds every process it made.
	if err := joinNodeCgroup(n.spec.cgroup, cd.cmd.Process.Pid, "runtime"); err != nil {
		return err
	}
	return waitListening(ctx, cd, "unix", filepath.Join(n.Dir, "containerd.sock"), 30*time.Second)
}

// startKubeletServing starts the kubelet and waits until it serves.
// Its ports are free ports found a moment before it binds them; another
// test package may take one meanwhile. Then it exits at once, and is
// started again on other ports.
func (n *RealNode) startKubeletServing(ctx context.Context) error {
	var lastErr error
	for range 3 {
		kl, healthz, err := n.startKubelet(n.kubeconfig)
		if err != nil {
			return err
		}
		if lastErr = waitListening(ctx, kl, "tcp", healthz, 30*time.Second); lastErr == nil {
			return joinNodeCgroup(n.spec.cgroup, kl.cmd.Process.Pid, "kubelet")
		}
		n.procs = slices.DeleteFunc(n.procs, func(c *component) bool { return c == kl })
		stopComponents([]*component{kl}, 5*time.Second)
		tail := LogTail(filepath.Join(n.logDir, n.logName("kubelet")+".log"), 15)
		// The log holds every start of this node's kubelet: only this
		// one's lines count.
		if i := strings.LastIndex(tail, startMarker); i >= 0 {
			tail = tail[i:]
		}
		if !strings.Contains(tail, "address already in use") {
			return fmt.Errorf("%w; the end of its log:\n%s", lastErr, tail)
		}
		n.say("real node: the kubelet lost a port to another process; starting it again")
	}
	return lastErr
}

// startKubelet writes the kubelet's configuration with fresh ports and
// starts it; healthzAddr is where it answers once serving.
func (n *RealNode) startKubelet(kubeconfig string) (_ *component, healthzAddr string, err error) {
	port, err := FreePort()
	if err != nil {
		return nil, "", err
	}
	healthz, err := FreePort()
	if err != nil {
		return nil, "", err
	}
	if err := os.WriteFile(filepath.Join(n.Dir, "kubelet.yaml"), []byte(n.kubeletConfig(port, healthz)), 0o644); err != nil {
		return nil, "", err
	}
	n.say("real node: kubelet %s on %s:%d as Node %q (tainted %s: %v)", ControlPlaneVersion, n.spec.address, port, n.Name, RealNodeTaint, n.Tainted)
	kl, err := n.start("kubelet",
		"--config="+filepath.Join(n.Dir, "kubelet.yaml"),
		"--kubeconfig="+kubeconfig,
		"--root-dir="+filepath.Join(n.Dir, "kubelet"),
		"--cert-dir="+filepath.Join(n.Dir, "kubelet", "pki"),
		"--hostname-override="+n.Name,
		"--node-ip="+n.spec.nodeIP,
		"--node-labels="+RealNodeLabel+"=true",
		"--v=2")
	return kl, fmt.Sprintf("%s:%d", n.spec.address, healthz), err
}

// logName is a daemon's log file name: the second node's carry its suffix.
func (n *RealNode) logName(daemon string) string { return daemon + n.spec.dirSuffix }

func (n *RealNode) start(name string, args ...string) (*component, error) {
	// containerd finds its shim on PATH.
	c, err := startLoggedAs(n.logDir, n.assets, []string{"PATH=" + n.assets + ":" + os.Getenv("PATH")}, n.logName(name), name, args...)
	if err != nil {
		return nil, err
	}
	n.procs = append(n.procs, c)
	return c, nil
}

// Stop ends the kubelet, then containerd, kills every process left in the
// node's cgroup (shims, containers), and removes the node's mounts, bridge,
// veths, cgroups, files and state directory. Safe to call twice.
func (n *RealNode) Stop() {
	if n.lock == nil {
		return
	}
	if n.second != nil {
		stopComponents(n.second.procs, 10*time.Second)
		n.second.procs = nil
	}
	stopComponents(n.procs, 10*time.Second)
	n.procs = nil
	if n.Registry != nil {
		n.Registry.Stop()
		n.Registry = nil
	}
	if err := CleanRealNode(n.Dir); err != nil {
		fmt.Fprintf(os.Stderr, "real node cleanup: %v\n", err)
	}
	n.Left = Leftovers(n.Dir, n.assets, n.before)
	_ = n.lock.Close()
	n.lock = nil
}

// CleanRealNode removes everything the nodes whose first state directory
// is dir made (the second node's is dir+"-b"), by the names they made them
// with: processes in each node's cgroup, mounts under each directory, the
// bridge and the veths on it, the nodes' cgroups, the fixed paths the
// first node created, and the directories. It is what Stop runs, and what
// the next start runs after a killed run.
func CleanRealNode(dir string) error {
	var errs []error
	mountsLeft := false
	for _, spec := range realNodeSpecs {
		if err := killCgroup(spec.cgroup); err != nil {
			errs = append(errs, err)
		}
		if err := unmountUnder(dir + spec.dirSuffix); err != nil {
			errs = append(errs, err)
			mountsLeft = true
		}
	}
	if err := restoreSysctls(dir); err != nil {
		errs = append(errs, err)
	}
	if err := deleteBridge(RealNodeBridge); err != nil {
		errs = append(errs, err)
	}
	for _, spec := range realNodeSpecs {
		if err := removeCgroup(spec.cgroup); err != nil {
			errs = append(errs, err)
		}
	}
	if created, err := os.ReadFile(filepath.Join(dir, "created-paths")); err == nil {
		for _, p := range strings.Fields(string(created)) {
			if slices.Contains(nodeFixedPaths, p) {
				if err := os.RemoveAll(p); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	// Only what the nodes put into a fixed path that existed before them.
	if links, err := filepath.Glob("/var/log/containers/*.log"); err == nil {
		for _, l := range links {
			target, err := os.Readlink(l)
			if err != nil {
				continue
			}
			for _, spec := range realNodeSpecs {
				if strings.HasPrefix(target, dir+spec.dirSuffix+string(os.PathSeparator)) {
					_ = os.Remove(l)
				}
			}
		}
	}
	for _, r := range cniResults() {
		_ = os.Remove(r)
	}
	for _, spec := range realNodeSpecs {
		// Never into a live mount: it could be a bind mount of a host path.
		if !mountsLeft {
			if err := os.RemoveAll(dir + spec.dirSuffix); err != nil {
				errs = append(errs, fmt.Errorf("remove %s: %w", dir+spec.dirSuffix, err))
			}
		}
	}
	return errors.Join(errs...)
}

// cniResults lists the files libcni caches, in a directory it insists on,
// for the nodes' attachments: each network's "<network>-<sandbox>-eth0"
// and, for the same sandboxes, the loopback plugin's
// "cni-loopback-<sandbox>-lo" (named after no network).
func cniResults() []string {
	const dir = "/var/lib/cni/results/"
	var out []string
	for _, spec := range realNodeSpecs {
		results, _ := filepath.Glob(dir + spec.network + "-*-eth0")
		for _, r := range results {
			sandbox := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(r), spec.network+"-"), "-eth0")
			// A's network name is a prefix of B's: B's files are B's.
			if spec.network == cniNetwork && strings.HasPrefix(sandbox, "b-") {
				continue
			}
			out = append(out, r)
			if lo := dir + "cni-loopback-" + sandbox + "-lo"; fileExists(lo) {
				out = append(out, lo)
			}
		}
	}
	return out
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// cniNetwork is the CNI network's name (libcni names its cache files by it).
const cniNetwork = "peergroup-node"

// checkNoOtherRuntime refuses to start beside a containerd or kubelet that
// is not the node's: they share paths the kubelet and containerd insist on
// (shim sockets, device-plugin sockets), and cleanup could not tell them
// apart.
func checkNoOtherRuntime() error {
	for _, p := range []string{"/run/containerd/containerd.sock", "/var/lib/kubelet/device-plugins/kubelet.sock"} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s exists: another container runtime or kubelet runs on this machine; the real node will not share its paths", p)
		}
	}
	return nil
}

// kernelSettings are the sysctls the kubelet sets at start (its container
// manager's "kernel defaults"); the node restores the machine's values.
var kernelSettings = []string{"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops", "kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes"}

// saveSysctls records the machine's values of kernelSettings in the state
// directory before the kubelet changes them.
func (n *RealNode) saveSysctls() error {
	var b strings.Builder
	values := readSysctls()
	for _, k := range kernelSettings {
		if v, ok := values[k]; ok {
			fmt.Fprintf(&b, "%s=%s\n", k, v)
		}
	}
	if err := os.MkdirAll(n.Dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(n.Dir, "sysctls"), []byte(b.String()), 0o644)
}

// readSysctls reads the machine's values of kernelSettings.
func readSysctls() map[string]string {
	values := map[string]string{}
	for _, k := range kernelSettings {
		if v, err := os.ReadFile(filepath.Join("/proc/sys", k)); err == nil {
			values[k] = strings.TrimSpace(string(v))
		}
	}
	return values
}

// restoreSysctls writes back the values saveSysctls recorded under dir.
func restoreSysctls(dir string) error {
	data, err := os.ReadFile(filepath.Join(dir, "sysctls"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok || !slices.Contains(kernelSettings, k) {
			continue
		}
		if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restore %s: %w", k, err))
		}
	}
	return errors.Join(errs...)
}

// recordFixedPaths notes which of the fixed paths do not exist yet: those
// the node will create, and its cleanup removes.
func (n *RealNode) recordFixedPaths() error {
	var created []string
	for _, p := range nodeFixedPaths {
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			created = append(created, p)
		}
	}
	if err := os.MkdirAll(n.Dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(n.Dir, "created-paths"), []byte(strings.Join(created, "\n")+"\n"), 0o644)
}

// cgroupHierarchies are the mounted hierarchies: each v1 controller
// (cpu,cpuacct once) and the unified one.
func cgroupHierarchies() []string {
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	seen := map[string]bool{}
	var out []string
	for _, e := range entries {
		p := filepath.Join("/sys/fs/cgroup", e.Name())
		real, err := filepath.EvalSymlinks(p)
		if err != nil || seen[real] {
			continue
		}
		if _, err := os.Stat(filepath.Join(real, "cgroup.procs")); err != nil {
			continue
		}
		seen[real] = true
		out = append(out, real)
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		out = []string{"/sys/fs/cgroup"} // pure v2
	}
	return out
}

// joinNodeCgroup moves pid into cgroup/sub in every hierarchy.
func joinNodeCgroup(cgroup string, pid int, sub string) error {
	for _, h := range cgroupHierarchies() {
		dir := filepath.Join(h, cgroup, sub)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("cgroup %s: %w", dir, err)
		}
		// cpuset children start with no cpus or mems: copy the parent's.
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			for _, d := range []string{filepath.Dir(dir), dir} {
				parent, err := os.ReadFile(filepath.Join(filepath.Dir(d), f))
				if err == nil {
					_ = os.WriteFile(filepath.Join(d, f), parent, 0o644)
				}
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			return fmt.Errorf("join %s: %w", dir, err)
		}
	}
	return nil
}

// cgroupDirs lists name's cgroup directories in every hierarchy, deepest
// first.
func cgroupDirs(name string) []string {
	var dirs []string
	for _, h := range cgroupHierarchies() {
		root := filepath.Join(h, name)
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	sort.Slice(dirs, func(i, j int) bool { return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/") })
	return dirs
}

// killCgroup SIGKILLs every process in name's cgroups until none is left.
// Each round freezes the cgroups first (v1 freezer), so no process exits
// and no pid is reused by someone else between reading and killing.
func killCgroup(name string) error {
	freezer := filepath.Join("/sys/fs/cgroup/freezer", name, "freezer.state")
	deadline := time.Now().Add(15 * time.Second)
	for {
		_ = os.WriteFile(freezer, []byte("FROZEN"), 0o644)
		pids := map[int]bool{}
		for _, d := range cgroupDirs(name) {
			data, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			if err != nil {
				continue
			}
			for _, f := range strings.Fields(string(data)) {
				if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
					pids[pid] = true
				}
			}
		}
		for pid := range pids {
			if inCgroup(pid, name) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		// Thawed, they take the SIGKILL: every freezer cgroup of name, for
		// runc freezes a container's own while it kills it, and a runc
		// killed meanwhile leaves it frozen (its processes stuck in D).
		_ = os.WriteFile(freezer, []byte("THAWED"), 0o644)
		for _, d := range cgroupDirs(name) {
			if strings.HasPrefix(d, "/sys/fs/cgroup/freezer/") {
				_ = os.WriteFile(filepath.Join(d, "freezer.state"), []byte("THAWED"), 0o644)
			}
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes left in cgroup %s: %v", name, pids)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// inCgroup says whether pid is (still) in one of name's cgroups.
func inCgroup(pid int, name string) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	return err == nil && (strings.Contains(string(data), ":/"+name+"/") || strings.Contains(string(data), ":/"+name+"\n"))
}

// removeCgroup removes name's cgroup directories, deepest first.
func removeCgroup(name string) error {
	var errs []error
	deadline := time.Now().Add(10 * time.Second)
	for _, d := range cgroupDirs(name) {
		for {
			err := syscall.Rmdir(d)
			if err == nil || errors.Is(err, syscall.ENOENT) {
				break
			}
			if time.Now().After(deadline) {
				errs = append(errs, fmt.Errorf("rmdir %s: %w", d, err))
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return errors.Join(errs...)
}

// NodeMounts lists mount points under dir, from /proc/self/mountinfo.
func NodeMounts(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var mounts []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			mounts = append(mounts, mp)
		}
	}
	return mounts, s.Err()
}

func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// unmountUnder detaches every mount under dir, deepest first, until none
// is left (a mount can be stacked on another).
func unmountUnder(dir string) error {
	for range 10 {
		mounts, err := NodeMounts(dir)
		if err != nil {
			return err
		}
		if len(mounts) == 0 {
			return nil
		}
		sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
		for _, m := range mounts {
			_ = syscall.Unmount(m, syscall.MNT_DETACH)
		}
	}
	mounts, _ := NodeMounts(dir)
	if len(mounts) > 0 {
		return fmt.Errorf("mounts left under %s: %v", dir, mounts)
	}
	return nil
}

// BridgeLinks lists the interfaces enslaved to bridge (the pods' host-side
// veths).
func BridgeLinks(bridge string) []string {
	entries, _ := os.ReadDir(filepath.Join("/sys/class/net", bridge, "brif"))
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// deleteBridge deletes the veths on bridge, then the bridge.
func deleteBridge(bridge string) error {
	if _, err := net.InterfaceByName(bridge); err != nil {
		return nil
	}
	var errs []error
	for _, veth := range BridgeLinks(bridge) {
		if out, err := exec.Command("ip", "link", "delete", veth).CombinedOutput(); err != nil && !strings.Contains(string(out), "Cannot find") {
			errs = append(errs, fmt.Errorf("ip link delete %s: %w: %s", veth, err, out))
		}
	}
	if out, err := exec.Command("ip", "link", "delete", bridge).CombinedOutput(); err != nil {
		errs = append(errs, fmt.Errorf("ip link delete %s: %w: %s", bridge, err, out))
	}
	return errors.Join(errs...)
}

// waitListening waits until something accepts connections at addr (a
// unix socket or host:port): c serving, unless c exits first.
func waitListening(ctx context.Context, c *component, network, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-c.done:
			return fmt.Errorf("%s exited: %v", c.name, c.err)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if conn, err := net.DialTimeout(network, addr, time.Second); err == nil {
			conn.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s: nothing listening on %s %s after %s", c.name, network, addr, timeout)
}

func (n *RealNode) writeCNIConfig() error {
	rangeEnd := n.spec.rangeEnd
	if n.second != nil {
		rangeEnd = nodeAWithBRangeEnd
	}
	conf := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": %q,
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": %q,
        "ranges": [[{"subnet": %q, "rangeStart": %q, "rangeEnd": %q}]]
      }
    },
    {"type": "loopback"}
  ]
}
`, n.spec.network, RealNodeBridge, filepath.Join(n.Dir, "cni", "ipam"), RealNodeSubnet, n.spec.rangeStart, rangeEnd)
	return os.WriteFile(filepath.Join(n.Dir, "cni", "net.d", "10-peergroup.conflist"), []byte(conf), 0o644)
}

// MirroredRegistries are the public registries whose names the node
// resolves at the loopback registry instead: manifests keep the image names
// users write (the chart's ghcr.io/peergroup/peergroup, docker.io's nats),
// and a pull never leaves the machine. An image not pushed there fails to
// pull; no fallback to the real registry exists.
var MirroredRegistries = []string{"ghcr.io", "docker.io"}

// writeRegistryHosts tells containerd to pull from the loopback registry
// over plain HTTP, for its own name and for MirroredRegistries.
func (n *RealNode) writeRegistryHosts() error {
	// _default: any other registry resolves here too (and fails there), so
	// no image is ever pulled from beyond the machine.
	for _, name := range append([]string{n.Registry.Host, "_default"}, MirroredRegistries...) {
		dir := filepath.Join(n.Dir, "certs.d", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		hosts := fmt.Sprintf("server = \"http://%[1]s\"\n\n[host.\"http://%[1]s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", n.Registry.Host)
		if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(hosts), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// registryHostsDir is where containerd finds its registries' hosts.toml:
// the first node's, for both.
func (n *RealNode) registryHostsDir() string {
	if n.primary != nil {
		return n.primary.registryHostsDir()
	}
	return filepath.Join(n.Dir, "certs.d")
}

func (n *RealNode) containerdConfig() string {
	d := func(p string) string { return filepath.Join(n.Dir, p) }
	return fmt.Sprintf(`version = 3
root = %q
state = %q

[grpc]
  address = %q

[plugins.'io.containerd.internal.v1.opt']
  path = %q

[plugins.'io.containerd.nri.v1.nri']
  disable = true

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = %q
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = %q

[plugins.'io.containerd.cri.v1.runtime']
  # Root here lacks CAP_SYS_RESOURCE: without this every sandbox fails
  # ("can't get final child's PID from pipe").
  restrict_oom_score_adj = true
  # Network namespaces under the state directory, not /var/run/netns.
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = [%q]
    conf_dir = %q
    max_conf_num = 1
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = %q
        Root = %q
        SystemdCgroup = false

[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
`, d("containerd/root"), d("containerd/state"), d("containerd.sock"), d("containerd/opt"),
		n.PauseImage, n.registryHostsDir(), cniBinDir, d("cni/net.d"), runcBinary, d("runc"))
}

func (n *RealNode) kubeletConfig(port, healthz int) string {
	d := func(p string) string { return filepath.Join(n.Dir, p) }
	taints := ""
	if n.Tainted {
		taints = fmt.Sprintf("registerWithTaints:\n- {key: %s, value: \"true\", effect: NoSchedule}\n", RealNodeTaint)
	}
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
port: %d
readOnlyPort: 0
# Anonymous and AlwaysAllow on loopback (the API server has no kubelet
# client certificate here); the host's /var/log stays unserved.
enableSystemLogHandler: false
healthzBindAddress: %s
healthzPort: %d
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://%s
clusterDomain: cluster.local
clusterDNS: [%s]
resolvConf: %s
cgroupDriver: cgroupfs
cgroupRoot: /%s
failCgroupV1: false
failSwapOn: false
makeIPTablesUtilChains: false
podLogsDir: %s
volumePluginDir: %s
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {"memory.available": "100Mi", "nodefs.available": "1%%", "imagefs.available": "1%%", "nodefs.inodesFree": "1%%"}
syncFrequency: 10s
nodeStatusUpdateFrequency: 4s
`, n.spec.address, port, n.spec.address, healthz, d("containerd.sock"), RealNodeBridgeIP, d("resolv.conf"), n.spec.cgroup,
		d("kubelet/pod-logs"), d("kubelet/plugins")) + taints + n.leaseConfig()
}

func (n *RealNode) leaseConfig() string {
	if n.LeaseSeconds == 0 {
		return ""
	}
	return fmt.Sprintf("nodeLeaseDurationSeconds: %d\n", n.LeaseSeconds)
}

// nodeDaemons are the node's own long-running binaries (the control plane
// of other test packages may run the other binaries of assets meanwhile).
var nodeDaemons = []string{"kubelet", "containerd", "containerd-shim-runc-v2"}

// Leftovers reports what of a node is still on the machine: processes
// running a node daemon from assets, processes and cgroups of the node's
// cgroup, mounts (network namespaces among them) under dir, the bridge,
// veths that were not there before (vethsBefore), the state directory and
// the fixed paths the node creates. Empty means clean.
func Leftovers(dir, assets string, before MachineState) []string {
	var left []string
	for _, spec := range realNodeSpecs {
		for _, d := range cgroupDirs(spec.cgroup) {
			left = append(left, "cgroup "+d)
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/exe")
	for _, exe := range procs {
		target, err := os.Readlink(exe)
		if err == nil && filepath.Dir(target) == assets && slices.Contains(nodeDaemons, filepath.Base(target)) {
			left = append(left, "process "+filepath.Base(filepath.Dir(exe))+" "+target)
		}
	}
	for _, spec := range realNodeSpecs {
		if mounts, _ := NodeMounts(dir + spec.dirSuffix); len(mounts) > 0 {
			left = append(left, "mounts "+strings.Join(mounts, " "))
		}
	}
	if _, err := net.InterfaceByName(RealNodeBridge); err == nil {
		left = append(left, "bridge "+RealNodeBridge)
	}
	for _, v := range VethLinks() {
		if !slices.Contains(before.Veths, v) {
			left = append(left, "veth "+v)
		}
	}
	for _, spec := range realNodeSpecs {
		if _, err := os.Stat(dir + spec.dirSuffix); err == nil {
			left = append(left, "directory "+dir+spec.dirSuffix)
		}
	}
	for _, p := range nodeFixedPaths {
		if _, err := os.Lstat(p); err == nil && !slices.Contains(before.Paths, p) {
			left = append(left, "path "+p)
		}
	}
	for _, r := range cniResults() {
		left = append(left, "file "+r)
	}
	now := readSysctls()
	for k, was := range before.Sysctls {
		if v, ok := now[k]; ok && v != was {
			left = append(left, fmt.Sprintf("sysctl %s=%s (was %s)", k, v, was))
		}
	}
	return left
}

// MachineState is what Leftovers compares with: the veths and the node's
// fixed paths present before a node ran.
type MachineState struct {
	Veths, Paths []string
	// Sysctls are the values of kernelSettings.
	Sysctls map[string]string
}

// SnapshotMachine records the MachineState now.
func SnapshotMachine() MachineState {
	var s MachineState
	s.Veths = VethLinks()
	s.Sysctls = readSysctls()
	for _, p := range nodeFixedPaths {
		if _, err := os.Lstat(p); err == nil {
			s.Paths = append(s.Paths, p)
		}
	}
	return s
}

// VethLinks lists the host's veth interfaces.
func VethLinks() []string {
	out, err := exec.Command("ip", "-o", "link", "show", "type", "veth").Output()
	if err != nil {
		return nil
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			names = append(names, strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0])
		}
	}
	return names
}

// EmptyDirFile reads a file of a pod's emptyDir volume where the kubelet
// keeps it on the node: what the pod's containers see in that volume.
func (n *RealNode) EmptyDirFile(podUID, volume, name string) ([]byte, error) {
	return os.ReadFile(filepath.Join(n.Dir, "kubelet", "pods", podUID, "volumes", "kubernetes.io~empty-dir", volume, name))
}

// RootReadOnly says whether the container's OCI runtime spec, as
// containerd holds it, mounts the root filesystem read-only: what the
// kubelet made of readOnlyRootFilesystem.
func (n *RealNode) RootReadOnly(containerID string) (bool, error) {
	out, err := exec.Command(filepath.Join(n.assets, "ctr"), "--address", filepath.Join(n.Dir, "containerd.sock"),
		"--namespace", "k8s.io", "containers", "info", containerID).Output()
	if err != nil {
		return false, fmt.Errorf("ctr containers info %s: %w", containerID, err)
	}
	var info struct {
		Spec struct {
			Root struct {
				Readonly bool `json:"readonly"`
			} `json:"root"`
		} `json:"Spec"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return false, fmt.Errorf("ctr containers info %s: %w", containerID, err)
	}
	return info.Spec.Root.Readonly, nil
}
