// Package node checks that the real node leaves nothing behind: after a
// run, and after a run killed halfway (its containers still running, its
// mounts and bridge still there) and started again. `go test -short`
// skips it.
package node

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/test/framework"
)

const helperEnv = "PEERGROUP_NODE_HELPER"

// TestMain runs the helper instead of the tests when the test binary is
// started as the run to kill.
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helper(os.Getenv(helperEnv)))
	}
	os.Exit(m.Run())
}

// helper starts a cluster with two real nodes, runs a pod on each, says
// READY and waits to be killed.
func helper(logDir string) int {
	ctx := context.Background()
	lc, err := framework.StartLocalCluster(ctx, framework.LocalClusterOptions{LogDir: logDir, Nodes: 1, RealNode: true, SecondRealNode: true})
	if err != nil {
		fmt.Println("helper:", err)
		return 1
	}
	if err := runPods(ctx, lc); err != nil {
		fmt.Println("helper:", err)
		return 1
	}
	fmt.Println("READY")
	select {}
}

// runPods runs a pause container on each real node and waits for them.
func runPods(ctx context.Context, lc *framework.LocalCluster) error {
	for _, n := range []*framework.RealNode{lc.Node, lc.Node.Second()} {
		if err := runPod(ctx, lc, n.Name); err != nil {
			return err
		}
	}
	return nil
}

