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

// Orders written to discovery.json.
const (
	OrderOrdinal = "ordinal" // by StatefulSet ordinal
	OrderIP      = "ip"      // by the pods' addresses, IP bytes
)

// Peer is one address of the headless Service, as DNS answered it.
type Peer struct {
	IP netip.Addr `json:"ip"`
	// Hostname is the first label of the address's DNS name under the
	// group's Service (SRV target, or the PTR record under the Service:
	// Resolver.Hostnames ignores other Services' names), lower case:
	// "cassandra-2" for a StatefulSet pod, "10-244-1-7" for a pod without a
	// hostname (its IP with dashes, as CoreDNS names it); empty when
	// unknown.
	Hostname string `json:"hostname,omitempty"`
	// Port is the SRV record's port (0 without a port name).
	Port uint16 `json:"port,omitempty"`
}

// Pod is one member of the group (contract.DiscoveredPod: the document's
// schema belongs to the contract).
type Pod = contract.DiscoveredPod

// Inputs is one stable view plus this pod's identity and tuning.
type Inputs struct {
	// Peers are the addresses DNS gave, in any order, duplicates allowed.
	Peers []Peer
	// Self holds this pod's IPs (POD_IPS): the pod among Peers that has any
	// of them is this pod.
	Self          []netip.Addr
	SeedCount     int
	ExpectedPeers int
	Founding      Founding
	// Live holds the addresses that answered on the peer port; nil when no
	// peer port is configured (no probing).
	Live map[netip.Addr]bool
}

// Decision is what seed-discovery decided and writes to discovery.json
// (contract.Discovery).
type Decision = contract.Discovery

// Decide is pure: the same view gives the same seeds on every pod. When it
// cannot decide yet it returns the reason to keep waiting.
//
// Everything that chooses (grouping, order, seeds) depends on the view
// alone; Self and Live only say which pod this is and whether a cluster
// already runs. So pods that see the same set agree even though each knows
// only its own addresses.
func Decide(in Inputs) (Decision, string) {
	g := GroupPods(in.Peers)
	own := func(a netip.Addr) bool {
		return slices.ContainsFunc(in.Self, func(s netip.Addr) bool { return s.Unmap() == a })
	}
	selfIdx := slices.IndexFunc(g.Pods, func(p Pod) bool { return slices.ContainsFunc(p.IPs, own) })
	if selfIdx < 0 {
		if slices.ContainsFunc(g.Uncounted, own) {
			return Decision{}, fmt.Sprintf("own %s address not in the Service's DNS records yet (pods of this dual-stack group are counted by %s, as DNS does not name them)", g.Family, g.Family)
		}
		return Decision{}, "own IP not in the Service's DNS records yet"
	}
	d := Decision{Peers: g.Pods, Uncounted: g.Uncounted, Order: g.Order}
	for _, s := range in.Self {
		if slices.Contains(g.Pods[selfIdx].IPs, s.Unmap()) {
			d.Self = s.Unmap()
			break
		}
	}

	// A live cluster exists: always join it, whatever the order says, so a
	// pod that comes back with the lowest IP never founds a second cluster.
	if live := livePods(g, selfIdx, own, in.Live); len(live) > 0 {
		if n := min(in.SeedCount, len(g.Pods)); selfIdx == 0 && allAmong(live, g.Pods[:n]) {
			// The first pod, and every pod that answers is one of its
			// seeds: the group is forming from these seeds (the first pod
			// waited for them, safe founding) or one of them came back. It
			// takes the seeds every other pod took, itself first, so apps
			// that need one seed list on every member (Akka's first seed
			// node, Elasticsearch's initial master nodes) get it; with the
			// others answering, it joins them rather than founding.
			d.Role = RoleSeed
			for _, p := range g.Pods[:n] {
				d.Seeds = append(d.Seeds, p.IPs...)
			}
			return d, ""
		}
		d.Role = RoleJoiner
		for _, p := range live[:min(in.SeedCount, len(live))] {
			for _, ip := range p.IPs {
				if in.Live[ip] {
					d.Seeds = append(d.Seeds, ip)
				}
			}
		}
		return d, ""
	}

	if len(g.Pods) < in.ExpectedPeers {
		return Decision{}, fmt.Sprintf("%d of %d expected peers visible", len(g.Pods), in.ExpectedPeers)
	}
	if in.Founding == FoundOrdinal0 {
		if g.Order != OrderOrdinal {
			return Decision{}, notOrdinalReason(g.Pods)
		}
		if ord, _ := ordinal(g.Pods[0].Hostname); ord != 0 {
			return Decision{}, fmt.Sprintf("founding=%s: waiting for ordinal 0 to appear (lowest ordinal visible: %s)", FoundOrdinal0, g.Pods[0].Hostname)
		}
	}
	n := min(in.SeedCount, len(g.Pods))
	for _, p := range g.Pods[:n] {
		d.Seeds = append(d.Seeds, p.IPs...)
	}
	switch {
	case selfIdx == 0 && in.Founding == FoundNever:
		return Decision{}, "first in order but founding=never, and no live peer to join"
	case selfIdx == 0 && in.Live != nil && len(g.Pods) > 1:
		// Founding with others in the Service is safe only when none of
		// them runs a cluster, and a refused probe cannot tell "not up yet"
		// from "unreachable from here". So the first pod never founds
		// beside others: the other seeds start (they need no live peer),
		// and it joins the first that answers. A pod whose probes can never
		// succeed (a mesh's redirect, a NetworkPolicy) then waits and says
		// why instead of starting a second cluster.
		return Decision{}, fmt.Sprintf("first in order, but the Service lists %d other pods and none answers on the peer port: "+
			"not founding beside them (that could start a second cluster); waiting for one to answer. If they run, this pod cannot reach them: "+
			"a service mesh's init container before seed-discovery (set %s: \"true\"), or a NetworkPolicy blocking the port", len(g.Pods)-1, contract.InitFirstAnnotation)
	case selfIdx == 0:
		d.Role = RoleFounder
	case selfIdx < n:
		d.Role = RoleSeed
	default:
		d.Role = RoleJoiner
	}
	return d, ""
}

