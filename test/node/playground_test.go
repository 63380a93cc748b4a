package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peergroup/peergroup/test/framework"
)

// TestPlayground is `make up` and `make down` as a user runs them: up
// leaves a cluster with a real node and the chart running after it
// returns, and prints the KUBECONFIG and PATH a user's kubectl works
// with; the process holding the cluster is then killed (as a closed
// laptop lid or an OOM kill would), and down removes everything it made.
func TestPlayground(t *testing.T) {
	if testing.Short() {
		t.Skip("real-node suite skipped by -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	assets, err := framework.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "playground")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./test/playground")
	build.Dir = framework.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./test/playground: %v\n%s", err, out)
	}
	dir := filepath.Join(t.TempDir(), "playground")
	before := framework.SnapshotMachine()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Dir = framework.RepoRoot()
		cmd.Env = append(os.Environ(), "PEERGROUP_PLAYGROUND_DIR="+dir, "KUBEBUILDER_ASSETS="+assets)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("playground %s: %v\n%s\n%s", strings.Join(args, " "), err, out.String(), framework.LogTail(filepath.Join(dir, "playground.log"), 30))
		}
		t.Logf("$ playground %s\n%s", strings.Join(args, " "), out.String())
		return out.String()
	}
	// A failure midway must not leave the playground holding the node
	// (and the machine's node lock) after the test: down, before the
	// temporary directories holding its binary and state go.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		cmd := exec.Command(bin, "down")
		cmd.Dir = framework.RepoRoot()
		cmd.Env = append(os.Environ(), "PEERGROUP_PLAYGROUND_DIR="+dir, "KUBEBUILDER_ASSETS="+assets)
		out, err := cmd.CombinedOutput()
		t.Logf("after the failure, playground down: %v\n%s", err, out)
	})
	out := run("up")
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if !strings.Contains(out, "export KUBECONFIG="+kubeconfig) || !strings.Contains(out, "export PATH="+assets+":$PATH") {
		t.Fatalf("up did not print the KUBECONFIG and PATH lines:\n%s", out)
	}
	if again := run("up"); !strings.Contains(again, "already up") {
		t.Errorf("a second up:\n%s", again)
	}
	// A user's commands, with what up printed.
	kubectl := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, filepath.Join(assets, "kubectl"), args...)
		cmd.Dir = framework.RepoRoot()
		cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "HOME="+t.TempDir())
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		return string(b)
	}
	if nodes := kubectl("get", "nodes"); !strings.Contains(nodes, framework.RealNodeName) || !strings.Contains(nodes, " Ready ") {
		t.Fatalf("kubectl get nodes:\n%s", nodes)
	}
	kubectl("create", "namespace", "mine")
	kubectl("apply", "-n", "mine", "-f", "docs/examples/nats.yaml")
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(kubectl("get", "pods", "-n", "mine"), "2/2     Running") {
		if time.Now().After(deadline) {
			t.Fatalf("the user's NATS pod not running on the playground:\n%s", kubectl("get", "pods", "-n", "mine", "-o", "wide"))
		}
		time.Sleep(time.Second)
	}
	if pod := kubectl("get", "pods", "-n", "mine", "-o", "jsonpath={.items[0].spec.initContainers[*].name}"); !strings.Contains(pod, "seed-discovery") {
		t.Errorf("the user's pod was not injected: init containers %q", pod)
	}

	// Killed, not stopped: down must clean up after it.
	type proc struct {
		Pid        int
		Exe, Start string
	}
	var s struct {
		Serve    proc
		Orphans  []proc
		TempDirs []string
	}
	data, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err == nil {
		err = json.Unmarshal(data, &s)
	}
	// Running: a record of a process that has exited (envtest's
	// `etcd --help`, caught by a scan before the next one dropped it) is
	// nothing down must kill.
	s.Orphans = slices.DeleteFunc(s.Orphans, func(o proc) bool {
		target, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", o.Pid))
		return target != o.Exe
	})
	if err != nil || s.Serve.Pid == 0 || len(s.Orphans) != 2 || len(s.TempDirs) == 0 {
		t.Fatalf("state (want the holder, etcd and kube-apiserver running, their directories): %v %s", err, data)
	}
	if err := syscall.Kill(s.Serve.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	for _, o := range s.Orphans {
		if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", o.Pid)); target != o.Exe {
			t.Fatalf("the kill took %s (pid %d) with it: this run does not show down cleaning up after a killed playground", o.Exe, o.Pid)
		}
	}
	run("down")
	if left := framework.Leftovers(framework.RealNodeDir(), assets, before); len(left) > 0 {
		t.Errorf("left after make down: %s", strings.Join(left, "; "))
	}
	for _, o := range s.Orphans {
		if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", o.Pid)); target == o.Exe {
			t.Errorf("the playground's %s (pid %d) is left", filepath.Base(o.Exe), o.Pid)
		}
	}
	for _, d := range append(s.TempDirs, dir) {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s is left: %v", d, err)
		}
	}
}
