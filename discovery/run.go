package discovery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/peergroup/peergroup/contract"
)

const (
	maxBackoff       = 5 * time.Second
	probeTimeout     = 500 * time.Millisecond
	probeConcurrency = 32
)

var errDeadline = errors.New("seed-discovery deadline")

// Runner observes, decides and writes. Log gets one line per change.
type Runner struct {
	Config   Config
	Resolver *Resolver
	Log      io.Writer
	// Dial probes the peer port; tests keep it on 127.0.0.x.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (r *Runner) logf(format string, args ...any) {
	fmt.Fprintf(r.Log, "seed-discovery: "+format+"\n", args...)
}

// Run blocks until it decided and wrote the outputs, or fails with an
// ExitError. Each round observes DNS, updates the view, decides once the
// view is stable, and sleeps; DNS errors back off instead.
func (r *Runner) Run(ctx context.Context) (Decision, error) {
	c := r.Config
	if err := checkWritable(c.OutputDir); err != nil {
		return Decision{}, &ExitError{ExitNotWritable, err}
	}
	ctx, cancel := context.WithTimeoutCause(ctx, c.Timeout, errDeadline)
	defer cancel()
	fqdn := c.FQDN()
	r.logf("looking up %s (self %v, seed count %d, expected peers %d, stable margin %s, founding %s, timeout %s)",
		fqdn, c.PodIPs, c.SeedCount, c.ExpectedPeers, c.StableMargin, c.Founding, c.Timeout)

	var v view
	backoff := c.PollInterval
	for {
		obs, err := r.Resolver.Observe(ctx, fqdn, c.PortName)
		now := time.Now()
		pause := c.PollInterval
		switch {
		case ctx.Err() != nil:
			return Decision{}, r.deadline(ctx, &v)
		case isTransient(err):
			v.lastErr = err
			r.logf("DNS error, retrying in about %s: %v", backoff, err)
			pause, backoff = backoff, min(backoff*2, maxBackoff)
		case err != nil:
			return Decision{}, &ExitError{ExitDNSErrors, err}
		default:
			backoff = c.PollInterval
			if changed, self := v.update(obs.Peers, c.PodIPs, now); changed {
				r.logf("view changed: %d addresses %s (own IP present: %v)", len(v.peers), listIPs(v.peers), self)
			}
			if stableFor, ok := v.stable(now, c.StableMargin, obs.TTL); ok {
				if d, done, err := r.conclude(ctx, &v, stableFor); done {
					return d, err
				}
			}
		}
		if !sleep(ctx, jitter(pause)) {
			return Decision{}, r.deadline(ctx, &v)
		}
	}
}

// view is what Run has seen so far: the current peer set, and what a
// deadline must report.
type view struct {
	// peers holds every address once, sorted by IP.
	peers []Peer
	// named is peers with the hostnames PTR records gave (nil until looked
	// up). It is dropped when the set changes; a peer without a name is
	// asked again each round, one with a name is not: its name can change
	// only with its pod, and a new pod changes the set.
	named []Peer
	// since is when peers was first seen; count is how many observations
	// in a row returned it.
	since time.Time
	count int
	// observed: some DNS answer arrived. selfSeen: an own IP was in some
	// view. lastErr: the transient error since the last answer.
	observed bool
	selfSeen bool
	lastErr  error
	// lastWaiting is the latest reason not to decide, and lastCounting
	// the latest way pods were counted when not by hostname; each is
	// logged once.
	lastWaiting  string
	lastCounting string
}

// update records one answer seen at now. It reports whether the peer set
// changed and, if so, whether it holds an own IP.
func (v *view) update(observed []Peer, self []netip.Addr, now time.Time) (changed, selfPresent bool) {
	v.observed, v.lastErr = true, nil
	peers := uniqueAddrs(observed)
	if samePeers(peers, v.peers) {
		v.count++
		return false, false
	}
	v.peers, v.named, v.since, v.count = peers, nil, now, 1
	_, selfPresent = findSelf(peers, self)
	v.selfSeen = v.selfSeen || selfPresent
	return true, selfPresent
}

// stable returns how long the peer set has held, and whether that is long
// enough to decide on: seen twice, for the margin, and for longer than the
// records' TTL, so no cache can still hold an older set.
func (v *view) stable(now time.Time, margin, ttl time.Duration) (time.Duration, bool) {
	stableFor := now.Sub(v.since)
	return stableFor, v.count >= 2 && stableFor >= margin && stableFor > ttl
}

// conclude decides on the stable view and writes the outputs. done means
// Run returns d and err; otherwise it keeps observing (a transient DNS error
// or a reason to wait, which it logs when it changes).
func (r *Runner) conclude(ctx context.Context, v *view, stableFor time.Duration) (d Decision, done bool, err error) {
	d, waiting, err := r.decide(ctx, v)
	switch {
	case isTransient(err):
		v.lastErr = err
		return Decision{}, false, nil
	case err != nil:
		return Decision{}, true, &ExitError{ExitDNSErrors, err}
	case waiting != "":
		if waiting != v.lastWaiting {
			r.logf("stable but waiting: %s", waiting)
			v.lastWaiting = waiting
		}
		return Decision{}, false, nil
	}
	d.Queries = r.Resolver.Queries()
	if err := Write(r.Config.OutputDir, d); err != nil {
		return Decision{}, true, &ExitError{ExitNotWritable, err}
	}
	r.logf("decided after %s: role %s, seeds %s, %d peers (%s order), %d DNS queries", stableFor.Round(time.Millisecond), d.Role, joinIPs(d.Seeds, ","), len(d.Peers), d.Order, d.Queries)
	return d, true, nil
}

