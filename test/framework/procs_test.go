package framework

import (
	"os"
	"os/exec"
	"slices"
	"strconv"
	"testing"
)

func TestChildrenAndProcStat(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if kids := Children(os.Getpid()); !slices.Contains(kids, cmd.Process.Pid) {
		t.Errorf("children of this process %v, want %d among them", kids, cmd.Process.Pid)
	}
	f, err := ProcStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if len(f) < 20 || f[1] != strconv.Itoa(os.Getpid()) || f[19] == "" {
		t.Errorf("stat fields %q: want the parent %d at [1] and a start time at [19]", f, os.Getpid())
	}
}
