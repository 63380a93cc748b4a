// Command playground keeps the demo's cluster running for a user's own
// manifests: `make up` starts it (a real node, the chart installed by Helm)
// in the background and prints the KUBECONFIG to use; `make down` removes
// everything it made, also after `make up` (or the machine's process
// holding the cluster) was killed.
//
//	playground up     start, wait until ready, print how to use it
//	playground down   stop it and clean up what it made
//	playground serve  (internal) hold the cluster until SIGTERM
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/peergroup/peergroup/test/framework"
)

// state is what serve records in Dir()/state.json, for up and down.
type state struct {
	// Serve is the process holding the cluster.
	Serve proc `json:"serve"`
	// Orphans are the control plane's processes that do not die with
	// serve (etcd, kube-apiserver).
	Orphans []proc `json:"orphans,omitempty"`
	// TempDirs are their data and certificate directories (envtest's,
	// under the temp dir), removed with them.
	TempDirs   []string `json:"tempDirs,omitempty"`
	Kubeconfig string   `json:"kubeconfig,omitempty"`
	Assets     string   `json:"assets,omitempty"`
	Ready      bool     `json:"ready"`
	Err        string   `json:"error,omitempty"`
}

// proc names a process so that a reused pid is never taken for it: its
// binary and its start time (clock ticks after boot, /proc/PID/stat).
type proc struct {
	Pid   int    `json:"pid"`
	Exe   string `json:"exe"`
	Start string `json:"start"`
}

func procOf(pid int) (proc, bool) {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	start := startTime(pid)
	return proc{Pid: pid, Exe: strings.TrimSuffix(exe, " (deleted)"), Start: start}, err == nil && start != ""
}

// startTime is field 22 of /proc/PID/stat.
func startTime(pid int) string {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	if len(fields) < 20 {
		return ""
	}
	return fields[19]
}

// alive says whether p still runs (the same process, not a reused pid).
func (p proc) alive() bool {
	now, ok := procOf(p.Pid)
	return ok && p.Pid > 0 && now == p
}

// Dir holds the playground's state, logs and kubeconfig
// (PEERGROUP_PLAYGROUND_DIR, for the test of the playground itself).
func Dir() string {
	if d := os.Getenv("PEERGROUP_PLAYGROUND_DIR"); d != "" {
		return d
	}
	return filepath.Join(framework.RepoRoot(), ".cache", "playground")
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: playground up|down")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "up":
		err = up()
	case "down":
		err = down()
	case "serve":
		err = serve()
	default:
		err = fmt.Errorf("unknown command %q (up or down)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "playground:", err)
		os.Exit(1)
	}
}

func readState() (state, error) {
	var s state
	data, err := os.ReadFile(filepath.Join(Dir(), "state.json"))
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(data, &s)
}

func writeState(s state) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(Dir(), "state.json.tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(Dir(), "state.json"))
}

