package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/peergroup/peergroup/inspect"
)

// The table's ROLE: what seed-discovery decided; "decided" when its log
// no longer shows it; "deciding" while it runs; "-" where nothing
// decides (not injected, or its seed-discovery has not run).
func TestStatusTableRole(t *testing.T) {
	s := inspect.GroupStatus{Group: "nats", Namespace: "ns", OneSeedList: true, Members: []inspect.MemberStatus{
		{Pod: "founder", Injected: true, Started: true, Role: "founder", Seeds: []string{"10.0.0.1"}, Peers: 1},
		{Pod: "rotated", Injected: true, Started: true, Decided: true, Peers: -1, Note: "decided; its log no longer shows the decision"},
		{Pod: "running", Injected: true, Started: true, Peers: -1},
		{Pod: "pending", Injected: true, Peers: -1, Note: "seed-discovery not started"},
		{Pod: "bare", Peers: -1, Problems: []string{"not injected"}},
	}}
	var out bytes.Buffer
	if err := writeStatus(&out, s); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"founder": "founder", "rotated": "decided", "running": "deciding", "pending": "-", "bare": "-"}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2+len(want) {
		t.Fatalf("status table:\n%s", out.String())
	}
	for _, line := range lines[2:] {
		f := strings.Fields(line)
		if len(f) < 5 || f[4] != want[f[0]] {
			t.Errorf("ROLE of %q, want %q", line, want[f[0]])
		}
	}
}
