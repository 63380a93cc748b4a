// Package dnszone is a small authoritative DNS server on loopback for
// seed-discovery tests: a mutable set of A/AAAA/SRV/PTR answers per name,
// and switches for the failures a cluster resolver shows (SERVFAIL, silence,
// truncation). It speaks real DNS over UDP and TCP (github.com/miekg/dns)
// and answers the way CoreDNS's kubernetes plugin does: one SRV record per
// endpoint name with its addresses in the additional section, one PTR
// record per Service holding the address, named from the endpoint's
// hostname or, without one, from its IP with dashes, and answers too large
// for the transport truncated with TC set, over TCP too (CoreDNS truncates
// TCP answers at 65,535 bytes).
//
// CoreDNS lists a pod's PTR records (one per Service selecting it) in Go
// map order, so each query may see another order. The server makes that
// deterministic for tests: the n-th PTR query for a name gets the records,
// in Service-name order, rotated by n, so two queries in a row for an
// address of two Services see both orders.
package dnszone

import (
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/miekg/dns"
)

// Peer is one endpoint of a headless Service: its IP and, for pods with a
// hostname (StatefulSets), that hostname. A dual-stack pod is two endpoints
// (one per family, as in its two EndpointSlices) with the same hostname;
// Pod writes that shorter.
type Peer struct {
	IP       netip.Addr
	Hostname string
}

// Pod is a pod with one address per family it has; Endpoints turns it into
// Peers.
type Pod struct {
	Hostname string
	IPs      []netip.Addr
}

// Endpoints lists every address of the pods as Peers, for Set.
func Endpoints(pods ...Pod) []Peer {
	var out []Peer
	for _, p := range pods {
		for _, ip := range p.IPs {
			out = append(out, Peer{IP: ip, Hostname: p.Hostname})
		}
	}
	return out
}

// Mode makes the server misbehave.
type Mode int32

const (
	Normal   Mode = iota
	ServFail      // every answer is SERVFAIL
	Silent        // no answer at all (client timeouts)
)

// Server answers for headless Services.
type Server struct {
	Addr string // host:port, same for UDP and TCP
	TTL  uint32

	mu       sync.Mutex
	services map[string][]Peer // FQDN with trailing dot → peers
	ports    map[string]string // FQDN → SRV port name served
	// ptrQueries counts the PTR queries per reverse name: the rotation of
	// the next answer.
	ptrQueries map[string]int
	mode       atomic.Int32
	noPTR      atomic.Bool
	udpCount   atomic.Int64
	tcpCount   atomic.Int64
	udp, tcp   *dns.Server
}

// Start listens on a free 127.0.0.1 port for UDP and TCP.
func Start(ttl uint32) (*Server, error) {
	pc, l, err := listenPair()
	if err != nil {
		return nil, err
	}
	s := &Server{Addr: pc.LocalAddr().String(), TTL: ttl, services: map[string][]Peer{}, ports: map[string]string{}, ptrQueries: map[string]int{}}
	s.udp = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.serve("udp"))}
	s.tcp = &dns.Server{Listener: l, Handler: dns.HandlerFunc(s.serve("tcp"))}
	started := make(chan struct{}, 2)
	s.udp.NotifyStartedFunc = func() { started <- struct{}{} }
	s.tcp.NotifyStartedFunc = func() { started <- struct{}{} }
	go s.udp.ActivateAndServe()
	go s.tcp.ActivateAndServe()
	<-started
	<-started
	return s, nil
}

// listenPair binds one free port for UDP and TCP. The UDP port is chosen
// by the kernel; the same TCP port may be held by another test's
// connection, so a few ports are tried.
func listenPair() (net.PacketConn, net.Listener, error) {
	var err error
	for range 10 {
		var pc net.PacketConn
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			return nil, nil, err
		}
		var l net.Listener
		if l, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			return pc, l, nil
		}
		pc.Close()
	}
	return nil, nil, err
}

// Close stops both listeners.
func (s *Server) Close() {
	_ = s.udp.Shutdown()
	_ = s.tcp.Shutdown()
}

// Set replaces the peers of the Service fqdn (with trailing dot). portName,
// when not empty, also serves SRV for _<portName>._tcp.<fqdn>.
func (s *Server) Set(fqdn, portName string, peers ...Peer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.services[fqdn] = append([]Peer(nil), peers...)
	if portName != "" {
		s.ports[fqdn] = portName
	}
}

