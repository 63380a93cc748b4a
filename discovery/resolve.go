package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/peergroup/peergroup/contract"
)

// TransientError is a DNS failure that is not an observation (SERVFAIL,
// REFUSED, timeouts): the caller backs off and asks again.
type TransientError struct{ Err error }

func (e *TransientError) Error() string { return e.Err.Error() }
func (e *TransientError) Unwrap() error { return e.Err }

// TruncatedError is an answer still truncated over TCP: the records do not
// fit in one 65,535-byte message, so the answer is a part of the group and
// never an observation of it (taking it as one would count and order a
// subset, and pods that see different subsets choose different seeds).
// It is not retried: the group is larger than DNS can carry.
type TruncatedError struct {
	Query   string // "A cassandra.db.svc.cluster.local."
	Records int    // how many records the truncated answer held
	SRV     bool
}

func (e *TruncatedError) Error() string {
	msg := fmt.Sprintf("the DNS answer to %s is truncated even over TCP (%d records fit in one 65,535-byte message): "+
		"the group is larger than one DNS answer can carry, so it cannot be seen whole and no seeds are chosen from a part of it; "+
		"peergroup supports groups of at most %d pods (the largest expected-peers)", e.Query, e.Records, contract.MaxPeers)
	if e.SRV {
		msg += "; SRV records carry their full target names, so they hold fewer pods than A/AAAA records: " +
			"without " + contract.PortName.Annotation + " seed-discovery reads A/AAAA records and PTR names instead"
	}
	return msg
}

// Observation is one DNS view of the Service.
type Observation struct {
	Peers []Peer
	// TTL is the smallest TTL among the answers (0 when empty).
	TTL time.Duration
}

// Resolver queries one DNS server directly, UDP first and TCP when the
// answer is truncated (large groups), never through search paths.
type Resolver struct {
	Server  string // host:port
	Timeout time.Duration
	// sent counts the DNS messages sent (a TCP retry of a truncated
	// answer is a second one): the cost of a decision, in discovery.json.
	sent atomic.Int64
}

// Queries is how many DNS messages the resolver has sent.
func (r *Resolver) Queries() int64 { return r.sent.Load() }

// ednsSize is the UDP payload size advertised: the DNS flag day 2020
// recommendation, which avoids IP fragmentation.
const ednsSize = 1232

func (r *Resolver) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.SetEdns0(ednsSize, false)
	timeout := r.Timeout
	if timeout == 0 {
		timeout = 2 * time.Second
	}
	udp := &dns.Client{Net: "udp", Timeout: timeout, UDPSize: ednsSize}
	r.sent.Add(1)
	resp, _, err := udp.ExchangeContext(ctx, m, r.Server)
	overTCP := err == nil && resp.Truncated
	if overTCP {
		r.sent.Add(1)
		tcp := &dns.Client{Net: "tcp", Timeout: timeout}
		resp, _, err = tcp.ExchangeContext(ctx, m, r.Server)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &TransientError{fmt.Errorf("query %s %s at %s: %w", dns.TypeToString[qtype], name, r.Server, err)}
	}
	if overTCP && resp.Truncated {
		return nil, &TruncatedError{Query: dns.TypeToString[qtype] + " " + name, Records: len(resp.Answer), SRV: qtype == dns.TypeSRV}
	}
	switch resp.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
		return resp, nil
	default:
		return nil, &TransientError{fmt.Errorf("query %s %s at %s: %s", dns.TypeToString[qtype], name, r.Server, dns.RcodeToString[resp.Rcode])}
	}
}

