package framework

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// A container cgroup left frozen (runc killed while it froze the
// container to kill it) does not keep its processes from the kill.
func TestKillCgroupThawsAFrozenChild(t *testing.T) {
	const name = "peergroup-test-killcgroup"
	child := filepath.Join("/sys/fs/cgroup/freezer", name, "container")
	if err := os.MkdirAll(child, 0o755); err != nil {
		t.Fatalf("a v1 freezer cgroup (root, cgroup v1, as the real node needs): %v", err)
	}
	defer removeCgroup(name)
	cmd := exec.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	defer func() { _ = cmd.Process.Kill() }()
	// Runs first: a frozen process takes no signal.
	defer func() { _ = os.WriteFile(filepath.Join(child, "freezer.state"), []byte("THAWED"), 0o644) }()
	if err := os.WriteFile(filepath.Join(child, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(child, "freezer.state"), []byte("FROZEN"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := killCgroup(name); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the frozen process was not killed")
	}
}
