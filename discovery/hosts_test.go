package discovery

import (
	"context"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/test/dnszone"
)

// Every file a consumer reads, for each address kind, with and without a
// port, single- and dual-stack, from a real DNS server: the third pod of a
// StatefulSet decides (a joiner, so the peer-port cases need no live peer).
func TestSeedFileFormats(t *testing.T) {
	v4 := []dnszone.Pod{
		{Hostname: "cassandra-0", IPs: []netip.Addr{ip("127.0.0.9")}},
		{Hostname: "cassandra-1", IPs: []netip.Addr{ip("127.0.0.5")}},
		{Hostname: "cassandra-2", IPs: []netip.Addr{ip("127.0.0.1")}},
	}
	const (
		n0 = "cassandra-0.cassandra.db.svc.cluster.local"
		n1 = "cassandra-1.cassandra.db.svc.cluster.local"
		n2 = "cassandra-2.cassandra.db.svc.cluster.local"
	)
	absent := "(absent)"
	cases := []struct {
		name     string
		pods     []dnszone.Pod
		address  contract.SeedAddress
		portName string
		peerPort int
		want     map[string]string
	}{
		{name: "ip, IPv4, no port", pods: v4, address: contract.AddressIP, want: map[string]string{
			"seeds": "127.0.0.9,127.0.0.5\n", "seed-hosts": "127.0.0.9\n127.0.0.5\n", "seed-hostports": absent, "seed-jgroups": absent,
			"peers": "127.0.0.9\n127.0.0.5\n127.0.0.1\n", "peer-hosts": "127.0.0.9\n127.0.0.5\n127.0.0.1\n", "peer-hostports": absent,
		}},
		{name: "ip, IPv4, peer-port", pods: v4, address: contract.AddressIP, peerPort: 7001, want: map[string]string{
			"seeds": "127.0.0.9,127.0.0.5\n", "seed-hostports": "127.0.0.9:7001\n127.0.0.5:7001\n", "seed-jgroups": "127.0.0.9[7001],127.0.0.5[7001]\n",
			"peer-hostports": "127.0.0.9:7001\n127.0.0.5:7001\n127.0.0.1:7001\n",
		}},
		{name: "ip, dual-stack, port-name", pods: dualStackPods, address: contract.AddressIP, portName: "intra-node", want: map[string]string{
			"seeds":          "127.0.0.9,fd00::9,127.0.0.5,fd00::5\n",
			"seed-hosts":     "127.0.0.9\nfd00::9\n127.0.0.5\nfd00::5\n",
			"seed-hostports": "127.0.0.9:7000\n[fd00::9]:7000\n127.0.0.5:7000\n[fd00::5]:7000\n",
			"seed-jgroups":   "127.0.0.9[7000],fd00::9[7000],127.0.0.5[7000],fd00::5[7000]\n",
			"peers":          "127.0.0.9,fd00::9\n127.0.0.5,fd00::5\n127.0.0.1,fd00::1\n",
			"peer-hosts":     "127.0.0.9\nfd00::9\n127.0.0.5\nfd00::5\n127.0.0.1\nfd00::1\n",
			"peer-hostports": "127.0.0.9:7000\n[fd00::9]:7000\n127.0.0.5:7000\n[fd00::5]:7000\n127.0.0.1:7000\n[fd00::1]:7000\n",
		}},
		{name: "ip, dual-stack, no port", pods: dualStackPods, address: contract.AddressIP, want: map[string]string{
			"seeds": "127.0.0.9,fd00::9,127.0.0.5,fd00::5\n", "seed-hostports": absent, "peer-hostports": absent,
		}},
		{name: "hostname, IPv4, no port (names from PTR)", pods: v4, address: contract.AddressHostname, want: map[string]string{
			"seeds": n0 + "," + n1 + "\n", "seed-hosts": n0 + "\n" + n1 + "\n", "seed-hostports": absent,
			"peers": n0 + "\n" + n1 + "\n" + n2 + "\n", "peer-hosts": n0 + "\n" + n1 + "\n" + n2 + "\n",
		}},
		{name: "hostname, dual-stack, peer-port: one name per pod", pods: dualStackPods, address: contract.AddressHostname, peerPort: 9300, want: map[string]string{
			"seeds":          n0 + "," + n1 + "\n",
			"seed-hostports": n0 + ":9300\n" + n1 + ":9300\n",
			"seed-jgroups":   n0 + "[9300]," + n1 + "[9300]\n",
			"peers":          n0 + "\n" + n1 + "\n" + n2 + "\n",
			"peer-hostports": n0 + ":9300\n" + n1 + ":9300\n" + n2 + ":9300\n",
		}},
		{name: "hostname, dual-stack, port-name (names from SRV)", pods: dualStackPods, address: contract.AddressHostname, portName: "intra-node", want: map[string]string{
			"seeds": n0 + "," + n1 + "\n", "seed-hostports": n0 + ":7000\n" + n1 + ":7000\n", "peer-hosts": n0 + "\n" + n1 + "\n" + n2 + "\n",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			z := startZone(t, 0)
			z.Set(fqdn, tc.portName, dnszone.Endpoints(tc.pods...)...)
			self := tc.pods[2]
			c := testConfig(t, z, self.IPs[0].String())
			c.PodName, c.PodIPs, c.PortName, c.PeerPort, c.SeedAddress, c.SeedCount = self.Hostname, self.IPs, tc.portName, tc.peerPort, tc.address, 2
			r, log := runner(c)
			d, err := r.Run(context.Background())
			if err != nil {
				t.Fatalf("%v\n%s", err, log)
			}
			if d.Role != RoleJoiner || d.Address != tc.address {
				t.Errorf("role %s, address %s", d.Role, d.Address)
			}
			for name, want := range tc.want {
				b, err := os.ReadFile(filepath.Join(c.OutputDir, name))
				got := string(b)
				if errors.Is(err, fs.ErrNotExist) {
					got = absent
				}
				if got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
		})
	}
}

// A pod DNS does not name (a Deployment's: its PTR name is its IP with
// dashes) has no stable name: seed-address=hostname waits and says why,
// rather than writing an IP among names.
func TestHostnameSeedsNeedStableNames(t *testing.T) {
	z := startZone(t, 0)
	z.Set(fqdn, "", loopPeers("127.0.0.1", "127.0.0.2")...)
	c := testConfig(t, z, "127.0.0.2")
	c.SeedAddress, c.Timeout = contract.AddressHostname, 2*time.Second
	r, log := runner(c)
	_, err := r.Run(context.Background())
	if Code(err) != ExitNotStable || !strings.Contains(err.Error(), `seed-address=hostname: the pod at 127.0.0.1 has no stable name (DNS names it "127-0-0-1", after its IP)`) {
		t.Fatalf("exit %d: %v\n%s", Code(err), err, log)
	}
	if Decided(c.OutputDir) {
		t.Error("seeds written without a decision")
	}
}

// Hosts on its own: the seed hosts keep the decision's order and are one
// name per seed pod (not per address), the port comes from peer-port
// before the SRV port, and a missing or IP-made name is a reason to wait.
func TestHosts(t *testing.T) {
	pod := func(name string, port uint16, ips ...string) Pod {
		p := Pod{Hostname: name, Port: port}
		for _, s := range ips {
			p.IPs = append(p.IPs, ip(s))
		}
		return p
	}
	peers := []Pod{pod("db-0", 7000, "10.0.0.9", "fd00::9"), pod("db-1", 7000, "10.0.0.5"), pod("db-2", 7000, "10.0.0.1")}
	const fq = "db.ns.svc.cluster.local."
	for _, tc := range []struct {
		name       string
		seeds      []string
		peers      []Pod
		a          Addressing
		wantSeeds  string
		wantPeers  string
		wantPort   int
		wantWait   string
		wantAddrss contract.SeedAddress
	}{
		{name: "ip: every seed address, SRV port", seeds: []string{"10.0.0.9", "fd00::9", "10.0.0.5"}, peers: peers, a: Addressing{Mode: contract.AddressIP, FQDN: fq},
			wantSeeds: "10.0.0.9 fd00::9 10.0.0.5", wantPeers: "10.0.0.9 fd00::9 10.0.0.5 10.0.0.1", wantPort: 7000, wantAddrss: contract.AddressIP},
		{name: "empty mode is ip; peer-port wins over the SRV port", seeds: []string{"10.0.0.9"}, peers: peers, a: Addressing{FQDN: fq, PeerPort: 9300},
			wantSeeds: "10.0.0.9", wantPeers: "10.0.0.9 fd00::9 10.0.0.5 10.0.0.1", wantPort: 9300, wantAddrss: contract.AddressIP},
		{name: "hostname: one name per seed pod, in order", seeds: []string{"10.0.0.9", "fd00::9", "10.0.0.5"}, peers: peers, a: Addressing{Mode: contract.AddressHostname, FQDN: fq},
			wantSeeds: "db-0.db.ns.svc.cluster.local db-1.db.ns.svc.cluster.local", wantPeers: "db-0.db.ns.svc.cluster.local db-1.db.ns.svc.cluster.local db-2.db.ns.svc.cluster.local", wantPort: 7000, wantAddrss: contract.AddressHostname},
		{name: "hostname: a joiner's live seeds, not the first pods", seeds: []string{"10.0.0.1"}, peers: peers, a: Addressing{Mode: contract.AddressHostname, FQDN: fq},
			wantSeeds: "db-2.db.ns.svc.cluster.local", wantPeers: "db-0.db.ns.svc.cluster.local db-1.db.ns.svc.cluster.local db-2.db.ns.svc.cluster.local", wantPort: 7000, wantAddrss: contract.AddressHostname},
		{name: "hostname: a pod named after its IP waits", seeds: []string{"10.0.0.9"}, peers: []Pod{pod("db-0", 0, "10.0.0.9"), pod("10-0-0-7", 0, "10.0.0.7")}, a: Addressing{Mode: contract.AddressHostname, FQDN: fq},
			wantWait: `the pod at 10.0.0.7 has no stable name (DNS names it "10-0-0-7", after its IP)`},
		{name: "hostname: a pod without a name waits", seeds: []string{"10.0.0.9"}, peers: []Pod{pod("db-0", 0, "10.0.0.9"), pod("", 0, "10.0.0.7", "fd00::7")}, a: Addressing{Mode: contract.AddressHostname, FQDN: fq},
			wantWait: "the pod at 10.0.0.7,fd00::7 has no stable name (DNS gives it no name under the Service, or one that other pods carry too)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decision{Peers: tc.peers}
			for _, s := range tc.seeds {
				d.Seeds = append(d.Seeds, ip(s))
			}
			wait := Hosts(&d, tc.a)
			if tc.wantWait != "" {
				if !strings.Contains(wait, tc.wantWait) {
					t.Fatalf("wait %q, want %q", wait, tc.wantWait)
				}
				return
			}
			if wait != "" {
				t.Fatalf("unexpected wait: %s", wait)
			}
			if got := strings.Join(d.SeedHosts, " "); got != tc.wantSeeds {
				t.Errorf("seed hosts %q, want %q", got, tc.wantSeeds)
			}
			if got := strings.Join(d.PeerHosts, " "); got != tc.wantPeers {
				t.Errorf("peer hosts %q, want %q", got, tc.wantPeers)
			}
			if d.Port != tc.wantPort || d.Address != tc.wantAddrss {
				t.Errorf("port %d address %q, want %d %q", d.Port, d.Address, tc.wantPort, tc.wantAddrss)
			}
		})
	}
}