// Observe returns the Service's addresses: A and AAAA of fqdn, or, with a
// port name, the targets of its SRV records. NXDOMAIN and NODATA are an
// empty observation, not an error.
func (r *Resolver) Observe(ctx context.Context, fqdn, portName string) (Observation, error) {
	var obs Observation
	ttl := uint32(0)
	note := func(h *dns.RR_Header) {
		if ttl == 0 || h.Ttl < ttl {
			ttl = h.Ttl
		}
	}
	if portName != "" {
		resp, err := r.exchange(ctx, SRVName(fqdn, portName), dns.TypeSRV)
		if err != nil {
			return obs, err
		}
		addrs := map[string][]netip.Addr{}
		for _, rr := range resp.Extra {
			if ip, ok := addrOf(rr); ok {
				addrs[strings.ToLower(rr.Header().Name)] = append(addrs[strings.ToLower(rr.Header().Name)], ip)
			}
		}
		for _, rr := range resp.Answer {
			srv, ok := rr.(*dns.SRV)
			if !ok {
				continue
			}
			note(&srv.Hdr)
			target := strings.ToLower(srv.Target)
			ips := addrs[target]
			if len(ips) == 0 {
				sub, err := r.Observe(ctx, target, "")
				if err != nil {
					return obs, err
				}
				for _, p := range sub.Peers {
					ips = append(ips, p.IP)
				}
			}
			for _, ip := range ips {
				obs.Peers = append(obs.Peers, Peer{IP: ip, Hostname: firstLabel(target), Port: srv.Port})
			}
		}
	} else {
		for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
			resp, err := r.exchange(ctx, fqdn, qtype)
			if err != nil {
				return obs, err
			}
			for _, rr := range resp.Answer {
				if ip, ok := addrOf(rr); ok {
					note(rr.Header())
					obs.Peers = append(obs.Peers, Peer{IP: ip})
				}
			}
		}
	}
	obs.TTL = time.Duration(ttl) * time.Second
	return obs, nil
}

// Hostnames fills in the hostname of each peer that has none from the PTR
// records of its address, keeping only a name under fqdn, the group's
// Service (serviceHostname).
//
// CoreDNS's kubernetes plugin answers a pod IP's PTR query with one record
// per Service whose endpoints hold the address (this group's headless
// Service, and also a ClusterIP client Service or another governing Service
// that selects the pod), in Go map order: a different order on each query.
// Taking whichever record came first would make the hostname, and so the
// grouping, the order and the seeds, depend on that order, and two pods with
// the same view could each found. A name under another Service names the
// pod after that Service's endpoint ("10-0-0-5" for a Service that is not
// the pod's subdomain), not after the group's, so it is ignored. An address
// with no name under fqdn stays unnamed, as one whose PTR name is made of
// its IP would be, and is asked again the next round.
func (r *Resolver) Hostnames(ctx context.Context, fqdn string, peers []Peer) ([]Peer, error) {
	out := make([]Peer, len(peers))
	for i, p := range peers {
		out[i] = p
		if p.Hostname != "" {
			continue
		}
		rev, err := dns.ReverseAddr(p.IP.String())
		if err != nil {
			return nil, fmt.Errorf("reverse name of %s: %w", p.IP, err)
		}
		resp, err := r.exchange(ctx, rev, dns.TypePTR)
		if err != nil {
			return nil, err
		}
		out[i].Hostname = serviceHostname(resp.Answer, fqdn)
	}
	return out, nil
}

// serviceHostname returns the first label of the PTR names in answer that
// are exactly one label under the Service fqdn (<host>.<service>.<namespace>.svc.<domain>.),
// lower case (names compare case-insensitively, and GroupPods groups
// addresses by hostname), or "" when none is.
//
// The result depends on the set of records, never on their order, so every
// pod derives the same hostname from the same records: when several names
// fall under fqdn (one endpoint in two of the Service's EndpointSlices
// while they change), a pod hostname is taken before a name made of the IP,
// then the smallest (nameRank).
func serviceHostname(answer []dns.RR, fqdn string) string {
	suffix := "." + strings.ToLower(dns.Fqdn(fqdn))
	best := ""
	for _, rr := range answer {
		ptr, ok := rr.(*dns.PTR)
		if !ok {
			continue
		}
		label, ok := strings.CutSuffix(strings.ToLower(dns.Fqdn(ptr.Ptr)), suffix)
		if !ok || label == "" || strings.Contains(label, ".") {
			continue // another Service's name, or a name deeper under this one
		}
		if best == "" || compareNames(label, best) < 0 {
			best = label
		}
	}
	return best
}

func addrOf(rr dns.RR) (netip.Addr, bool) {
	switch v := rr.(type) {
	case *dns.A:
		ip, ok := netip.AddrFromSlice(v.A.To4())
		return ip, ok
	case *dns.AAAA:
		ip, ok := netip.AddrFromSlice(v.AAAA.To16())
		return ip.Unmap(), ok
	}
	return netip.Addr{}, false
}

func firstLabel(name string) string {
	label, _, _ := strings.Cut(strings.TrimSuffix(name, "."), ".")
	return label
}

// isTransient tells the retry loop which errors are worth retrying.
func isTransient(err error) bool {
	var t *TransientError
	var netErr net.Error
	return errors.As(err, &t) || errors.As(err, &netErr)
}