// runPod runs a pause container on the real node named node and waits
// for it.
func runPod(ctx context.Context, lc *framework.LocalCluster, node string) error {
	pod := &corev1.Pod{}
	pod.Name, pod.Namespace = "held-"+strings.ReplaceAll(node, ".", "-"), "default"
	pod.Spec.NodeSelector = map[string]string{framework.RealNodeLabel: "true", "kubernetes.io/hostname": node}
	pod.Spec.Tolerations = []corev1.Toleration{{Key: framework.RealNodeTaint, Operator: corev1.TolerationOpExists}}
	pod.Spec.Containers = []corev1.Container{{Name: "held", Image: lc.Node.PauseImage}}
	// The namespace's default ServiceAccount comes from the controllers a
	// moment after they start.
	for start := time.Now(); ; time.Sleep(250 * time.Millisecond) {
		err := lc.Client.Create(ctx, pod)
		if err == nil {
			break
		}
		if time.Since(start) > 30*time.Second {
			return err
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		got := &corev1.Pod{}
		if err := lc.Client.Get(ctx, client.ObjectKeyFromObject(pod), got); err != nil {
			return err
		}
		if got.Status.Phase == corev1.PodRunning {
			return nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("pod on the real node %s not running after 2m", node)
}

func TestNothingLeftAfterARunAndAKilledRun(t *testing.T) {
	if testing.Short() {
		t.Skip("real-node suite skipped by -short")
	}
	assets, err := framework.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := framework.RealNodeDir()
	// The node lock is held from here to the end of the killed run's
	// cleanup, across the kill (the helper runs its node under this
	// lock), so no other package's node starts or cleans up meanwhile.
	lock, err := framework.LockRealNode(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	before := framework.SnapshotMachine()

	// Orphans of the killed run become this process's children (not
	// init's), so the control plane it leaves (envtest's kube-apiserver and
	// etcd, which have no parent-death signal) is found by parentage and
	// stopped here; the node's own leftovers are the next start's job.
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		t.Fatalf("prctl(PR_SET_CHILD_SUBREAPER): %v", errno)
	}
	t.Cleanup(reapChildren)

	t.Run("a run killed halfway", func(t *testing.T) {
		logDir := t.TempDir()
		defer lock.Close()
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), helperEnv+"="+logDir, "PEERGROUP_NODE_LOCK_FD=3")
		cmd.ExtraFiles = []*os.File{lock}
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ready := make(chan error, 1)
		go func() {
			s := bufio.NewScanner(out)
			for s.Scan() {
				if s.Text() == "READY" {
					ready <- nil
					return
				}
				fmt.Println("    helper:", s.Text())
			}
			ready <- fmt.Errorf("helper exited before READY")
		}()
		select {
		case err := <-ready:
			if err != nil {
				_ = cmd.Process.Kill()
				t.Fatal(err)
			}
		case <-time.After(4 * time.Minute):
			_ = cmd.Process.Kill()
			t.Fatal("helper not READY after 4m")
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		killOrphanedControlPlane(t, assets)
		// The kill must have left the node's work behind, or this test
		// proves nothing: its pod's processes, mounts and bridge remain.
		left := framework.Leftovers(dir, assets, before)
		if !hasKind(left, "cgroup") || !hasKind(left, "mounts") || !hasKind(left, "bridge") {
			t.Fatalf("the killed run left too little to test the cleanup: %v", left)
		}
		// The second node's own cgroup and mounts among them.
		if !strings.Contains(strings.Join(left, " "), framework.RealNodeCgroup+"-b/") || !strings.Contains(strings.Join(left, " "), dir+"-b/") {
			t.Fatalf("the killed run left nothing of the second node to test its cleanup: %v", left)
		}
		t.Logf("the killed run left %d things, e.g. %s", len(left), strings.Join(left[:min(3, len(left))], "; "))
		// What the next node's start runs first.
		if err := framework.CleanRealNode(dir); err != nil {
			t.Fatalf("cleanup of the killed run: %v", err)
		}
		if left := framework.Leftovers(dir, assets, before); len(left) > 0 {
			t.Fatalf("left after cleaning up the killed run: %s", strings.Join(left, "; "))
		}
	})

	t.Run("started again and stopped: nothing left", func(t *testing.T) {
		lc, err := framework.StartLocalCluster(context.Background(), framework.LocalClusterOptions{LogDir: filepath.Join(t.TempDir(), "logs"), Nodes: 1, RealNode: true, SecondRealNode: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := runPods(context.Background(), lc); err != nil {
			lc.Stop()
			t.Fatal(err)
		}
		lc.Stop()
		if left := lc.Node.Left; len(left) > 0 {
			t.Fatalf("left after the run: %s", strings.Join(left, "; "))
		}
	})
}

func hasKind(left []string, kind string) bool {
	for _, l := range left {
		if strings.HasPrefix(l, kind+" ") {
			return true
		}
	}
	return false
}

const prSetChildSubreaper = 36

// killOrphanedControlPlane kills this process's children that run
// kube-apiserver or etcd from assets: the killed run's control plane.
func killOrphanedControlPlane(t *testing.T, assets string) {
	t.Helper()
	// /proc/PID/exe names the binary's real path: compare with the assets'
	// real path too (a cache reached through a symbolic link).
	if real, err := filepath.EvalSymlinks(assets); err == nil {
		assets = real
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var orphans []int
		stats, _ := filepath.Glob("/proc/[0-9]*/stat")
		for _, st := range stats {
			data, err := os.ReadFile(st)
			if err != nil {
				continue
			}
			// pid (comm) state ppid ...: comm may hold spaces, so read after ")".
			fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
			if len(fields) < 2 || fields[1] != fmt.Sprint(os.Getpid()) {
				continue
			}
			exe, _ := os.Readlink(filepath.Join(filepath.Dir(st), "exe"))
			if exe == filepath.Join(assets, "kube-apiserver") || exe == filepath.Join(assets, "etcd") {
				var pid int
				fmt.Sscan(filepath.Base(filepath.Dir(st)), &pid)
				orphans = append(orphans, pid)
			}
		}
		if len(orphans) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("orphaned control plane %v does not exit", orphans)
		}
		for _, pid := range orphans {
			// Its envtest was killed too: nothing else removes its dirs.
			dirs := framework.EnvtestDirs(pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
			var ws syscall.WaitStatus
			_, _ = syscall.Wait4(pid, &ws, 0, nil)
			for _, d := range dirs {
				_ = os.RemoveAll(d)
			}
		}
	}
}

// reapChildren collects exited orphans (the killed run's shims, once the
// next start killed them) so none stays a zombie.
func reapChildren() {
	for {
		var ws syscall.WaitStatus
		if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
			return
		}
	}
}
