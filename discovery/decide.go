// Package discovery is seed-discovery's logic: observe a headless Service in
// DNS until the view is stable, then choose seeds deterministically, so every
// pod that sees the same set writes the same seeds (docs/design.md,
// seed-discovery).
package discovery

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/peergroup/peergroup/contract"
)

// Founding says whether a pod may start a new cluster. The type and its
// values are the contract's, so the webhook and seed-discovery accept the
// same ones (docs/design.md, "The contract").
type Founding = contract.Founding

const (
	// FoundLowest: the first pod of the order founds when it is alone.
	FoundLowest = contract.FoundLowest
	// FoundOrdinal0: only StatefulSet ordinal 0 founds; the others wait for it.
	FoundOrdinal0 = contract.FoundOrdinal0
	// FoundNever: this pod only ever joins an existing cluster.
	FoundNever = contract.FoundNever
)

// Roles written to discovery.json.
const (
	RoleFounder = "founder" // first of the order, no live cluster: starts it
	RoleSeed    = "seed"    // among the seeds, not the founder
	RoleJoiner  = "joiner"  // joins the seeds
)

// Peer is one address of the headless Service.
type Peer struct {
	IP netip.Addr `json:"ip"`
	// Hostname is the endpoint's hostname (first DNS label), e.g.
	// "cassandra-2" for a StatefulSet pod; empty when unknown.
	Hostname string `json:"hostname,omitempty"`
}

// Inputs is one stable view plus this pod's identity and tuning.
type Inputs struct {
	Peers         []Peer
	Self          []netip.Addr
	SeedCount     int
	ExpectedPeers int
	Founding      Founding
	// Live holds the peers that answered on the peer port; nil when no
	// peer port is configured (no probing).
	Live map[netip.Addr]bool
}

// Decision is what seed-discovery writes.
type Decision struct {
	Role  string       `json:"role"`
	Self  netip.Addr   `json:"self"`
	Seeds []netip.Addr `json:"seeds"`
	// Peers in the order seeds were drawn from.
	Peers []Peer `json:"peers"`
	// Order is "ordinal" or "ip".
	Order string `json:"order"`
}

// Decide is pure: the same view gives the same seeds on every pod. When it
// cannot decide yet it returns the reason to keep waiting.
func Decide(in Inputs) (Decision, string) {
	self, ok := findSelf(in.Peers, in.Self)
	if !ok {
		return Decision{}, "own IP not in the Service's DNS records yet"
	}
	peers, order := SortPeers(in.Peers)
	d := Decision{Self: self, Peers: peers, Order: order}

	// A live cluster exists: always join it, whatever the order says, so a
	// pod that comes back with the lowest IP never founds a second cluster.
	var live []netip.Addr
	own := func(a netip.Addr) bool {
		return slices.ContainsFunc(in.Self, func(s netip.Addr) bool { return s.Unmap() == a })
	}
	for _, p := range peers {
		if !own(p.IP) && in.Live[p.IP] {
			live = append(live, p.IP)
		}
	}
	if len(live) > 0 {
		d.Role, d.Seeds = RoleJoiner, firstN(live, in.SeedCount)
		return d, ""
	}

	if len(peers) < in.ExpectedPeers {
		return Decision{}, fmt.Sprintf("%d of %d expected peers visible", len(peers), in.ExpectedPeers)
	}
	if in.Founding == FoundOrdinal0 {
		if order != "ordinal" {
			return Decision{}, "founding=ordinal0 needs every peer to have a StatefulSet ordinal hostname"
		}
		if ord, _ := ordinal(peers[0].Hostname); ord != 0 {
			return Decision{}, "waiting for ordinal 0 to appear"
		}
	}
	ips := make([]netip.Addr, len(peers))
	for i, p := range peers {
		ips[i] = p.IP
	}
	d.Seeds = firstN(ips, in.SeedCount)
	switch {
	case own(d.Seeds[0]) && in.Founding == FoundNever:
		return Decision{}, "first in order but founding=never, and no live peer to join"
	case own(d.Seeds[0]):
		d.Role = RoleFounder
	case slices.ContainsFunc(d.Seeds, own):
		d.Role = RoleSeed
	default:
		d.Role = RoleJoiner
	}
	return d, ""
}

func findSelf(peers []Peer, self []netip.Addr) (netip.Addr, bool) {
	for _, s := range self {
		for _, p := range peers {
			if p.IP == s.Unmap() {
				return p.IP, true
			}
		}
	}
	return netip.Addr{}, false
}

func firstN(ips []netip.Addr, n int) []netip.Addr {
	if n > len(ips) {
		n = len(ips)
	}
	return append([]netip.Addr(nil), ips[:n]...)
}

// SortPeers orders by StatefulSet ordinal when every peer has an ordinal
// hostname with one common base name, else by IP bytes. Duplicates collapse.
func SortPeers(in []Peer) ([]Peer, string) {
	peers := slices.Clone(in)
	slices.SortFunc(peers, func(a, b Peer) int { return a.IP.Compare(b.IP) })
	peers = slices.CompactFunc(peers, func(a, b Peer) bool { return a.IP == b.IP })
	if byOrdinal(peers) {
		slices.SortStableFunc(peers, func(a, b Peer) int {
			x, _ := ordinal(a.Hostname)
			y, _ := ordinal(b.Hostname)
			if x != y {
				return x - y
			}
			return a.IP.Compare(b.IP)
		})
		return peers, "ordinal"
	}
	return peers, "ip"
}

func byOrdinal(peers []Peer) bool {
	base := ""
	for i, p := range peers {
		b, ok := ordinalBase(p.Hostname)
		if !ok || i > 0 && b != base {
			return false
		}
		base = b
	}
	return len(peers) > 0
}

// ordinal parses "name-N".
func ordinal(hostname string) (int, bool) {
	i := strings.LastIndexByte(hostname, '-')
	if i <= 0 || i == len(hostname)-1 {
		return 0, false
	}
	n, err := strconv.Atoi(hostname[i+1:])
	if err != nil || n < 0 || strconv.Itoa(n) != hostname[i+1:] {
		return 0, false
	}
	return n, true
}

func ordinalBase(hostname string) (string, bool) {
	if _, ok := ordinal(hostname); !ok {
		return "", false
	}
	return hostname[:strings.LastIndexByte(hostname, '-')], true
}

// LooksOrdinal reports whether a pod name could be a StatefulSet pod; only
// then are peer hostnames looked up for ordinal order.
func LooksOrdinal(podName string) bool {
	_, ok := ordinal(podName)
	return ok
}