func TestHostPortFormats(t *testing.T) {
	hosts := []string{"10.0.0.1", "fd00::1", "db-0.db.ns.svc.cluster.local"}
	if got := strings.Join(hostPorts(hosts, 7000), " "); got != "10.0.0.1:7000 [fd00::1]:7000 db-0.db.ns.svc.cluster.local:7000" {
		t.Errorf("hostPorts %q", got)
	}
	if got := jgroups(hosts, 7800); got != "10.0.0.1[7800],fd00::1[7800],db-0.db.ns.svc.cluster.local[7800]" {
		t.Errorf("jgroups %q", got)
	}
	if lines(nil) != nil || string(lines([]string{"a", "b"})) != "a\nb\n" {
		t.Error("lines")
	}
}

// Pods that share one hostname (a Deployment template's spec.hostname):
// the name names none of them, so with seed-address=hostname the pod waits
// rather than write one name three times, and with ip the pods are still
// three, each by its address.
func TestSharedHostnameNamesNoPod(t *testing.T) {
	const fq = "web.db.svc.cluster.local."
	peers := []Peer{{IP: ip("10.0.0.1"), Hostname: "web"}, {IP: ip("10.0.0.2"), Hostname: "web"}, {IP: ip("10.0.0.3"), Hostname: "web"}}
	g := GroupPods(peers)
	if len(g.Pods) != 3 {
		t.Fatalf("%d pods, want 3: %+v", len(g.Pods), g.Pods)
	}
	for _, p := range g.Pods {
		if p.Hostname != "" {
			t.Errorf("pod %v keeps the shared name %q", p.IPs, p.Hostname)
		}
	}
	d, waiting := Decide(Inputs{Peers: peers, Self: []netip.Addr{ip("10.0.0.2")}, SeedCount: 3, ExpectedPeers: 1, Founding: FoundLowest})
	if waiting != "" {
		t.Fatal(waiting)
	}
	named := d
	if wait := Hosts(&named, Addressing{Mode: contract.AddressHostname, FQDN: fq}); !strings.Contains(wait, "or one that other pods carry too") {
		t.Errorf("hostname mode: wait %q, seeds %v", wait, named.SeedHosts)
	}
	if wait := Hosts(&d, Addressing{Mode: contract.AddressIP, FQDN: fq}); wait != "" || strings.Join(d.SeedHosts, ",") != "10.0.0.1,10.0.0.2,10.0.0.3" {
		t.Errorf("ip mode: wait %q, seeds %v", wait, d.SeedHosts)
	}
}

