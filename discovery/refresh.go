package discovery

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Keep is the refreshing sidecar's life after the first decision d: every
// refresh interval (±20%, so pods started together do not query together)
// it observes the Service once and, when the peers changed, rewrites the
// peer files and discovery.json. It returns nil when ctx ends (the pod
// stops).
//
// The seed files are never rewritten: they are the founding decision, and
// a pod's seeds must not flip to whatever a later view says (two pods that
// each saw only themselves in a later view would each be told to found).
// The peer files follow the Service, with two exceptions that keep a file
// from going wrong while DNS is briefly wrong: a view without this pod's
// own address (the Service recreated, DNS behind the endpoints) and a DNS
// error leave the files as they are.
//
// Cost per round: one observation (A and AAAA, or one SRV query), plus,
// when names are needed, one PTR query per address new to the view and one
// per address every renameRounds rounds (nameCache).
func (r *Runner) Keep(ctx context.Context, d Decision) error {
	c := r.Config
	fqdn := c.FQDN()
	r.logf("refreshing the peer files every %s (±20%%); the seed files stay as decided", c.Refresh)
	names := &nameCache{names: map[netip.Addr]string{}}
	names.keep(d.Peers)
	last := ""
	note := func(msg string) {
		if msg != last && msg != "" {
			r.logf("%s", msg)
		}
		last = msg
	}
	for sleep(ctx, jitter(c.Refresh)) {
		next, msg, err := r.refresh(ctx, d, fqdn, names)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			note(fmt.Sprintf("peer files kept: %v", err))
			continue
		case msg != "":
			note("peer files kept: " + msg)
			continue
		}
		note("")
		if samePods(next.Peers, d.Peers) {
			continue
		}
		now := time.Now().UTC()
		next.Refreshed, next.Queries = &now, r.Resolver.Queries()
		if err := writePeers(c.OutputDir, next); err != nil {
			return &ExitError{ExitNotWritable, err}
		}
		r.logf("peers changed: %d pods %s", len(next.Peers), listHosts(next.PeerHosts))
		d = next
	}
	return nil
}

// refresh observes once and returns d with the peers of that view, or the
// reason (or the error) to keep the files as they are.
func (r *Runner) refresh(ctx context.Context, d Decision, fqdn string, names *nameCache) (Decision, string, error) {
	c := r.Config
	obs, err := r.Resolver.Observe(ctx, fqdn, c.PortName)
	if err != nil {
		return d, "", err
	}
	peers := uniqueAddrs(obs.Peers)
	if _, ok := findSelf(peers, c.PodIPs); !ok {
		return d, fmt.Sprintf("own IP %v not in this view of %s (%d addresses)", c.PodIPs, fqdn, len(peers)), nil
	}
	if c.needsNames() || unnamedDualStack(peers) {
		if peers, err = names.lookUp(ctx, r.Resolver, fqdn, peers); err != nil {
			return d, "", err
		}
	}
	g := GroupPods(peers)
	next := d
	next.Peers, next.Uncounted, next.Order = g.Pods, g.Uncounted, g.Order
	// Hosts rewrites the seed hosts from the same seeds: the seed files are
	// not rewritten, and discovery.json keeps saying what they hold.
	seedHosts := d.SeedHosts
	if waiting := Hosts(&next, c.addressing()); waiting != "" {
		return d, waiting, nil
	}
	next.SeedHosts = seedHosts
	return next, "", nil
}

// renameRounds: every this many rounds the names of all addresses are
// asked again, so an address another pod took over without leaving the
// view for a round (a quick IP reuse) is renamed within about five minutes
// at the shortest interval, for one PTR query per address per 60 rounds.
const renameRounds = 60

// nameCache keeps the PTR name (or none) of each address in the view, so
// a round asks only for addresses it has not seen: an address's name
// changes only with its pod.
type nameCache struct {
	names map[netip.Addr]string // "" when asked and unnamed
	round int
}

// keep records the names of the decision's pods.
func (n *nameCache) keep(pods []Pod) {
	for _, p := range pods {
		for _, ip := range p.IPs {
			n.names[ip] = p.Hostname
		}
	}
}

// lookUp names peers: SRV names as given, cached names, and a PTR query
// for the rest (all of them every renameRounds rounds). The cache then
// holds exactly the view's addresses.
func (n *nameCache) lookUp(ctx context.Context, r *Resolver, fqdn string, peers []Peer) ([]Peer, error) {
	n.round++
	all := n.round%renameRounds == 0
	var ask []Peer
	for i, p := range peers {
		if p.Hostname != "" {
			continue
		}
		if name, seen := n.names[p.IP]; seen && !all {
			peers[i].Hostname = name
			continue
		}
		ask = append(ask, p)
	}
	named, err := r.Hostnames(ctx, fqdn, ask)
	if err != nil {
		return nil, err
	}
	byIP := map[netip.Addr]string{}
	for _, p := range named {
		byIP[p.IP] = p.Hostname
	}
	clear(n.names)
	for i, p := range peers {
		if name, asked := byIP[p.IP]; asked {
			peers[i].Hostname = name
		}
		n.names[p.IP] = peers[i].Hostname
	}
	return peers, nil
}

func samePods(a, b []Pod) bool {
	return slices.EqualFunc(a, b, func(x, y Pod) bool {
		return x.Hostname == y.Hostname && x.Port == y.Port && slices.Equal(x.IPs, y.IPs)
	})
}

func listHosts(hosts []string) string {
	if len(hosts) > 10 {
		return fmt.Sprint(hosts[:10]) + " …"
	}
	return fmt.Sprint(hosts)
}