// lock serialises up and down (two ups, or a down during an up); the
// file is beside Dir, which down removes.
func lock() (func(), error) {
	if err := os.MkdirAll(filepath.Dir(Dir()), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(Dir()+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

func up() error {
	unlock, err := lock()
	if err != nil {
		return err
	}
	defer unlock()
	if s, err := readState(); err == nil && s.Serve.alive() {
		if !s.Ready {
			return fmt.Errorf("a playground is starting (pid %d); `make down` to remove it", s.Serve.Pid)
		}
		fmt.Println("The playground is already up.")
		printUse(s)
		return nil
	}
	// Whatever a killed playground left goes first.
	if err := clean(); err != nil {
		return err
	}
	if err := os.MkdirAll(Dir(), 0o755); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(Dir(), "playground.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(exe, "serve")
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own session: it outlives this command and the terminal.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	fmt.Printf("Starting the playground (a local cluster with a real node, the chart installed by Helm); progress in %s\n", logf.Name())
	for deadline := time.Now().Add(15 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
		s, err := readState()
		switch {
		case err != nil || s.Serve.Pid != pid:
			if _, running := procOf(pid); !running {
				return fmt.Errorf("the playground exited while starting; the end of its log:\n%s", framework.LogTail(logf.Name(), 20))
			}
		case s.Err != "":
			return fmt.Errorf("%s (log: %s; `make down` cleans up)", s.Err, logf.Name())
		case s.Ready:
			printUse(s)
			return nil
		case !s.Serve.alive():
			return fmt.Errorf("the playground exited while starting; the end of its log:\n%s", framework.LogTail(logf.Name(), 20))
		}
	}
	// Never a holder left running (it could wait for the node lock and
	// hold it for ever): stopped, and what it made removed.
	_ = syscall.Kill(pid, syscall.SIGTERM)
	_ = clean()
	return fmt.Errorf("not ready after 15 minutes; stopped (log was %s)", logf.Name())
}

func printUse(s state) {
	fmt.Printf(`
The playground is up: one real node (kubelet, containerd, runc) on 127.0.0.1, the chart installed in
peergroup-system. Use it with the kubectl and helm it was built with:

  export KUBECONFIG=%s
  export PATH=%s:$PATH    # kubectl, helm

  kubectl create namespace demo
  kubectl apply -n demo -f docs/examples/nats.yaml

Images: ghcr.io/peergroup/peergroup and docker.io/library/nats resolve to its registry on
127.0.0.1 (nothing is pulled from beyond the machine). Pods need no node selector. The chart is
installed; to change it, 'helm upgrade peergroup charts/peergroup -n peergroup-system
--reuse-values' from this checkout. Remove it all with 'make down' (tests wait for the machine's
node lock while it runs).
`, s.Kubeconfig, s.Assets)
}

// serve holds the cluster: it starts it, installs the chart, records
// what down needs, and stops it all on SIGTERM.
func serve() (err error) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	self, _ := procOf(os.Getpid())
	s := state{Serve: self}
	s.Assets, _ = framework.AssetsDir()
	var mu sync.Mutex
	save := func(change func(*state)) error {
		mu.Lock()
		defer mu.Unlock()
		change(&s)
		return writeState(s)
	}
	if err := save(func(*state) {}); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = save(func(s *state) { s.Err = err.Error() })
		}
	}()
	// envtest's etcd and kube-apiserver have no parent-death signal: down
	// kills them by what is recorded here should this process be killed,
	// from the moment they exist (a start takes a minute).
	recording := make(chan struct{})
	recorded := make(chan struct{})
	go func() {
		defer close(recorded)
		for {
			running := childrenRunning(os.Getpid(), "etcd", "kube-apiserver")
			_ = save(func(s *state) { recordOrphans(s, running, proc.alive, framework.EnvtestDirs) })
			select {
			case <-recording:
				return
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()
	lc, err := framework.StartLocalCluster(ctx, framework.LocalClusterOptions{LogDir: filepath.Join(Dir(), "logs"), Progress: os.Stdout, RealNodeOnly: true})
	close(recording)
	<-recorded
	if err != nil {
		return err
	}
	defer lc.Stop()
	fmt.Println("building and pushing the peergroup and NATS images")
	if _, err := framework.PushNodeImages(ctx, lc.Node); err != nil {
		return err
	}
	cmds, err := framework.UseItOnRealNode(Dir(), "--timeout", "3m")
	if err != nil {
		return err
	}
	if err := lc.Shell(ctx, os.Stdout, cmds[0]); err != nil {
		return err
	}
	kubeconfig := filepath.Join(Dir(), "kubeconfig")
	data, err := os.ReadFile(lc.Kubeconfig)
	if err != nil {
		return err
	}
	if err := os.WriteFile(kubeconfig, data, 0o600); err != nil {
		return err
	}
	if err := save(func(s *state) { s.Kubeconfig, s.Ready = kubeconfig, true }); err != nil {
		return err
	}
	fmt.Println("ready; holding the cluster until SIGTERM (make down)")
	<-ctx.Done()
	fmt.Println("stopping")
	return nil
}

// childrenRunning lists the children of pid running one of names.
// recordOrphans adds the control-plane processes running now to s, with
// their envtest directories, and drops those recorded that have exited:
// envtest runs `etcd --help` and `kube-apiserver --help` before starting
// them, children for a moment that a scan may catch.
func recordOrphans(s *state, running []proc, alive func(proc) bool, dirsOf func(pid int) []string) {
	s.Orphans = slices.DeleteFunc(s.Orphans, func(o proc) bool { return !alive(o) })
	for _, o := range running {
		if !slices.Contains(s.Orphans, o) {
			s.Orphans = append(s.Orphans, o)
			s.TempDirs = append(s.TempDirs, dirsOf(o.Pid)...)
		}
	}
}

func childrenRunning(pid int, names ...string) []proc {
	var out []proc
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		if err != nil {
			continue
		}
		// Field 4 (after the parenthesised command) is the parent pid.
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(fields) < 2 || fields[1] != strconv.Itoa(pid) {
			continue
		}
		if p, ok := procOf(child); ok && slices.Contains(names, filepath.Base(p.Exe)) {
			out = append(out, p)
		}
	}
	return out
}

// down stops a running playground (SIGTERM: it stops the cluster itself)
// or, when it was killed, kills what it recorded and cleans the node.
func down() error {
	unlock, err := lock()
	if err != nil {
		return err
	}
	defer unlock()
	return clean()
}

func clean() error {
	s, err := readState()
	if errors.Is(err, os.ErrNotExist) {
		return os.RemoveAll(Dir())
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", filepath.Join(Dir(), "state.json"), err)
	}
	if s.Serve.alive() {
		fmt.Printf("stopping the playground (pid %d)\n", s.Serve.Pid)
		_ = syscall.Kill(s.Serve.Pid, syscall.SIGTERM)
		for deadline := time.Now().Add(90 * time.Second); s.Serve.alive() && time.Now().Before(deadline); {
			time.Sleep(250 * time.Millisecond)
		}
		if s.Serve.alive() {
			_ = syscall.Kill(s.Serve.Pid, syscall.SIGKILL)
		}
	}
	for _, o := range s.Orphans {
		if o.alive() {
			fmt.Printf("killing the playground's %s (pid %d)\n", filepath.Base(o.Exe), o.Pid)
			_ = syscall.Kill(o.Pid, syscall.SIGKILL)
		}
	}
	for _, dir := range s.TempDirs {
		if framework.IsEnvtestDir(dir) {
			_ = os.RemoveAll(dir)
		}
	}
	// The node: what a killed playground left (its cgroup's processes,
	// mounts, bridge, files), under the machine's node lock.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nodeLock, err := framework.LockRealNode(ctx)
	if err != nil {
		return err
	}
	defer nodeLock.Close()
	if err := framework.CleanRealNode(framework.RealNodeDir()); err != nil {
		return fmt.Errorf("clean the node: %w", err)
	}
	if err := os.RemoveAll(Dir()); err != nil {
		return err
	}
	fmt.Println("the playground is down: nothing of it is left")
	return nil
}
