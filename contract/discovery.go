package contract

import (
	"net/netip"
	"time"
)

// Discovery is the document seed-discovery writes to discovery.json
// (DiscoveryFileName) beside the seed files: what it decided, and from
// which view. Tools and tests read it; its JSON names are part of the
// contract.
type Discovery struct {
	// Role is founder, seed or joiner (seed-discovery's Role* values).
	Role string `json:"role"`
	// Self is this pod's first address (in POD_IPS order) that DNS gave.
	Self netip.Addr `json:"self"`
	// Seeds holds every address DNS gives for each of the first seed-count
	// pods, pod by pod (a dual-stack seed with a DNS hostname contributes
	// its IPv4 and its IPv6 address; a pod counted by one family, its
	// address of that family). Joining a live cluster, only the seed pods'
	// addresses that answered.
	Seeds []netip.Addr `json:"seeds"`
	// Peers are the pods in the order seeds were drawn from.
	Peers []DiscoveredPod `json:"peers"`
	// Uncounted are addresses DNS gave that belong to no known pod: the
	// other family of a dual-stack group whose pods DNS does not name
	// (seed-discovery's GroupPods). They are never counted and never seeds.
	Uncounted []netip.Addr `json:"uncounted,omitempty"`
	// Order is "ordinal" or "ip" (seed-discovery's Order* values).
	Order string `json:"order"`
	// Queries is how many DNS messages this pod sent until it decided
	// (counted by seed-discovery's runner; its pure decision does not know), and until the last refresh
	// with the refreshing sidecar.
	Queries int64 `json:"queries,omitempty"`
	// SeedHosts and PeerHosts are what the host files list: the
	// seeds' and the peers' addresses, or their DNS names with
	// seed-address=hostname. Port is the port the host:port files use.
	Address   SeedAddress `json:"address"`
	SeedHosts []string    `json:"seedHosts"`
	PeerHosts []string    `json:"peerHosts"`
	Port      int         `json:"port,omitempty"`
	// Refreshed is when the refreshing sidecar last rewrote the peer files
	// (zero until it does).
	Refreshed *time.Time `json:"refreshed,omitempty"`
}

// DiscoveredPod is one member of the group as discovery.json lists it: the
// addresses DNS gives for it. A group is counted, ordered and seeded in
// pods, never in addresses, so a dual-stack pod is one peer
// (seed-discovery's GroupPods).
type DiscoveredPod struct {
	// Hostname is the pod's DNS hostname when DNS names it, else the
	// IP-based name of its one address, or empty.
	Hostname string `json:"hostname,omitempty"`
	// IPs in IP byte order (IPv4 first); never empty, at most one per
	// family.
	IPs []netip.Addr `json:"ips"`
	// Port is the SRV record's port of the pod's first address (0 without
	// a port name).
	Port uint16 `json:"port,omitempty"`
}
