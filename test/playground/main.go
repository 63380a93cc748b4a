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
	"syscall"
	"time"

	"github.com/peergroup/peergroup/test/framework"
)

// state is what up and serve record in Dir()/state.json, for down.
type state struct {
	// Serve is the pid of the process holding the cluster, Exe its binary.
	Serve int    `json:"serve"`
	Exe   string `json:"exe"`
	// Orphans are the pids of the control plane's processes that do not
	// die with serve (etcd, kube-apiserver), with their binaries.
	Orphans map[int]string `json:"orphans,omitempty"`
	// TempDirs are their data and certificate directories (envtest's,
	// under the temp dir), removed with them.
	TempDirs   []string `json:"tempDirs,omitempty"`
	Kubeconfig string   `json:"kubeconfig,omitempty"`
	Assets     string   `json:"assets,omitempty"`
	Ready      bool     `json:"ready"`
	Err        string   `json:"error,omitempty"`
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

// alive says whether pid still runs exe (not a reused pid).
func alive(pid int, exe string) bool {
	target, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	return err == nil && strings.TrimSuffix(target, " (deleted)") == exe
}

func up() error {
	if s, err := readState(); err == nil && alive(s.Serve, s.Exe) {
		if !s.Ready {
			return fmt.Errorf("a playground is starting (pid %d); `make down` to remove it", s.Serve)
		}
		fmt.Println("The playground is already up.")
		printUse(s)
		return nil
	}
	// Whatever a killed playground left goes first.
	if err := down(); err != nil {
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
	if err := writeState(state{Serve: cmd.Process.Pid, Exe: exe}); err != nil {
		return err
	}
	_ = cmd.Process.Release()
	fmt.Printf("Starting the playground (a local cluster with a real node, the chart installed by Helm); progress in %s\n", logf.Name())
	for deadline := time.Now().Add(15 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
		s, err := readState()
		switch {
		case err != nil:
		case s.Err != "":
			return fmt.Errorf("%s (log: %s; `make down` cleans up)", s.Err, logf.Name())
		case s.Ready:
			printUse(s)
			return nil
		case !alive(s.Serve, s.Exe):
			return fmt.Errorf("the playground exited while starting; the end of its log:\n%s", framework.LogTail(logf.Name(), 20))
		}
	}
	return fmt.Errorf("not ready after 15 minutes (log: %s)", logf.Name())
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
127.0.0.1 (nothing is pulled from beyond the machine). Pods need no node selector. Remove it all
with 'make down' (tests wait for the machine's node lock while it runs).
`, s.Kubeconfig, s.Assets)
}

// serve holds the cluster: it starts it, installs the chart, records
// what down needs, and stops it all on SIGTERM.
func serve() (err error) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	s, err := readState()
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			s.Err = err.Error()
			_ = writeState(s)
		}
	}()
	lc, err := framework.StartLocalCluster(ctx, framework.LocalClusterOptions{LogDir: filepath.Join(Dir(), "logs"), Progress: os.Stdout, RealNodeOnly: true})
	if err != nil {
		return err
	}
	defer lc.Stop()
	// envtest's etcd and kube-apiserver have no parent-death signal: down
	// kills them by these pids should this process be killed.
	s.Orphans = childrenRunning(os.Getpid(), "etcd", "kube-apiserver")
	for pid := range s.Orphans {
		s.TempDirs = append(s.TempDirs, framework.EnvtestDirs(pid)...)
	}
	s.Assets, _ = framework.AssetsDir()
	if err := writeState(s); err != nil {
		return err
	}
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
	s.Kubeconfig = filepath.Join(Dir(), "kubeconfig")
	data, err := os.ReadFile(lc.Kubeconfig)
	if err != nil {
		return err
	}
	if err := os.WriteFile(s.Kubeconfig, data, 0o600); err != nil {
		return err
	}
	s.Ready = true
	if err := writeState(s); err != nil {
		return err
	}
	fmt.Println("ready; holding the cluster until SIGTERM (make down)")
	<-ctx.Done()
	fmt.Println("stopping")
	return nil
}

// childrenRunning lists the children of pid running one of names, with
// their binaries.
func childrenRunning(pid int, names ...string) map[int]string {
	out := map[int]string{}
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
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", child))
		if err == nil && slices.Contains(names, filepath.Base(exe)) {
			out[child] = exe
		}
	}
	return out
}

// down stops a running playground (SIGTERM: it stops the cluster itself)
// or, when it was killed, kills what it recorded and cleans the node.
func down() error {
	s, err := readState()
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", filepath.Join(Dir(), "state.json"), err)
	}
	if alive(s.Serve, s.Exe) {
		fmt.Printf("stopping the playground (pid %d)\n", s.Serve)
		_ = syscall.Kill(s.Serve, syscall.SIGTERM)
		for deadline := time.Now().Add(90 * time.Second); alive(s.Serve, s.Exe) && time.Now().Before(deadline); {
			time.Sleep(250 * time.Millisecond)
		}
		if alive(s.Serve, s.Exe) {
			_ = syscall.Kill(s.Serve, syscall.SIGKILL)
		}
	}
	for pid, exe := range s.Orphans {
		if alive(pid, exe) {
			fmt.Printf("killing the playground's %s (pid %d)\n", filepath.Base(exe), pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
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
	lock, err := framework.LockRealNode(ctx)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := framework.CleanRealNode(framework.RealNodeDir()); err != nil {
		return fmt.Errorf("clean the node: %w", err)
	}
	if err := os.RemoveAll(Dir()); err != nil {
		return err
	}
	fmt.Println("the playground is down: nothing of it is left")
	return nil
}
