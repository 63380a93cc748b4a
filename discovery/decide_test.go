package discovery

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func peersOf(ips ...string) []Peer {
	out := make([]Peer, len(ips))
	for i, s := range ips {
		out[i] = Peer{IP: ip(s)}
	}
	return out
}

// dashed gives each address the name CoreDNS gives an endpoint without a
// hostname: its IP with dashes.
func dashed(ips ...string) []Peer {
	out := peersOf(ips...)
	for i := range out {
		out[i].Hostname = strings.NewReplacer(".", "-", ":", "-").Replace(out[i].IP.String())
	}
	return out
}

func TestDecide(t *testing.T) {
	sts := []Peer{{IP: ip("10.0.0.9"), Hostname: "cassandra-0"}, {IP: ip("10.0.0.5"), Hostname: "cassandra-1"}, {IP: ip("10.0.0.1"), Hostname: "cassandra-2"}}
	// Dual-stack StatefulSet pods: each hostname on an IPv4 and an IPv6 address.
	dual := []Peer{{IP: ip("fd00::2"), Hostname: "db-1"}, {IP: ip("10.0.0.1"), Hostname: "db-0"}, {IP: ip("10.0.0.2"), Hostname: "db-1"}, {IP: ip("fd00::1"), Hostname: "db-0"}}
	dual3 := []Peer{{IP: ip("10.0.0.1"), Hostname: "db-2"}, {IP: ip("fd00::1"), Hostname: "db-2"}, {IP: ip("10.0.0.2"), Hostname: "db-1"}, {IP: ip("fd00::2"), Hostname: "db-1"}, {IP: ip("10.0.0.9"), Hostname: "db-0"}, {IP: ip("fd00::9"), Hostname: "db-0"}}
	cases := []struct {
		name      string
		in        Inputs
		wantRole  string
		wantSeeds string
		waiting   string
	}{
		{name: "lone pod founds", in: Inputs{Peers: peersOf("10.0.0.1"), Self: []netip.Addr{ip("10.0.0.1")}, SeedCount: 3, ExpectedPeers: 1, Founding: FoundLowest}, wantRole: RoleFounder, wantSeeds: "[10.0.0.1]"},
		{name: "lone pod expecting three waits", in: Inputs{Peers: peersOf("10.0.0.1"), Self: []netip.Addr{ip("10.0.0.1")}, SeedCount: 3, ExpectedPeers: 3, Founding: FoundLowest}, waiting: "1 of 3 expected peers visible"},
		{name: "self missing", in: Inputs{Peers: peersOf("10.0.0.2"), Self: []netip.Addr{ip("10.0.0.1")}, SeedCount: 3, ExpectedPeers: 1, Founding: FoundLowest}, waiting: "own IP not in"},
		{name: "ip order seeds", in: Inputs{Peers: peersOf("10.0.0.30", "10.0.0.4", "10.0.0.200", "10.0.0.1"), Self: []netip.Addr{ip("10.0.0.30")}, SeedCount: 2, ExpectedPeers: 1, Founding: FoundLowest}, wantRole: RoleJoiner, wantSeeds: "[10.0.0.1 10.0.0.4]"},
		{name: "second seed", in: Inputs{Peers: peersOf("10.0.0.30", "10.0.0.4", "10.0.0.1"), Self: []netip.Addr{ip("10.0.0.4")}, SeedCount: 2, ExpectedPeers: 1, Founding: FoundLowest}, wantRole: RoleSeed, wantSeeds: "[10.0.0.1 10.0.0.4]"},
		{name: "never founds", in: Inputs{Peers: peersOf("10.0.0.1"), Self: []netip.Addr{ip("10.0.0.1")}, SeedCount: 3, ExpectedPeers: 1, Founding: FoundNever}, waiting: "founding=never"},
		{name: "ordinal order beats ip order", in: Inputs{Peers: sts, Self: []netip.Addr{ip("10.0.0.1")}, SeedCount: 1, ExpectedPeers: 1, Founding: FoundOrdinal0}, wantRole: RoleJoiner, wantSeeds: "[10.0.0.9]"},
		{name: "ordinal 0 founds", in: Inputs{Peers: sts, Self: []netip.Addr{ip("10.0.0.9")}, SeedCount: 2, ExpectedPeers: 1, Founding: FoundOrdinal0}, wantRole: RoleFounder, wantSeeds: "[10.0.0.9 10.0.0.5]"},
		{name: "ordinal0 waits for pod 0", in: Inputs{Peers: sts[1:], Self: []netip.Addr{ip("10.0.0.1")}, SeedCount: 2, ExpectedPeers: 1, Founding: FoundOrdinal0}, waiting: "waiting for ordinal 0"},
		{name: "ordinal0 without hostnames waits", in: Inputs{Peers: peersOf("10.0.0.1"), Self: []netip.Addr{ip("10.0.0.1")}, SeedCount: 2, ExpectedPeers: 1, Founding: FoundOrdinal0}, waiting: "ordinal hostname"},
		{name: "live peer beyond the seeds means join even when lowest", in: Inputs{Peers: peersOf("10.0.0.1", "10.0.0.2", "10.0.0.3"), Self: []netip.Addr{ip("10.0.0.1")}, SeedCount: 2, ExpectedPeers: 5, Founding: FoundLowest, Live: map[netip.Addr]bool{ip("10.0.0.3"): true}}, wantRole: RoleJoiner, wantSeeds: "[10.0.0.3]"},
		// The first pod whose live peers are all its seeds takes the seeds
		// every other pod took (one seed list for Akka, Elasticsearch).
		{name: "first pod, live peers among its seeds: the same seeds as the others", in: Inputs{Peers: peersOf("10.0.0.1", "10.0.0.2", "10.0.0.3"), Self: []netip.Addr{ip("10.0.0.1")}, SeedCount: 3, ExpectedPeers: 5, Founding: FoundLowest, Live: map[netip.Addr]bool{ip("10.0.0.3"): true}}, wantRole: RoleSeed, wantSeeds: "[10.0.0.1 10.0.0.2 10.0.0.3]"},
		{name: "second pod, live peer among its seeds: still a joiner of the live", in: Inputs{Peers: peersOf("10.0.0.1", "10.0.0.2", "10.0.0.3"), Self: []netip.Addr{ip("10.0.0.2")}, SeedCount: 3, ExpectedPeers: 1, Founding: FoundLowest, Live: map[netip.Addr]bool{ip("10.0.0.1"): true}}, wantRole: RoleJoiner, wantSeeds: "[10.0.0.1]"},
		// Safe founding: beside others that all refuse the peer port, the
		// first pod waits (they may run and be unreachable from here); the
		// others take their roles from the order, so the group still starts.
		{name: "probing with nobody live: the first does not found beside others", in: Inputs{Peers: peersOf("10.0.0.1", "10.0.0.2"), Self: []netip.Addr{ip("10.0.0.1")}, SeedCount: 3, ExpectedPeers: 1, Founding: FoundLowest, Live: map[netip.Addr]bool{}}, waiting: "the Service lists 1 other pods and none answers on the peer port"},
		{name: "probing with nobody live: ordinal0 waits the same", in: Inputs{Peers: []Peer{{IP: ip("10.0.0.9"), Hostname: "db-0"}, {IP: ip("10.0.0.1"), Hostname: "db-1"}}, Self: []netip.Addr{ip("10.0.0.9")}, SeedCount: 2, ExpectedPeers: 1, Founding: FoundOrdinal0, Live: map[netip.Addr]bool{}}, waiting: "none answers on the peer port"},
		{name: "probing with nobody live: a second pod is a seed", in: Inputs{Peers: peersOf("10.0.0.1", "10.0.0.2", "10.0.0.3"), Self: []netip.Addr{ip("10.0.0.2")}, SeedCount: 2, ExpectedPeers: 1, Founding: FoundLowest, Live: map[netip.Addr]bool{}}, wantRole: RoleSeed, wantSeeds: "[10.0.0.1 10.0.0.2]"},
		{name: "probing with nobody live: a third pod joins the seeds", in: Inputs{Peers: peersOf("10.0.0.1", "10.0.0.2", "10.0.0.3"), Self: []netip.Addr{ip("10.0.0.3")}, SeedCount: 2, ExpectedPeers: 1, Founding: FoundLowest, Live: map[netip.Addr]bool{}}, wantRole: RoleJoiner, wantSeeds: "[10.0.0.1 10.0.0.2]"},
		{name: "probing alone: founds", in: Inputs{Peers: peersOf("10.0.0.1"), Self: []netip.Addr{ip("10.0.0.1")}, SeedCount: 3, ExpectedPeers: 1, Founding: FoundLowest, Live: map[netip.Addr]bool{}}, wantRole: RoleFounder, wantSeeds: "[10.0.0.1]"},
		{name: "mixed ordinal bases use ip order", in: Inputs{Peers: []Peer{{IP: ip("10.0.0.9"), Hostname: "a-0"}, {IP: ip("10.0.0.1"), Hostname: "b-1"}}, Self: []netip.Addr{ip("10.0.0.9")}, SeedCount: 1, ExpectedPeers: 1, Founding: FoundLowest}, wantRole: RoleJoiner, wantSeeds: "[10.0.0.1]"},

		// Dual stack: peers are pods. Two pods with an IPv4 and an IPv6
		// address each are two peers, whether DNS names them or not.
		{name: "dual stack named: two pods are not three peers", in: Inputs{Peers: dual, Self: []netip.Addr{ip("10.0.0.1"), ip("fd00::1")}, SeedCount: 2, ExpectedPeers: 3, Founding: FoundLowest}, waiting: "2 of 3 expected peers visible"},
		{name: "dual stack named: two pods are two peers", in: Inputs{Peers: dual, Self: []netip.Addr{ip("10.0.0.1"), ip("fd00::1")}, SeedCount: 3, ExpectedPeers: 2, Founding: FoundLowest}, wantRole: RoleFounder, wantSeeds: "[10.0.0.1 fd00::1 10.0.0.2 fd00::2]"},
		{name: "dual stack named: seeds are distinct pods, every address of each", in: Inputs{Peers: dual3, Self: []netip.Addr{ip("fd00::2"), ip("10.0.0.2")}, SeedCount: 2, ExpectedPeers: 3, Founding: FoundOrdinal0}, wantRole: RoleSeed, wantSeeds: "[10.0.0.9 fd00::9 10.0.0.2 fd00::2]"},
		{name: "dual stack named: self known by its IPv6 address", in: Inputs{Peers: dual3, Self: []netip.Addr{ip("fd00::1")}, SeedCount: 1, ExpectedPeers: 3, Founding: FoundOrdinal0}, wantRole: RoleJoiner, wantSeeds: "[10.0.0.9 fd00::9]"},
		{name: "dual stack unnamed: counted by IPv4", in: Inputs{Peers: peersOf("fd00::2", "10.0.0.7", "fd00::1", "10.0.0.9"), Self: []netip.Addr{ip("10.0.0.9"), ip("fd00::1")}, SeedCount: 3, ExpectedPeers: 3, Founding: FoundLowest}, waiting: "2 of 3 expected peers visible"},
		{name: "dual stack unnamed: seeds of one family", in: Inputs{Peers: peersOf("fd00::2", "10.0.0.7", "fd00::1", "10.0.0.9"), Self: []netip.Addr{ip("10.0.0.9"), ip("fd00::1")}, SeedCount: 3, ExpectedPeers: 2, Founding: FoundLowest}, wantRole: RoleSeed, wantSeeds: "[10.0.0.7 10.0.0.9]"},
		{name: "dual stack dashed names: counted by IPv4", in: Inputs{Peers: dashed("10.244.1.7", "fd00::7", "10.244.1.9", "fd00::9"), Self: []netip.Addr{ip("fd00::7"), ip("10.244.1.7")}, SeedCount: 2, ExpectedPeers: 2, Founding: FoundLowest}, wantRole: RoleFounder, wantSeeds: "[10.244.1.7 10.244.1.9]"},
		{name: "dual stack unnamed: the family with more addresses counts", in: Inputs{Peers: peersOf("10.0.0.1", "fd00::1", "fd00::2", "fd00::3"), Self: []netip.Addr{ip("10.0.0.3"), ip("fd00::3")}, SeedCount: 2, ExpectedPeers: 3, Founding: FoundLowest}, wantRole: RoleJoiner, wantSeeds: "[fd00::1 fd00::2]"},
		{name: "dual stack unnamed: IPv6 slice ahead, counted by IPv6", in: Inputs{Peers: peersOf("10.0.0.1", "fd00::1", "10.0.0.2", "fd00::2", "fd00::3"), Self: []netip.Addr{ip("10.0.0.3"), ip("fd00::3")}, SeedCount: 2, ExpectedPeers: 1, Founding: FoundLowest}, wantRole: RoleJoiner, wantSeeds: "[fd00::1 fd00::2]"},
		{name: "dual stack unnamed: own address uncounted", in: Inputs{Peers: peersOf("10.0.0.1", "fd00::1", "10.0.0.2", "fd00::2", "fd00::3"), Self: []netip.Addr{ip("10.0.0.9"), ip("fd00::9")}, SeedCount: 2, ExpectedPeers: 1, Founding: FoundLowest}, waiting: "own IP not in"},
		{name: "dual stack unnamed: own counted address not there yet", in: Inputs{Peers: peersOf("10.0.0.1", "fd00::1", "10.0.0.2", "fd00::3"), Self: []netip.Addr{ip("10.0.0.3"), ip("fd00::3")}, SeedCount: 2, ExpectedPeers: 1, Founding: FoundLowest}, waiting: "own IPv4 address not in the Service's DNS records yet"},
		{name: "one hostname on two pods is no pod identity", in: Inputs{Peers: []Peer{{IP: ip("10.0.0.1"), Hostname: "web"}, {IP: ip("10.0.0.2"), Hostname: "web"}}, Self: []netip.Addr{ip("10.0.0.2")}, SeedCount: 3, ExpectedPeers: 2, Founding: FoundLowest}, wantRole: RoleSeed, wantSeeds: "[10.0.0.1 10.0.0.2]"},
		{name: "live dual-stack pod: its answering addresses", in: Inputs{Peers: dual, Self: []netip.Addr{ip("10.0.0.1"), ip("fd00::1")}, SeedCount: 1, ExpectedPeers: 5, Founding: FoundLowest, Live: map[netip.Addr]bool{ip("fd00::2"): true, ip("fd00::1"): true}}, wantRole: RoleJoiner, wantSeeds: "[fd00::2]"},
		{name: "live uncounted address stands for its pod", in: Inputs{Peers: peersOf("10.0.0.1", "fd00::1", "10.0.0.2", "fd00::2"), Self: []netip.Addr{ip("10.0.0.1"), ip("fd00::1")}, SeedCount: 3, ExpectedPeers: 5, Founding: FoundLowest, Live: map[netip.Addr]bool{ip("fd00::2"): true}}, wantRole: RoleJoiner, wantSeeds: "[fd00::2]"},

		// Pods named after their IPs (a Deployment's, under CoreDNS) have
		// no ordinals: ordinal0 says why it cannot found.
		{name: "dashed IPs are no ordinals: ip order", in: Inputs{Peers: dashed("10.244.1.10", "10.244.1.9", "10.244.2.0"), Self: []netip.Addr{ip("10.244.2.0")}, SeedCount: 1, ExpectedPeers: 1, Founding: FoundLowest}, wantRole: RoleJoiner, wantSeeds: "[10.244.1.9]"},
		{name: "ordinal0 on dashed IPs says StatefulSet", in: Inputs{Peers: dashed("10.244.1.10", "10.244.1.9", "10.244.1.0"), Self: []netip.Addr{ip("10.244.1.0")}, SeedCount: 1, ExpectedPeers: 1, Founding: FoundOrdinal0}, waiting: `founding=ordinal0 needs every peer to be a pod of one StatefulSet with an ordinal hostname (<name>-<n>, from SRV targets or PTR records), but 10.244.1.0 is named "10-244-1-0" after its IP`},
		{name: "ordinal0 on dashed IPv6 says StatefulSet", in: Inputs{Peers: dashed("fd00::10", "fd00::0"), Self: []netip.Addr{ip("fd00::")}, SeedCount: 1, ExpectedPeers: 1, Founding: FoundOrdinal0}, waiting: `but fd00:: is named "fd00--" after its IP`},
		{name: "ordinal0 across two StatefulSets", in: Inputs{Peers: []Peer{{IP: ip("10.0.0.9"), Hostname: "a-0"}, {IP: ip("10.0.0.1"), Hostname: "b-1"}}, Self: []netip.Addr{ip("10.0.0.9")}, SeedCount: 1, ExpectedPeers: 1, Founding: FoundOrdinal0}, waiting: `two StatefulSets, "b" and "a"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, waiting := Decide(tc.in)
			if tc.waiting != "" {
				if waiting == "" || !strings.Contains(waiting, tc.waiting) {
					t.Fatalf("waiting %q, want %q (decision %+v)", waiting, tc.waiting, d)
				}
				return
			}
			if waiting != "" {
				t.Fatalf("unexpected wait: %s", waiting)
			}
			if d.Role != tc.wantRole || fmt.Sprint(d.Seeds) != tc.wantSeeds {
				t.Errorf("role %s seeds %v, want %s %s", d.Role, d.Seeds, tc.wantRole, tc.wantSeeds)
			}
		})
	}
}

// An ordinal hostname is <name>-<n> with a <name> that is not all-digit
// dashed parts: the names CoreDNS gives pods without a hostname (their IPs
// with dashes) have the same shape and are no ordinals.
func TestOrdinalHostnames(t *testing.T) {
	for _, tc := range []struct {
		hostname string
		ordinal  int // -1: not an ordinal hostname
		podName  bool
	}{
		{"cassandra-0", 0, true},
		{"cassandra-12", 12, true},
		{"my-db-3", 3, true},
		{"db2-1", 1, true},
		{"a1-2-3", 3, true},
		{"10-244-1-7", -1, false}, // a Deployment pod's IPv4 name
		{"10-244-1-0", -1, false}, // even one ending in 0
		{"10-244-7", -1, false},   // all-digit parts, not even an IP
		{"1-0", -1, false},        // <name> "1" is all digits
		{"fd00--7", -1, false},    // a Deployment pod's IPv6 name
		{"fd00-0-0-0-0-0-0-7", -1, false},
		{"2001-db8--a-1", -1, false},
		{"cassandra", -1, false},
		{"cassandra-", -1, false},
		{"-1", -1, false},
		{"cassandra-01", -1, false},
		{"cassandra-x", -1, false},
		{"cassandra-7d9f8-abcde", -1, false}, // a Deployment pod name
		{"", -1, false},
	} {
		n, ok := ordinal(tc.hostname)
		if got := map[bool]int{true: n, false: -1}[ok]; got != tc.ordinal {
			t.Errorf("ordinal(%q) = %d, %v; want %d", tc.hostname, n, ok, tc.ordinal)
		}
		if LooksOrdinal(tc.hostname) != tc.podName {
			t.Errorf("LooksOrdinal(%q) = %v", tc.hostname, !tc.podName)
		}
	}
	for h, want := range map[string]bool{"10-244-1-7": true, "fd00--7": true, "cassandra-0": false, "web": false, "1-2-3": false, "": false} {
		if isPodHostname(h) == want && h != "" {
			t.Errorf("isPodHostname(%q) = %v", h, !want)
		}
		if isDashedIP(h) != want {
			t.Errorf("isDashedIP(%q) = %v, want %v", h, !want, want)
		}
	}
}

// Property: every member that sees the same set, in any order, writes the
// same seeds, drawn from the set, of min(seed-count, pods) distinct pods;
// exactly one founder at most. Pods are single-stack (either family) or
// dual-stack, named by ordinal hostnames, by their IPs with dashes, or not
// at all; each member knows only its own addresses.
func TestDecideAgreementProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := range 500 {
		n := 1 + rng.IntN(40)
		stack := rng.IntN(3)  // 0: IPv4, 1: IPv6, 2: dual
		naming := rng.IntN(3) // 0: none, 1: ordinal hostnames, 2: dashed IPs
		var view []Peer
		pods := make([][]netip.Addr, n)
		podOf := map[netip.Addr]int{}
		for i := range n {
			for {
				var b [16]byte
				b[0], b[15], b[14] = 0xfd, byte(rng.IntN(256)), byte(rng.IntN(256))
				v6 := netip.AddrFrom16(b)
				v4 := netip.AddrFrom4([4]byte{10, byte(rng.IntN(4)), byte(rng.IntN(256)), byte(rng.IntN(256))})
				var ips []netip.Addr
				switch stack {
				case 0:
					ips = []netip.Addr{v4}
				case 1:
					ips = []netip.Addr{v6}
				default:
					ips = []netip.Addr{v4, v6}
				}
				if slices.ContainsFunc(ips, func(a netip.Addr) bool { _, taken := podOf[a]; return taken }) {
					continue
				}
				pods[i] = ips
				break
			}
			for _, a := range pods[i] {
				podOf[a] = i
				p := Peer{IP: a}
				switch naming {
				case 1:
					p.Hostname = fmt.Sprintf("db-%d", i)
				case 2:
					p.Hostname = dashed(a.String())[0].Hostname
				}
				view = append(view, p)
			}
		}
		seedCount := 1 + rng.IntN(5)
		founding := []Founding{FoundLowest, FoundOrdinal0}[rng.IntN(2)]
		var first []netip.Addr
		founders := 0
		for i, self := range pods {
			shuffled := slices.Clone(view)
			rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			own := slices.Clone(self)
			rng.Shuffle(len(own), func(i, j int) { own[i], own[j] = own[j], own[i] })
			d, waiting := Decide(Inputs{Peers: shuffled, Self: own, SeedCount: seedCount, ExpectedPeers: n, Founding: founding})
			if founding == FoundOrdinal0 && naming != 1 {
				if waiting == "" || !strings.Contains(waiting, "StatefulSet") {
					t.Fatalf("iter %d: ordinal0 without ordinal hostnames: decided %+v, waiting %q", iter, d, waiting)
				}
				continue
			}
			if waiting != "" {
				t.Fatalf("iter %d: pod %d: unexpected wait %q", iter, i, waiting)
			}
			if len(d.Peers) != n {
				t.Fatalf("iter %d: %d peers, want %d pods", iter, len(d.Peers), n)
			}
			if first == nil {
				first = d.Seeds
			}
			if !slices.Equal(first, d.Seeds) {
				t.Fatalf("iter %d: pod %v chose %v, another member chose %v", iter, self, d.Seeds, first)
			}
			seedPods := map[int]bool{}
			for _, s := range d.Seeds {
				p, ok := podOf[s]
				if !ok {
					t.Fatalf("iter %d: seed %s not in the view", iter, s)
				}
				seedPods[p] = true
			}
			if len(seedPods) != min(seedCount, n) {
				t.Fatalf("iter %d: seeds %v are %d pods, want %d", iter, d.Seeds, len(seedPods), min(seedCount, n))
			}
			if d.Role == RoleFounder {
				founders++
			}
		}
		if founders > 1 {
			t.Fatalf("iter %d: %d founders", iter, founders)
		}
	}
}

func BenchmarkDecide1000Peers(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	view := make([]Peer, 1000)
	for i := range view {
		view[i] = Peer{IP: netip.AddrFrom4([4]byte{10, byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))})}
	}
	in := Inputs{Peers: view, Self: []netip.Addr{view[500].IP}, SeedCount: 3, ExpectedPeers: 1, Founding: FoundLowest}
	b.ReportAllocs()
	for b.Loop() {
		if _, waiting := Decide(in); waiting != "" {
			b.Fatal(waiting)
		}
	}
}

// BenchmarkSortIPs1000Baseline is the floor a decision is compared with:
// sorting the same 1,000 addresses and nothing else.
func BenchmarkSortIPs1000Baseline(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	ips := make([]netip.Addr, 1000)
	for i := range ips {
		ips[i] = netip.AddrFrom4([4]byte{10, byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))})
	}
	b.ReportAllocs()
	for b.Loop() {
		s := slices.Clone(ips)
		slices.SortFunc(s, func(a, b netip.Addr) int { return a.Compare(b) })
	}
}

// A view is stable once seen twice, for the margin, and for longer than
// the records' TTL — each bound exactly.
func TestViewStableBounds(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const margin, ttl = 5 * time.Second, time.Second
	for _, tc := range []struct {
		count  int
		after  time.Duration
		ttl    time.Duration
		stable bool
	}{
		{2, margin, ttl, true},
		{1, margin, ttl, false},
		{2, margin - time.Nanosecond, ttl, false},
		{2, margin, margin, false}, // must be longer than the TTL
		{2, margin + time.Nanosecond, margin, true},
	} {
		v := view{since: t0, count: tc.count}
		if _, ok := v.stable(t0.Add(tc.after), margin, tc.ttl); ok != tc.stable {
			t.Errorf("count %d after %s, ttl %s: stable %v, want %v", tc.count, tc.after, tc.ttl, ok, tc.stable)
		}
	}
}

// Jitter spreads an interval over ±20 %.
func TestJitterBounds(t *testing.T) {
	const d = time.Second
	var low, high bool
	for range 2000 {
		j := jitter(d)
		if j < 800*time.Millisecond || j > 1200*time.Millisecond {
			t.Fatalf("jitter(%s) = %s, outside ±20%%", d, j)
		}
		low, high = low || j < 900*time.Millisecond, high || j > 1100*time.Millisecond
	}
	if !low || !high {
		t.Errorf("2000 jitters never left ±10%%: not spread")
	}
}

func TestListIPs(t *testing.T) {
	var peers []Peer
	for i := 1; i <= 10; i++ {
		peers = append(peers, Peer{IP: netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})})
	}
	if got := listIPs(peers); strings.Contains(got, "…") {
		t.Errorf("ten addresses cut: %s", got)
	}
	if got := listIPs(append(peers, Peer{IP: netip.MustParseAddr("10.0.0.11")})); !strings.HasSuffix(got, " …") {
		t.Errorf("eleven addresses: %s", got)
	}
}
