package discovery

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/test/dnszone"
)

// keep starts Keep after a first decision and returns a stop that waits for
// it to return (and fails the test if it returned an error or did not stop).
func keep(t *testing.T, c Config) (stop func(), log func() string, queries func() int64) {
	t.Helper()
	r, buf := runner(c)
	d, err := r.Run(context.Background())
	if err != nil {
		t.Fatalf("first decision: %v\n%s", err, buf)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Keep(ctx, d) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Keep: %v", err)
				}
			case <-time.After(2 * time.Second):
				t.Error("Keep did not stop with its context")
			}
		})
	}
	t.Cleanup(stop)
	return stop, func() string { return buf.String() }, r.Resolver.Queries
}

func readFile(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitFile waits until the file holds want, for at most bound.
func waitFile(t *testing.T, dir, name, want string, bound time.Duration) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		got := readFile(t, dir, name)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %q after %s, want %q", name, got, bound, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The sidecar keeps the peer files equal to the Service's members within
// about one interval, never touches the seed files, keeps the files through
// DNS errors and views without itself, and stops with its context.
func TestKeepFollowsThePeers(t *testing.T) {
	z := startZone(t, 0)
	z.Set(fqdn, "", loopPeers("127.0.0.1", "127.0.0.2", "127.0.0.3")...)
	c := testConfig(t, z, "127.0.0.2")
	c.Refresh, c.SeedCount = 100*time.Millisecond, 2
	stop, log, _ := keep(t, c)
	seeds := readFile(t, c.OutputDir, contract.SeedsFileName)
	if seeds != "127.0.0.1,127.0.0.2\n" {
		t.Fatalf("seeds %q", seeds)
	}
	const bound = 500 * time.Millisecond // interval × 1.2 plus a round, with room

	z.Set(fqdn, "", loopPeers("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")...)
	waitFile(t, c.OutputDir, contract.PeerHostsFileName, "127.0.0.1\n127.0.0.2\n127.0.0.3\n127.0.0.4\n127.0.0.5\n", bound)
	waitFile(t, c.OutputDir, contract.PeersFileName, "127.0.0.1\n127.0.0.2\n127.0.0.3\n127.0.0.4\n127.0.0.5\n", bound)

	// The founder and a seed gone: the peers follow, the seeds stay.
	z.Set(fqdn, "", loopPeers("127.0.0.2", "127.0.0.5")...)
	waitFile(t, c.OutputDir, contract.PeerHostsFileName, "127.0.0.2\n127.0.0.5\n", bound)
	if got := readFile(t, c.OutputDir, contract.SeedsFileName); got != seeds {
		t.Errorf("seeds rewritten: %q", got)
	}
	d, ok, err := LoadDecision(c.OutputDir)
	if err != nil || !ok || d.Refreshed == nil || len(d.Peers) != 2 || strings.Join(d.SeedHosts, ",") != "127.0.0.1,127.0.0.2" {
		t.Errorf("discovery.json after refresh: %+v ok=%v err=%v", d, ok, err)
	}

	// Wrong views keep the files: without this pod, empty, DNS errors.
	for _, wrong := range []func(){
		func() { z.Set(fqdn, "", loopPeers("127.0.0.5")...) },
		func() { z.Remove(fqdn) },
		func() { z.Set(fqdn, "", loopPeers("127.0.0.2", "127.0.0.9")...); z.SetMode(dnszone.ServFail) },
	} {
		wrong()
		time.Sleep(bound)
		if got := readFile(t, c.OutputDir, contract.PeerHostsFileName); got != "127.0.0.2\n127.0.0.5\n" {
			t.Fatalf("peer-hosts after a wrong view: %q\n%s", got, log())
		}
	}
	z.SetMode(dnszone.Normal)
	waitFile(t, c.OutputDir, contract.PeerHostsFileName, "127.0.0.2\n127.0.0.9\n", bound)
	stop()
	for _, want := range []string{"own IP [127.0.0.2] not in this view", "peer files kept: query A", "peers changed: 2 pods [127.0.0.2 127.0.0.9]"} {
		if !strings.Contains(log(), want) {
			t.Errorf("log lacks %q:\n%s", want, log())
		}
	}
}

// The sidecar's DNS cost: one observation (A and AAAA) per round, and with
// seed-address=hostname one PTR query per address it has no name for yet.
func TestKeepQueryBudget(t *testing.T) {
	for _, tc := range []struct {
		name    string
		address contract.SeedAddress
		pods    []dnszone.Pod
		podName string
		noPTR   bool
	}{
		{"ip", contract.AddressIP, nil, "", false},
		{"hostname", contract.AddressHostname, []dnszone.Pod{
			{Hostname: "cassandra-0", IPs: addrList("127.0.0.1")},
			{Hostname: "cassandra-1", IPs: addrList("127.0.0.2")},
			{Hostname: "cassandra-2", IPs: addrList("127.0.0.3")},
		}, "", false},
		// Names needed (a StatefulSet-like pod name) but none served: the
		// unnamed addresses are not asked again every round.
		{"ordinal pod, no PTR records", contract.AddressIP, nil, "cassandra-2", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			z := startZone(t, 0)
			peers := loopPeers("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6")
			if tc.pods != nil {
				peers = dnszone.Endpoints(tc.pods...)
			}
			z.Set(fqdn, "", peers...)
			z.ServePTR(!tc.noPTR)
			c := testConfig(t, z, "127.0.0.3")
			c.Refresh, c.SeedAddress = 50*time.Millisecond, tc.address
			if tc.podName != "" {
				c.PodName = tc.podName
			}
			stop, log, queries := keep(t, c)
			before := queries()
			time.Sleep(time.Second)
			stop()
			sent := queries() - before
			// 1s / (50ms × 0.8) = 25 rounds at most, two queries each.
			if sent < 2*10 || sent > 2*25+1 {
				t.Errorf("%d queries in 1s at a 50ms interval, want 2 per round (10..25 rounds)\n%s", sent, log())
			}
		})
	}
}

