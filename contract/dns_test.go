package contract

import (
	"net"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// longestName is a name of 255 bytes on the wire, the most RFC 1035 allows.
var longestName = strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 61) + "."

// answerLen packs an answer to the longest question with n records of
// qtype and an OPT record carrying a server cookie, as a resolver may send.
func answerLen(t *testing.T, qtype uint16, n int) int {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(longestName, qtype)
	m.Response, m.Compress = true, true
	hdr := dns.RR_Header{Name: longestName, Rrtype: qtype, Class: dns.ClassINET, Ttl: 30}
	for i := range n {
		if qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.IPv4(10, byte(i>>16), byte(i>>8), byte(i))})
		} else {
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: net.ParseIP("fd00::").To16()})
		}
	}
	opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	opt.SetUDPSize(1232)
	// Client cookie (8 bytes) and the longest server cookie (32 bytes).
	opt.Option = append(opt.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: strings.Repeat("ab", 40)})
	m.Extra = append(m.Extra, opt)
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return len(b)
}

// MaxPeers AAAA (and maxARecords A) records fit in one TCP message with the
// longest question and a cookie; one more does not. So the arithmetic in
// dns.go is what a real DNS library packs.
func TestMaxPeersFitsOneTCPAnswer(t *testing.T) {
	if len(longestName)+1 != 255 {
		t.Fatalf("test name is %d bytes on the wire", len(longestName)+1)
	}
	for _, tc := range []struct {
		qtype uint16
		n     int
	}{{dns.TypeAAAA, MaxPeers}, {dns.TypeA, maxARecords}} {
		if l := answerLen(t, tc.qtype, tc.n); l > dns.MaxMsgSize {
			t.Errorf("%d %s records: %d bytes, over %d", tc.n, dns.TypeToString[tc.qtype], l, dns.MaxMsgSize)
		}
		if l := answerLen(t, tc.qtype, tc.n+1); l <= dns.MaxMsgSize {
			t.Errorf("%d %s records: %d bytes still fit: the bound is not tight", tc.n+1, dns.TypeToString[tc.qtype], l)
		}
	}
	if MaxPeers != 2328 || ExpectedPeersRange.Max != MaxPeers {
		t.Errorf("MaxPeers %d, expected-peers max %d: update README and docs/design.md with the new number", MaxPeers, ExpectedPeersRange.Max)
	}
}