// allAmong reports whether every pod of some is among pods (by address).
func allAmong(some, pods []Pod) bool {
	for _, p := range some {
		if !slices.ContainsFunc(pods, func(q Pod) bool { return slices.Equal(p.IPs, q.IPs) }) {
			return false
		}
	}
	return true
}

// livePods are the pods other than this one with an address that answered,
// in order. When none did, the uncounted addresses that answered stand for
// their pods: they are all of one family, so each is a different pod, and
// a pod counted by its other family's address must not be taken twice.
func livePods(g Group, selfIdx int, own func(netip.Addr) bool, live map[netip.Addr]bool) []Pod {
	isLive := func(a netip.Addr) bool { return live[a] }
	var out []Pod
	for i, p := range g.Pods {
		if i != selfIdx && slices.ContainsFunc(p.IPs, isLive) {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		for _, a := range g.Uncounted {
			if !own(a) && live[a] {
				out = append(out, Pod{IPs: []netip.Addr{a}})
			}
		}
	}
	return out
}

// notOrdinalReason says why founding=ordinal0 cannot decide on pods that
// are not all ordinals of one StatefulSet.
func notOrdinalReason(pods []Pod) string {
	const need = "founding=ordinal0 needs every peer to be a pod of one StatefulSet with an ordinal hostname (<name>-<n>, from SRV targets or PTR records)"
	base := ""
	for _, p := range pods {
		b, ok := ordinalBase(p.Hostname)
		switch {
		case p.Hostname == "":
			return fmt.Sprintf("%s, but DNS gives no hostname for %s", need, p.IPs[0])
		case isDashedIP(p.Hostname):
			return fmt.Sprintf("%s, but %s is named %q after its IP, as DNS names pods that are not a StatefulSet's "+
				"(a Deployment's, for one): use founding=lowest or never for such pods", need, p.IPs[0], p.Hostname)
		case !ok:
			return fmt.Sprintf("%s, but %s has hostname %q", need, p.IPs[0], p.Hostname)
		case base != "" && b != base:
			return fmt.Sprintf("%s, but the hostnames name two StatefulSets, %q and %q", need, base, b)
		}
		base = b
	}
	return need
}

// Group is a view turned into pods (GroupPods).
type Group struct {
	// Pods in the order seeds are drawn from.
	Pods []Pod
	// Order is OrderOrdinal or OrderIP.
	Order string
	// Uncounted are the addresses of Family's other family when pods
	// without DNS hostnames were counted by one family.
	Uncounted []netip.Addr
	// Family is "IPv4" or "IPv6" when Uncounted applies, else empty.
	Family string
}

// GroupPods turns the addresses of a view into pods and orders them.
//
// A pod is known by its DNS hostname: addresses whose SRV target or PTR
// name has the same first label are one pod, so a StatefulSet pod's IPv4
// and IPv6 addresses count once. That holds because both names are the
// ones under the group's Service (Resolver.Hostnames), where the pod's
// IPv4 and IPv6 endpoints carry the same hostname, whatever order DNS
// lists other Services' names in: a name taken from another Service for
// one family only would split the pod in two. A name made of the IP ("10-244-1-7",
// "fd00--7": CoreDNS's name for an endpoint without a hostname) names the
// address, not the pod, and an address without a name names nothing. Such
// addresses cannot be paired: DNS says nothing that ties a pod's IPv4
// address to its IPv6 address. Each pod has at most one address per family
// (status.podIPs), so when they come in one family each is a pod, and when
// they come in both, the pods are counted by the family with more of them
// (IPv4 on a tie; the other family's slice may lag behind) and the other
// family's addresses are left Uncounted. Counting by one family undercounts
// only when pods of one group have different families, which makes a pod
// wait rather than found early; seeds drawn from one family are distinct
// pods. A hostname carried by two addresses of one family is not one pod
// (the same spec.hostname on several pods) and is treated as no name.
//
// The result depends on the set alone, not on the order of peers or on
// which pod asks.
func GroupPods(peers []Peer) Group {
	addrs := uniqueAddrs(peers)
	byName := map[string][]netip.Addr{}
	for _, p := range addrs {
		if isPodHostname(p.Hostname) {
			byName[p.Hostname] = append(byName[p.Hostname], p.IP)
		}
	}
	var g Group
	var anon4, anon6 []Peer
	for _, p := range addrs {
		ips, named := byName[p.Hostname]
		switch {
		case named && onePerFamily(ips):
			if ips[0] == p.IP { // addrs is sorted, so the pod's first address comes first
				g.Pods = append(g.Pods, Pod{Hostname: p.Hostname, IPs: ips, Port: p.Port})
			}
		case p.IP.Is4():
			anon4 = append(anon4, p)
		default:
			anon6 = append(anon6, p)
		}
	}
	anon := slices.Concat(anon4, anon6)
	if len(anon4) > 0 && len(anon6) > 0 {
		keep, drop, family := anon4, anon6, "IPv4"
		if len(anon6) > len(anon4) {
			keep, drop, family = anon6, anon4, "IPv6"
		}
		anon, g.Family = keep, family
		for _, p := range drop {
			g.Uncounted = append(g.Uncounted, p.IP)
		}
	}
	for _, p := range anon {
		host := p.Hostname
		if isPodHostname(host) {
			// A pod name other pods carry too (one spec.hostname in a
			// Deployment's template) names none of them.
			host = ""
		}
		g.Pods = append(g.Pods, Pod{Hostname: host, IPs: []netip.Addr{p.IP}, Port: p.Port})
	}
	g.Order = orderPods(g.Pods)
	return g
}

// uniqueAddrs sorts by IP and keeps one entry per IP: the one with a pod
// hostname if any (the smallest), else the smallest other name
// (compareNames).
func uniqueAddrs(in []Peer) []Peer {
	peers := slices.Clone(in)
	slices.SortFunc(peers, func(a, b Peer) int {
		if c := a.IP.Compare(b.IP); c != 0 {
			return c
		}
		return compareNames(a.Hostname, b.Hostname)
	})
	return slices.CompactFunc(peers, func(a, b Peer) bool { return a.IP == b.IP })
}

// compareNames orders the names one address may carry by preference: a pod
// hostname, then a name made of the IP, then none; the smaller first within
// each. It is a total order, so a choice made with it depends on the names
// alone and not on the order they came in.
func compareNames(a, b string) int {
	rank := func(h string) int {
		switch {
		case isPodHostname(h):
			return 0
		case h != "":
			return 1
		}
		return 2
	}
	if c := rank(a) - rank(b); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

func onePerFamily(ips []netip.Addr) bool {
	v4 := 0
	for _, ip := range ips {
		if ip.Is4() {
			v4++
		}
	}
	return v4 <= 1 && len(ips)-v4 <= 1
}

// orderPods sorts by StatefulSet ordinal when every pod has an ordinal
// hostname with one common base name, else by the pods' addresses.
func orderPods(pods []Pod) string {
	byIP := func(a, b Pod) int {
		return slices.CompareFunc(a.IPs, b.IPs, func(x, y netip.Addr) int { return x.Compare(y) })
	}
	if !byOrdinal(pods) {
		slices.SortFunc(pods, byIP)
		return OrderIP
	}
	slices.SortFunc(pods, func(a, b Pod) int {
		x, _ := ordinal(a.Hostname)
		y, _ := ordinal(b.Hostname)
		if x != y {
			return x - y
		}
		return byIP(a, b)
	})
	return OrderOrdinal
}

func byOrdinal(pods []Pod) bool {
	base := ""
	for i, p := range pods {
		b, ok := ordinalBase(p.Hostname)
		if !ok || i > 0 && b != base {
			return false
		}
		base = b
	}
	return len(pods) > 0
}

// ordinal parses a StatefulSet pod's hostname "<name>-<n>". A name made of
// an IP with dashes is no ordinal hostname, though "10-244-1-7" has the
// same shape: the rule is that <name> is not all-digit dashed parts
// ("10-244-1"), and the whole is not an IPv6 address with dashes.
func ordinal(hostname string) (int, bool) {
	i := strings.LastIndexByte(hostname, '-')
	if i <= 0 || i == len(hostname)-1 {
		return 0, false
	}
	n, err := strconv.Atoi(hostname[i+1:])
	if err != nil || n < 0 || strconv.Itoa(n) != hostname[i+1:] {
		return 0, false
	}
	if allDigitParts(hostname[:i]) || isDashedIP(hostname) {
		return 0, false
	}
	return n, true
}

// allDigitParts reports whether every dash-separated part of s is digits.
func allDigitParts(s string) bool {
	for part := range strings.SplitSeq(s, "-") {
		if part == "" || strings.Trim(part, "0123456789") != "" {
			return false
		}
	}
	return true
}

// isDashedIP reports whether a hostname is an IP written with dashes, the
// name CoreDNS gives an endpoint without a hostname ("10-244-1-7",
// "fd00--7").
func isDashedIP(hostname string) bool {
	if a, err := netip.ParseAddr(strings.ReplaceAll(hostname, "-", ".")); err == nil && a.Is4() {
		return true
	}
	a, err := netip.ParseAddr(strings.ReplaceAll(hostname, "-", ":"))
	return err == nil && a.Is6()
}

// isPodHostname reports whether a hostname names a pod rather than an
// address.
func isPodHostname(hostname string) bool {
	return hostname != "" && !isDashedIP(hostname)
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

// findSelf reports the first of self (in POD_IPS order) among the
// addresses.
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
