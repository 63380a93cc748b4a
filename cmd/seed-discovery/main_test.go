package main

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peergroup/peergroup/cmd/seed-discovery/discovery"
	"github.com/peergroup/peergroup/test/dnszone"
)

func TestRunBadConfigExits2(t *testing.T) {
	t.Setenv("PEERGROUP_SERVICE", "")
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"--dns-server=127.0.0.1:1"}, &stderr)
	if discovery.Code(err) != discovery.ExitConfig || !strings.Contains(stderr.String(), "exit 2: configuration") {
		t.Fatalf("exit %d, stderr %q", discovery.Code(err), stderr.String())
	}
}

func TestRunWritesSeedsAndTerminationLog(t *testing.T) {
	z, err := dnszone.Start(0)
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	z.Set("cassandra.db.svc.cluster.local.", "", dnszone.Peer{IP: netip.MustParseAddr("127.0.0.1")})
	for k, v := range map[string]string{"PEERGROUP_SERVICE": "cassandra", "POD_NAMESPACE": "db", "POD_IPS": "127.0.0.1", "PEERGROUP_CLUSTER_DOMAIN": "cluster.local", "PEERGROUP_STABLE_MARGIN": "200ms"} {
		t.Setenv(k, v)
	}
	out := t.TempDir()
	var stderr bytes.Buffer
	if err := run(context.Background(), []string{"--dns-server=" + z.Addr, "--output-dir=" + out}, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	seeds, _ := os.ReadFile(filepath.Join(out, "seeds"))
	if string(seeds) != "127.0.0.1\n" {
		t.Errorf("seeds %q", seeds)
	}
	if !strings.Contains(stderr.String(), "decided after") {
		t.Errorf("no decision log line: %s", stderr.String())
	}

	// Failure: the reason goes to the termination log when it exists.
	z.Remove("cassandra.db.svc.cluster.local.")
	termLog := filepath.Join(t.TempDir(), "termination-log")
	if err := os.WriteFile(termLog, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PEERGROUP_TIMEOUT", "700ms")
	err = run(context.Background(), []string{"--dns-server=" + z.Addr, "--output-dir=" + t.TempDir(), "--termination-log=" + termLog}, &stderr)
	if discovery.Code(err) != discovery.ExitNoSelf {
		t.Fatalf("exit %d: %v", discovery.Code(err), err)
	}
	msg, _ := os.ReadFile(termLog)
	if !strings.Contains(string(msg), "exit 3") || !strings.Contains(string(msg), "never appeared") {
		t.Errorf("termination log %q", msg)
	}
}
