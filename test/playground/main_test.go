package main

import (
	"slices"
	"testing"
)

// The recorded control plane is what down kills after a killed up: a
// process seen once and gone since (envtest's `etcd --help`) leaves the
// record; one still running stays, recorded once, with its directories.
func TestRecordOrphans(t *testing.T) {
	help := proc{Pid: 10, Exe: "/bin/etcd", Start: "100"}
	etcd := proc{Pid: 11, Exe: "/bin/etcd", Start: "101"}
	apiserver := proc{Pid: 12, Exe: "/bin/kube-apiserver", Start: "150"}
	exited := map[proc]bool{}
	alive := func(p proc) bool { return !exited[p] }
	dirsOf := func(pid int) []string {
		if pid == etcd.Pid {
			return []string{"/tmp/k8s_test_framework_1"}
		}
		return nil
	}
	var s state
	recordOrphans(&s, []proc{help, etcd}, alive, dirsOf)
	exited[help] = true
	recordOrphans(&s, []proc{etcd}, alive, dirsOf)
	recordOrphans(&s, []proc{etcd, apiserver}, alive, dirsOf)
	if want := []proc{etcd, apiserver}; !slices.Equal(s.Orphans, want) {
		t.Errorf("orphans %v, want %v", s.Orphans, want)
	}
	if want := []string{"/tmp/k8s_test_framework_1"}; !slices.Equal(s.TempDirs, want) {
		t.Errorf("temp dirs %v, want %v", s.TempDirs, want)
	}
}
