package discovery

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/peergroup/peergroup/contract"
)

// Addressing is how a decision's hosts are written.
type Addressing struct {
	// Mode is contract.AddressIP or contract.AddressHostname.
	Mode contract.SeedAddress
	// FQDN is the group's Service, absolute: a pod named "cassandra-0" is
	// written "cassandra-0.<FQDN without its dot>".
	FQDN string
	// PeerPort, when set, is the port of every host:port line; else each
	// pod's SRV port is (port-name), else no host:port file is written.
	PeerPort int
}

// Hosts fills in d's SeedHosts, PeerHosts and Port. By IP, the seed hosts
// are d.Seeds and the peer hosts every address of every peer, in order. By
// hostname, each seed pod and each peer is one name, the pod's stable DNS
// name under the Service; a pod DNS does not name so (not a StatefulSet pod
// of this Service, or a PTR record not served yet) makes it return the
// reason to wait instead, as writing its IP among names would give the app
// one address that changes with every restart.
func Hosts(d *Decision, a Addressing) string {
	d.Address, d.Port = cmp.Or(a.Mode, contract.AddressIP), a.PeerPort
	if d.Port == 0 && len(d.Peers) > 0 {
		d.Port = int(d.Peers[0].Port)
	}
	if a.Mode != contract.AddressHostname {
		d.SeedHosts = addrStrings(d.Seeds)
		d.PeerHosts = nil
		for _, p := range d.Peers {
			d.PeerHosts = append(d.PeerHosts, addrStrings(p.IPs)...)
		}
		return ""
	}
	domain := strings.TrimSuffix(a.FQDN, ".")
	name := func(p Pod) (string, string) {
		if !isPodHostname(p.Hostname) {
			why := "DNS gives it no name under the Service, or one that other pods carry too"
			if p.Hostname != "" {
				why = fmt.Sprintf("DNS names it %q, after its IP", p.Hostname)
			}
			return "", fmt.Sprintf("seed-address=hostname: the pod at %s has no stable name (%s): every member must be a StatefulSet pod whose serviceName is this Service", joinIPs(p.IPs, ","), why)
		}
		return p.Hostname + "." + domain, ""
	}
	seeds, peers := []string{}, []string{}
	for _, p := range d.Peers {
		host, waiting := name(p)
		if waiting != "" {
			return waiting
		}
		peers = append(peers, host)
		if slices.ContainsFunc(p.IPs, func(ip netip.Addr) bool { return slices.Contains(d.Seeds, ip) }) {
			seeds = append(seeds, host)
		}
	}
	// Seeds keep the decision's order (a joiner's live seeds are drawn in
	// order too, so the peers' order is theirs).
	d.SeedHosts, d.PeerHosts = seeds, peers
	return ""
}

func addrStrings(ips []netip.Addr) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}

// hostPorts writes host:port per host, an IPv6 address in brackets (RFC
// 3986), which is what Elasticsearch, Alertmanager, Redis and NATS parse.
func hostPorts(hosts []string, port int) []string {
	out := make([]string, len(hosts))
	for i, h := range hosts {
		out[i] = net.JoinHostPort(h, strconv.Itoa(port))
	}
	return out
}

// jgroups writes JGroups' TCPPING initial_hosts: host[port],host[port].
// JGroups splits at the last '[', so an IPv6 address goes unbracketed.
func jgroups(hosts []string, port int) string {
	out := make([]string, len(hosts))
	for i, h := range hosts {
		out[i] = h + "[" + strconv.Itoa(port) + "]"
	}
	return strings.Join(out, ",")
}

// lines is one item per line, each line ended (an empty list is an empty
// file, so `while read` loops see no blank host).
func lines(items []string) []byte {
	if len(items) == 0 {
		return nil
	}
	return []byte(strings.Join(items, "\n") + "\n")
}