// Remove makes fqdn NXDOMAIN.
func (s *Server) Remove(fqdn string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.services, fqdn)
}

// SetMode switches failure injection.
func (s *Server) SetMode(m Mode) { s.mode.Store(int32(m)) }

// ServePTR turns reverse lookups on (the default, as CoreDNS's kubernetes
// plugin answers them) or off (NXDOMAIN, a resolver without reverse zones).
func (s *Server) ServePTR(on bool) { s.noPTR.Store(!on) }

// Queries returns how many queries arrived over UDP and TCP.
func (s *Server) Queries() (udp, tcp int64) { return s.udpCount.Load(), s.tcpCount.Load() }

func (s *Server) serve(network string) func(dns.ResponseWriter, *dns.Msg) {
	return func(w dns.ResponseWriter, req *dns.Msg) {
		if network == "udp" {
			s.udpCount.Add(1)
		} else {
			s.tcpCount.Add(1)
		}
		switch Mode(s.mode.Load()) {
		case Silent:
			return
		case ServFail:
			m := new(dns.Msg)
			m.SetRcode(req, dns.RcodeServerFailure)
			_ = w.WriteMsg(m)
			return
		}
		m := s.answer(req)
		// As CoreDNS (request.Scrub): UDP answers cut to the client's
		// buffer, TCP answers to the largest message; either sets TC.
		size := dns.MaxMsgSize
		if network == "udp" {
			size = dns.MinMsgSize
			if opt := req.IsEdns0(); opt != nil {
				size = int(opt.UDPSize())
			}
		}
		m.Truncate(size)
		_ = w.WriteMsg(m)
	}
}

func (s *Server) answer(req *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return m
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	s.mu.Lock()
	defer s.mu.Unlock()
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: q.Name, Rrtype: t, Class: dns.ClassINET, Ttl: s.TTL}
	}
	if peers, ok := s.services[name]; ok {
		for _, p := range peers {
			switch {
			case q.Qtype == dns.TypeA && p.IP.Is4():
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr(dns.TypeA), A: p.IP.AsSlice()})
			case q.Qtype == dns.TypeAAAA && p.IP.Is6():
				m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: p.IP.AsSlice()})
			}
		}
		return m // NODATA when nothing matched
	}
	if q.Qtype == dns.TypeSRV {
		for svc, port := range s.ports {
			if name != "_"+port+"._tcp."+svc {
				continue
			}
			targets := map[string]bool{}
			for _, p := range s.services[svc] {
				target := targetName(p, svc)
				// One SRV record per endpoint name, as CoreDNS dedups them:
				// a dual-stack pod with a hostname has one target, two
				// addresses.
				if !targets[target] {
					targets[target] = true
					m.Answer = append(m.Answer, &dns.SRV{Hdr: hdr(dns.TypeSRV), Priority: 0, Weight: 100, Port: 7000, Target: target})
				}
				if p.IP.Is4() {
					m.Extra = append(m.Extra, &dns.A{Hdr: dns.RR_Header{Name: target, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: s.TTL}, A: p.IP.AsSlice()})
				} else {
					m.Extra = append(m.Extra, &dns.AAAA{Hdr: dns.RR_Header{Name: target, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: s.TTL}, AAAA: p.IP.AsSlice()})
				}
			}
			return m
		}
	}
	if q.Qtype == dns.TypePTR && !s.noPTR.Load() {
		var names []string // one per Service holding the address
		for _, svc := range slices.Sorted(maps.Keys(s.services)) {
			for _, p := range s.services[svc] {
				if rev, _ := dns.ReverseAddr(p.IP.String()); rev == name {
					names = append(names, targetName(p, svc))
					break
				}
			}
		}
		if len(names) > 0 {
			n := s.ptrQueries[name]
			s.ptrQueries[name]++
			for i := range names {
				ptr := names[(n+i)%len(names)]
				m.Answer = append(m.Answer, &dns.PTR{Hdr: hdr(dns.TypePTR), Ptr: ptr})
			}
			return m
		}
	}
	m.Rcode = dns.RcodeNameError
	return m
}

// targetName is what CoreDNS's kubernetes plugin names an endpoint: its
// hostname when it has one, else its IP with dashes.
func targetName(p Peer, svc string) string {
	if p.Hostname != "" {
		return p.Hostname + "." + svc
	}
	return strings.NewReplacer(".", "-", ":", "-").Replace(p.IP.String()) + "." + svc
}