func addrList(ips ...string) []netip.Addr {
	out := make([]netip.Addr, len(ips))
	for i, s := range ips {
		out[i] = ip(s)
	}
	return out
}

// A restarted sidecar finds its decision in the volume and keeps its seeds
// (main decides again only when there is none).
func TestLoadDecision(t *testing.T) {
	dir := t.TempDir()
	if _, ok, err := LoadDecision(dir); ok || err != nil {
		t.Fatalf("empty dir: ok=%v err=%v", ok, err)
	}
	d := Decision{Role: RoleSeed, Seeds: addrList("10.0.0.1"), Peers: []Pod{{IPs: addrList("10.0.0.1")}}}
	Hosts(&d, Addressing{Mode: contract.AddressIP})
	if err := Write(dir, d); err != nil {
		t.Fatal(err)
	}
	got, ok, err := LoadDecision(dir)
	if err != nil || !ok || got.Role != RoleSeed || strings.Join(got.SeedHosts, ",") != "10.0.0.1" {
		t.Fatalf("got %+v ok=%v err=%v", got, ok, err)
	}
	// Forget: the probe fails until the next decision.
	if err := Forget(dir); err != nil || Decided(dir) {
		t.Fatalf("Forget: %v, decided %v", err, Decided(dir))
	}
	if err := Forget(dir); err != nil {
		t.Fatalf("Forget twice: %v", err)
	}
	if err := Write(dir, d); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, contract.DiscoveryFileName), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadDecision(dir); err == nil || !strings.Contains(err.Error(), "previous decision") {
		t.Errorf("corrupt discovery.json: %v", err)
	}
}