// Pods without DNS names in one family are counted as they are; only a
// view with both families counts by one of them (Family set).
func TestSingleStackViewCountsEveryAddress(t *testing.T) {
	for _, ips := range [][]string{{"10.0.0.1", "10.0.0.2"}, {"fd00::1", "fd00::2"}} {
		var peers []Peer
		for _, s := range ips {
			peers = append(peers, Peer{IP: ip(s)})
		}
		if g := GroupPods(peers); g.Family != "" || len(g.Uncounted) != 0 || len(g.Pods) != 2 {
			t.Errorf("%v: family %q, uncounted %v, %d pods; want every address a pod", ips, g.Family, g.Uncounted, len(g.Pods))
		}
	}
}

// StatefulSet pods are ordered by ordinal, not by address: db-0 first
// even at the higher IP.
func TestOrdinalOrderBeatsAddresses(t *testing.T) {
	g := GroupPods([]Peer{{IP: ip("10.0.0.9"), Hostname: "db-0"}, {IP: ip("10.0.0.5"), Hostname: "db-1"}, {IP: ip("10.0.0.1"), Hostname: "db-10"}})
	var names []string
	for _, p := range g.Pods {
		names = append(names, p.Hostname)
	}
	if g.Order != OrderOrdinal || strings.Join(names, ",") != "db-0,db-1,db-10" {
		t.Errorf("order %s: %v, want ordinal db-0,db-1,db-10", g.Order, names)
	}
}

// An empty view has no port to take, and orders by address.
func TestEmptyViewHostsAndOrder(t *testing.T) {
	d := Decision{}
	if wait := Hosts(&d, Addressing{Mode: contract.AddressIP}); wait != "" || d.Port != 0 {
		t.Errorf("empty decision: wait %q, port %d", wait, d.Port)
	}
	if g := GroupPods(nil); g.Order != OrderIP {
		t.Errorf("empty view ordered %q, want %q", g.Order, OrderIP)
	}
}