// decide runs Decide on the view and fills in the hosts. Peer hostnames
// come from PTR records when the configuration needs them (needsNames) and
// when the view holds both families without pod hostnames: only a hostname tells which IPv4 and IPv6 addresses are one
// pod (GroupPods). Counting pods by one family, because DNS names none of
// them, is logged once per change, with the reason.
func (r *Runner) decide(ctx context.Context, v *view) (Decision, string, error) {
	c := r.Config
	peers := v.peers
	if c.needsNames() || unnamedDualStack(peers) {
		known := v.named
		if known == nil {
			known = v.peers
		}
		named, err := r.Resolver.Hostnames(ctx, c.FQDN(), known) // looks up only peers without a name
		if err != nil {
			return Decision{}, "", err
		}
		v.named, peers = named, named
	}
	if g := GroupPods(peers); g.Family != "" {
		counting := fmt.Sprintf("dual-stack view without pod hostnames in DNS (no PTR names, or names made of the IPs, as for pods that are not a StatefulSet's): "+
			"counting pods by their %d %s addresses, as a pod has at most one address per family; the %d other addresses are not counted and never seeds",
			len(g.Pods), g.Family, len(g.Uncounted))
		if counting != v.lastCounting {
			r.logf("%s", counting)
			v.lastCounting = counting
		}
	}
	in := Inputs{Peers: peers, Self: c.PodIPs, SeedCount: c.SeedCount, ExpectedPeers: c.ExpectedPeers, Founding: c.Founding}
	if c.PeerPort > 0 {
		in.Live = r.probe(ctx, peers)
	}
	d, waiting := Decide(in)
	if waiting == "" {
		waiting = Hosts(&d, c.addressing())
	}
	return d, waiting, nil
}

// needsNames reports whether every round looks up the peers' PTR names: the
// order may be by ordinal (a StatefulSet-like pod name, or
// founding=ordinal0), or the hosts are the pods' names.
func (c Config) needsNames() bool {
	return LooksOrdinal(c.PodName) || c.Founding == FoundOrdinal0 || c.SeedAddress == contract.AddressHostname
}

func (c Config) addressing() Addressing {
	return Addressing{Mode: c.SeedAddress, FQDN: c.FQDN(), PeerPort: c.PeerPort}
}

// unnamedDualStack reports whether addresses without a pod hostname come
// in both families.
func unnamedDualStack(peers []Peer) bool {
	var v4, v6 bool
	for _, p := range peers {
		if !isPodHostname(p.Hostname) {
			v4, v6 = v4 || p.IP.Is4(), v6 || p.IP.Is6()
		}
	}
	return v4 && v6
}

// probe dials every other peer's peer port, a bounded number at a time.
func (r *Runner) probe(ctx context.Context, peers []Peer) map[netip.Addr]bool {
	live := map[netip.Addr]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, probeConcurrency)
	dial := r.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	for _, p := range peers {
		if slices.Contains(r.Config.PodIPs, p.IP) {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			pctx, cancel := context.WithTimeout(ctx, probeTimeout)
			defer cancel()
			conn, err := dial(pctx, "tcp", net.JoinHostPort(p.IP.String(), strconv.Itoa(r.Config.PeerPort)))
			if err == nil {
				conn.Close()
				mu.Lock()
				live[p.IP] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return live
}

// deadline explains why Run stopped without a decision.
func (r *Runner) deadline(ctx context.Context, v *view) error {
	if !errors.Is(context.Cause(ctx), errDeadline) {
		return &ExitError{ExitInterrupted, errors.New("interrupted before a decision")}
	}
	t := r.Config.Timeout
	switch {
	case !v.observed:
		return &ExitError{ExitDNSErrors, fmt.Errorf("no DNS answer for %s within %s: %v", r.Config.FQDN(), t, v.lastErr)}
	case !v.selfSeen:
		why := fmt.Sprintf("does the Service select the pod (labels %s, %s=%s)?", contract.GroupLabel, contract.PeerLabel, contract.PeerValue)
		if r.Config.PortName != "" {
			why = fmt.Sprintf("does the Service have a port named %q (SRV records exist only for the Service's port names), and %s", r.Config.PortName, why)
		}
		return &ExitError{ExitNoSelf, fmt.Errorf("own IP %v never appeared in %s within %s: %s", r.Config.PodIPs, r.Config.Asked(), t, why)}
	case v.lastWaiting != "":
		return &ExitError{ExitNotStable, fmt.Errorf("no decision for %s within %s: %s", r.Config.FQDN(), t, v.lastWaiting)}
	default:
		return &ExitError{ExitNotStable, fmt.Errorf("the peer set of %s was not stable for %s within %s", r.Config.FQDN(), r.Config.StableMargin, t)}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// jitter spreads pods that started together by ±20%.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

func samePeers(a, b []Peer) bool {
	return slices.EqualFunc(a, b, func(x, y Peer) bool { return x.IP == y.IP && x.Hostname == y.Hostname })
}

func listIPs(peers []Peer) string {
	ips := make([]netip.Addr, len(peers))
	for i, p := range peers {
		ips[i] = p.IP
	}
	if len(ips) > 10 {
		return joinIPs(ips[:10], " ") + " …"
	}
	return joinIPs(ips, " ")
}

func joinIPs(ips []netip.Addr, sep string) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return strings.Join(s, sep)
}