// A StatefulSet's sidecar with seed-address=hostname: a new pod, named
// only by its PTR record, reaches the peer files by its name within a few
// rounds (the PTR lookup of an address without a name, and its answer
// taken).
func TestKeepNamesANewStatefulSetPod(t *testing.T) {
	z := startZone(t, 0)
	pod := func(i int) dnszone.Pod {
		return dnszone.Pod{Hostname: fmt.Sprintf("cassandra-%d", i), IPs: addrList(fmt.Sprintf("127.0.0.%d", i+1))}
	}
	z.Set(fqdn, "", dnszone.Endpoints(pod(0), pod(1), pod(2))...)
	c := testConfig(t, z, "127.0.0.2")
	c.PodName, c.SeedAddress, c.Refresh = "cassandra-1", contract.AddressHostname, 50*time.Millisecond
	_, log, _ := keep(t, c)
	name := func(i int) string { return fmt.Sprintf("cassandra-%d.%s\n", i, strings.TrimSuffix(fqdn, ".")) }
	if got := readFile(t, c.OutputDir, contract.PeerHostsFileName); got != name(0)+name(1)+name(2) {
		t.Fatalf("peer-hosts at the decision: %q", got)
	}
	z.Set(fqdn, "", dnszone.Endpoints(pod(0), pod(1), pod(2), pod(3))...)
	deadline := time.Now().Add(2 * time.Second)
	for readFile(t, c.OutputDir, contract.PeerHostsFileName) != name(0)+name(1)+name(2)+name(3) {
		if time.Now().After(deadline) {
			t.Fatalf("the new pod's name never reached peer-hosts: %q\n%s", readFile(t, c.OutputDir, contract.PeerHostsFileName), log())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A view that does not change rewrites no file and logs no change.
func TestKeepSteadyViewWritesNothing(t *testing.T) {
	z := startZone(t, 0)
	z.Set(fqdn, "", loopPeers("127.0.0.1", "127.0.0.2", "127.0.0.3")...)
	c := testConfig(t, z, "127.0.0.2")
	c.Refresh = 30 * time.Millisecond
	stop, log, _ := keep(t, c)
	stat := func(name string) time.Time {
		info, err := os.Stat(filepath.Join(c.OutputDir, name))
		if err != nil {
			t.Fatal(err)
		}
		return info.ModTime()
	}
	files := []string{contract.DiscoveryFileName, contract.PeersFileName, contract.PeerHostsFileName}
	before := map[string]time.Time{}
	for _, f := range files {
		before[f] = stat(f)
	}
	time.Sleep(400 * time.Millisecond) // at least 10 rounds
	stop()
	for _, f := range files {
		if !stat(f).Equal(before[f]) {
			t.Errorf("%s rewritten in a steady view", f)
		}
	}
	if strings.Contains(log(), "peers changed") {
		t.Errorf("a change logged in a steady view:\n%s", log())
	}
}

// A pod whose port alone changed is a change of the peers (the host:port
// files follow it); the same pods are none.
func TestSamePods(t *testing.T) {
	a := []Pod{{Hostname: "db-0", IPs: addrList("10.0.0.1"), Port: 7000}, {IPs: addrList("10.0.0.2"), Port: 7000}}
	for _, tc := range []struct {
		name string
		edit func([]Pod)
		same bool
	}{
		{"unchanged", func([]Pod) {}, true},
		{"port", func(p []Pod) { p[1].Port = 7001 }, false},
		{"hostname", func(p []Pod) { p[0].Hostname = "db-9" }, false},
		{"address", func(p []Pod) { p[1].IPs = addrList("10.0.0.3") }, false},
	} {
		b := slices.Clone(a)
		b[0].IPs, b[1].IPs = slices.Clone(a[0].IPs), slices.Clone(a[1].IPs)
		tc.edit(b)
		if got := samePods(a, b); got != tc.same {
			t.Errorf("%s: samePods = %v, want %v", tc.name, got, tc.same)
		}
	}
	if samePods(a, a[:1]) {
		t.Error("a pod gone is no change")
	}
}

// A reason to keep the files is logged once while it lasts, not every
// round.
func TestKeepLogsAReasonOnce(t *testing.T) {
	z := startZone(t, 0)
	z.Set(fqdn, "", loopPeers("127.0.0.1", "127.0.0.2")...)
	c := testConfig(t, z, "127.0.0.2")
	c.Refresh = 30 * time.Millisecond
	stop, log, _ := keep(t, c)
	z.Set(fqdn, "", loopPeers("127.0.0.1")...) // without this pod
	time.Sleep(400 * time.Millisecond)         // at least 10 rounds
	stop()
	if n := strings.Count(log(), "own IP [127.0.0.2] not in this view"); n != 1 {
		t.Errorf("the reason logged %d times, want once:\n%s", n, log())
	}
}

// An address whose pod changed without leaving the view (a quick IP
// reuse) gets its new name when every name is asked again, every
// renameRounds rounds.
func TestKeepRenamesEveryRenameRounds(t *testing.T) {
	z := startZone(t, 0)
	pods := []dnszone.Pod{{Hostname: "cassandra-0", IPs: addrList("127.0.0.1")}, {Hostname: "cassandra-1", IPs: addrList("127.0.0.2")}, {Hostname: "cassandra-2", IPs: addrList("127.0.0.3")}}
	z.Set(fqdn, "", dnszone.Endpoints(pods...)...)
	c := testConfig(t, z, "127.0.0.2")
	c.PodName, c.SeedAddress, c.Refresh = "cassandra-1", contract.AddressHostname, 10*time.Millisecond
	_, log, _ := keep(t, c)
	pods[2].Hostname = "cassandra-7"
	z.Set(fqdn, "", dnszone.Endpoints(pods...)...)
	deadline := time.Now().Add(5 * time.Second) // 60 rounds of at most 12 ms, with room
	for !strings.Contains(readFile(t, c.OutputDir, contract.PeerHostsFileName), "cassandra-7.") {
		if time.Now().After(deadline) {
			t.Fatalf("the new name never reached peer-hosts:\n%s", log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestListHosts(t *testing.T) {
	ten := strings.Split("a b c d e f g h i j", " ")
	if got := listHosts(ten); strings.Contains(got, "…") {
		t.Errorf("ten hosts cut: %s", got)
	}
	if got := listHosts(append(ten, "k")); !strings.HasSuffix(got, " …") || strings.Contains(got, "k") {
		t.Errorf("eleven hosts: %s", got)
	}
}
