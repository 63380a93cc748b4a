package discovery

import (
	"testing"

	"github.com/miekg/dns"
)

// serviceHostname takes only a name one label under the group's Service,
// and the same one whatever order the PTR records come in.
func TestServiceHostname(t *testing.T) {
	const svc = "cassandra.db.svc.cluster.local."
	ptr := func(name string) dns.RR {
		return &dns.PTR{Hdr: dns.RR_Header{Name: "9.0.0.10.in-addr.arpa.", Rrtype: dns.TypePTR, Class: dns.ClassINET}, Ptr: name}
	}
	for _, tc := range []struct {
		name  string
		names []string
		want  string
	}{
		{"the group's name among others", []string{"cassandra-0." + svc, "10-0-0-9.cassandra-client.db.svc.cluster.local.", "cassandra-0.cassandra-gov.db.svc.cluster.local."}, "cassandra-0"},
		{"a name made of the IP under the group's Service", []string{"10-0-0-9." + svc, "web-0.web.db.svc.cluster.local."}, "10-0-0-9"},
		{"only other Services' names: unnamed", []string{"10-0-0-9.cassandra-client.db.svc.cluster.local.", "web-0.web.db.svc.cluster.local."}, ""},
		{"a Service whose name ends in the group's", []string{"x-0.my-cassandra.db.svc.cluster.local."}, ""},
		{"the Service in another namespace", []string{"cassandra-0.cassandra.other.svc.cluster.local."}, ""},
		{"the Service's own name", []string{svc}, ""},
		{"two labels under the Service", []string{"a.cassandra-0." + svc}, ""},
		{"case-insensitive", []string{"Cassandra-0.Cassandra.DB.svc.cluster.local."}, "cassandra-0"},
		{"a pod hostname before a name made of the IP", []string{"10-0-0-9." + svc, "cassandra-0." + svc}, "cassandra-0"},
		{"the smaller of two pod hostnames", []string{"cassandra-1." + svc, "cassandra-0." + svc}, "cassandra-0"},
		{"no records", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Every rotation of the records gives the same name.
			for shift := range max(len(tc.names), 1) {
				var answer []dns.RR
				for i := range tc.names {
					answer = append(answer, ptr(tc.names[(i+shift)%len(tc.names)]))
				}
				if got := serviceHostname(answer, svc); got != tc.want {
					t.Errorf("records %v rotated by %d: %q, want %q", tc.names, shift, got, tc.want)
				}
			}
		})
	}
}
