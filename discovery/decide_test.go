package discovery

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func peersOf(ips ...string) []Peer {
	out := make([]Peer, len(ips))
	for i, s := range ips {
		out[i] = Peer{IP: ip(s)}
	}
	return out
}

func TestDecide(t *testing.T) {
	sts := []Peer{{ip("10.0.0.9"), "cassandra-0"}, {ip("10.0.0.5"), "cassandra-1"}, {ip("10.0.0.1"), "cassandra-2"}}
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
		{name: "live peer means join even when lowest", in: Inputs{Peers: peersOf("10.0.0.1", "10.0.0.2", "10.0.0.3"), Self: []netip.Addr{ip("10.0.0.1")}, SeedCount: 3, ExpectedPeers: 5, Founding: FoundLowest, Live: map[netip.Addr]bool{ip("10.0.0.3"): true}}, wantRole: RoleJoiner, wantSeeds: "[10.0.0.3]"},
		{name: "probing with nobody live falls back to order", in: Inputs{Peers: peersOf("10.0.0.1", "10.0.0.2"), Self: []netip.Addr{ip("10.0.0.1")}, SeedCount: 3, ExpectedPeers: 1, Founding: FoundLowest, Live: map[netip.Addr]bool{}}, wantRole: RoleFounder, wantSeeds: "[10.0.0.1 10.0.0.2]"},
		{name: "dual stack: any own IP counts", in: Inputs{Peers: peersOf("fd00::2", "10.0.0.7", "fd00::1", "10.0.0.9"), Self: []netip.Addr{ip("10.0.0.9"), ip("fd00::1")}, SeedCount: 3, ExpectedPeers: 1, Founding: FoundLowest}, wantRole: RoleSeed, wantSeeds: "[10.0.0.7 10.0.0.9 fd00::1]"},
		{name: "mixed ordinal bases use ip order", in: Inputs{Peers: []Peer{{ip("10.0.0.9"), "a-0"}, {ip("10.0.0.1"), "b-1"}}, Self: []netip.Addr{ip("10.0.0.9")}, SeedCount: 1, ExpectedPeers: 1, Founding: FoundLowest}, wantRole: RoleJoiner, wantSeeds: "[10.0.0.1]"},
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

// Property: every member that sees the same set, in any order, writes the
// same seeds, drawn from the set; exactly one founder at most.
func TestDecideAgreementProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := range 500 {
		n := 1 + rng.IntN(40)
		ordinalView := rng.IntN(3) == 0
		var view []Peer
		seen := map[netip.Addr]bool{}
		for len(view) < n {
			var a netip.Addr
			if rng.IntN(4) == 0 {
				var b [16]byte
				b[0], b[15], b[14] = 0xfd, byte(rng.IntN(256)), byte(rng.IntN(256))
				a = netip.AddrFrom16(b)
			} else {
				a = netip.AddrFrom4([4]byte{10, byte(rng.IntN(4)), byte(rng.IntN(256)), byte(rng.IntN(256))})
			}
			if seen[a] {
				continue
			}
			seen[a] = true
			p := Peer{IP: a}
			if ordinalView {
				p.Hostname = fmt.Sprintf("db-%d", len(view))
			}
			view = append(view, p)
		}
		seedCount := 1 + rng.IntN(5)
		founding := []Founding{FoundLowest, FoundOrdinal0}[rng.IntN(2)]
		var first []netip.Addr
		founders := 0
		for _, self := range view {
			shuffled := slices.Clone(view)
			rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			d, waiting := Decide(Inputs{Peers: shuffled, Self: []netip.Addr{self.IP}, SeedCount: seedCount, ExpectedPeers: 1, Founding: founding})
			if founding == FoundOrdinal0 && !ordinalView {
				if waiting == "" {
					t.Fatalf("iter %d: ordinal0 decided without hostnames", iter)
				}
				continue
			}
			if waiting != "" {
				t.Fatalf("iter %d: unexpected wait %q", iter, waiting)
			}
			if first == nil {
				first = d.Seeds
			}
			if !slices.Equal(first, d.Seeds) {
				t.Fatalf("iter %d: %s chose %v, another member chose %v", iter, self.IP, d.Seeds, first)
			}
			if len(d.Seeds) != min(seedCount, n) {
				t.Fatalf("iter %d: %d seeds, want %d", iter, len(d.Seeds), min(seedCount, n))
			}
			for _, s := range d.Seeds {
				if !seen[s] {
					t.Fatalf("iter %d: seed %s not in the view", iter, s)
				}
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
