package discovery

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/test/dnszone"
)

// Every test here talks real DNS to a server on 127.0.0.1; the peers are
// 127.0.0.x addresses, so even a probe stays on loopback.

const fqdn = "cassandra.db.svc.cluster.local."

func startZone(t *testing.T, ttl uint32) *dnszone.Server {
	t.Helper()
	z, err := dnszone.Start(ttl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(z.Close)
	return z
}

func loopPeers(ips ...string) []dnszone.Peer {
	out := make([]dnszone.Peer, len(ips))
	for i, s := range ips {
		out[i] = dnszone.Peer{IP: netip.MustParseAddr(s)}
	}
	return out
}

func testConfig(t *testing.T, z *dnszone.Server, self string) Config {
	t.Helper()
	return Config{
		Service: "cassandra", Namespace: "db", PodName: "cassandra-abcde",
		PodIPs: []netip.Addr{netip.MustParseAddr(self)}, ClusterDomain: "cluster.local",
		SeedCount: 3, ExpectedPeers: 1, StableMargin: 300 * time.Millisecond, Timeout: 5 * time.Second,
		Founding: FoundLowest, DNSServer: z.Addr, OutputDir: t.TempDir(), PollInterval: 50 * time.Millisecond,
	}
}

func runner(c Config) (*Runner, *bytes.Buffer) {
	var log bytes.Buffer
	return &Runner{Config: c, Resolver: &Resolver{Server: c.DNSServer, Timeout: 300 * time.Millisecond}, Log: &syncWriter{w: &log}}, &log
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func readOutputs(t *testing.T, dir string) (seeds string, peers []string, doc Decision) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "seeds"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := os.ReadFile(filepath.Join(dir, "peers"))
	if err != nil {
		t.Fatal(err)
	}
	j, err := os.ReadFile(filepath.Join(dir, "discovery.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(j, &doc); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(string(b), "\n"), strings.Fields(string(p)), doc
}

// 1. Three pods with the same view write identical seeds.
func TestThreePodsAgree(t *testing.T) {
	z := startZone(t, 0)
	z.Set(fqdn, "", loopPeers("127.0.0.30", "127.0.0.4", "127.0.0.200")...)
	var wg sync.WaitGroup
	dirs := make([]string, 3)
	for i, self := range []string{"127.0.0.30", "127.0.0.4", "127.0.0.200"} {
		c := testConfig(t, z, self)
		c.SeedCount = 2
		dirs[i] = c.OutputDir
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, log := runner(c)
			if _, err := r.Run(context.Background()); err != nil {
				t.Errorf("pod %s: %v\n%s", self, err, log)
			}
		}()
	}
	wg.Wait()
	roles := map[string]int{}
	for _, dir := range dirs {
		seeds, peers, doc := readOutputs(t, dir)
		if seeds != "127.0.0.4,127.0.0.30" {
			t.Errorf("seeds %q, want the first two by IP bytes", seeds)
		}
		if strings.Join(peers, " ") != "127.0.0.4 127.0.0.30 127.0.0.200" {
			t.Errorf("peers %v", peers)
		}
		roles[doc.Role]++
	}
	if roles[RoleFounder] != 1 || roles[RoleSeed] != 1 || roles[RoleJoiner] != 1 {
		t.Errorf("roles %v", roles)
	}
}

// 2. A lone pod founds with expected peers 1 and times out with 3.
func TestLonePod(t *testing.T) {
	z := startZone(t, 0)
	z.Set(fqdn, "", loopPeers("127.0.0.7")...)
	c := testConfig(t, z, "127.0.0.7")
	r, _ := runner(c)
	d, err := r.Run(context.Background())
	if err != nil || d.Role != RoleFounder {
		t.Fatalf("lone pod: %+v %v", d, err)
	}
	if seeds, _, _ := readOutputs(t, c.OutputDir); seeds != "127.0.0.7" {
		t.Errorf("seeds %q, want itself", seeds)
	}

	c = testConfig(t, z, "127.0.0.7")
	c.ExpectedPeers, c.Timeout = 3, time.Second
	r, log := runner(c)
	_, err = r.Run(context.Background())
	if Code(err) != ExitNotStable || !strings.Contains(err.Error(), "1 of 3 expected peers") {
		t.Fatalf("expected peers 3: exit %d %v", Code(err), err)
	}
	if _, err := os.Stat(filepath.Join(c.OutputDir, "seeds")); !errors.Is(err, os.ErrNotExist) {
		t.Error("seeds written without a decision")
	}
	if !strings.Contains(log.String(), "stable but waiting: 1 of 3 expected peers visible") {
		t.Errorf("log does not say why it waits:\n%s", log)
	}
}

// 3. A set that keeps changing never decides until it is stable.
func TestChangingSetWaitsForStability(t *testing.T) {
	z := startZone(t, 0)
	all := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"}
	z.Set(fqdn, "", loopPeers(all[:1]...)...)
	c := testConfig(t, z, "127.0.0.1")
	c.StableMargin = 400 * time.Millisecond
	var lastChange time.Time
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 2; i <= len(all); i++ {
			time.Sleep(200 * time.Millisecond) // shorter than the margin
			z.Set(fqdn, "", loopPeers(all[:i]...)...)
			lastChange = time.Now()
		}
	}()
	r, _ := runner(c)
	d, err := r.Run(context.Background())
	decided := time.Now()
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Peers) != len(all) {
		t.Fatalf("decided on %d peers while the set was still changing", len(d.Peers))
	}
	if gap := decided.Sub(lastChange); gap < c.StableMargin {
		t.Errorf("decided %s after the last change, margin is %s", gap, c.StableMargin)
	}
}

// The margin is also held against the records' TTL.
func TestStabilityLongerThanTTL(t *testing.T) {
	z := startZone(t, 1)
	z.Set(fqdn, "", loopPeers("127.0.0.1")...)
	c := testConfig(t, z, "127.0.0.1")
	r, _ := runner(c)
	start := time.Now()
	if _, err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took <= time.Second {
		t.Errorf("decided in %s with a 1s TTL", took)
	}
}

// 4. Own IP never appears; NXDOMAIN; SERVFAIL storms.
func TestFailureExits(t *testing.T) {
	t.Run("own IP never appears", func(t *testing.T) {
		z := startZone(t, 0)
		z.Set(fqdn, "", loopPeers("127.0.0.2", "127.0.0.3")...)
		c := testConfig(t, z, "127.0.0.1")
		c.Timeout = 800 * time.Millisecond
		r, _ := runner(c)
		_, err := r.Run(context.Background())
		if Code(err) != ExitNoSelf || !strings.Contains(err.Error(), "never appeared in A/AAAA "+fqdn) {
			t.Fatalf("exit %d: %v", Code(err), err)
		}
	})
	t.Run("own IP never appears under a port name the Service lacks", func(t *testing.T) {
		// The Service's SRV records are for another port name: the
		// message names the exact SRV name asked for.
		z := startZone(t, 0)
		z.Set(fqdn, "", loopPeers("127.0.0.1", "127.0.0.3")...)
		c := testConfig(t, z, "127.0.0.1")
		c.PortName = "gossip"
		c.Timeout = 800 * time.Millisecond
		r, _ := runner(c)
		_, err := r.Run(context.Background())
		if want := "never appeared in SRV _gossip._tcp." + fqdn; Code(err) != ExitNoSelf || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), `port named "gossip"`) {
			t.Fatalf("exit %d: %v, want %q and the port name", Code(err), err, want)
		}
	})
	t.Run("NXDOMAIN until the deadline", func(t *testing.T) {
		z := startZone(t, 0)
		c := testConfig(t, z, "127.0.0.1")
		c.Timeout = 800 * time.Millisecond
		r, _ := runner(c)
		_, err := r.Run(context.Background())
		if Code(err) == ExitOK {
			t.Fatal("NXDOMAIN decided")
		}
		if _, statErr := os.Stat(filepath.Join(c.OutputDir, "seeds")); !errors.Is(statErr, os.ErrNotExist) {
			t.Error("seeds written")
		}
	})
	t.Run("SERVFAIL storm", func(t *testing.T) {
		z := startZone(t, 0)
		z.SetMode(dnszone.ServFail)
		c := testConfig(t, z, "127.0.0.1")
		c.Timeout = 3 * time.Second
		r, log := runner(c)
		_, err := r.Run(context.Background())
		if Code(err) != ExitDNSErrors || !strings.Contains(err.Error(), "SERVFAIL") {
			t.Fatalf("exit %d: %v", Code(err), err)
		}
		// Backoff 50ms doubling to 5s: about 6 tries in 3s, not 60.
		udp, _ := z.Queries()
		if udp > 12 {
			t.Errorf("%d queries in 3s of SERVFAIL: backoff is not bounding retries\n%s", udp, log)
		}
	})
	t.Run("server silent", func(t *testing.T) {
		z := startZone(t, 0)
		z.SetMode(dnszone.Silent)
		c := testConfig(t, z, "127.0.0.1")
		c.Timeout = 1500 * time.Millisecond
		r, _ := runner(c)
		if _, err := r.Run(context.Background()); Code(err) != ExitDNSErrors {
			t.Fatalf("exit %d: %v", Code(err), err)
		}
	})
	t.Run("SIGTERM", func(t *testing.T) {
		z := startZone(t, 0)
		c := testConfig(t, z, "127.0.0.1")
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		r, _ := runner(c)
		if _, err := r.Run(ctx); Code(err) != ExitInterrupted {
			t.Fatalf("exit %d: %v", Code(err), err)
		}
	})
}

// 5. ordinal0: pod 0 founds and the others join it, whatever the IP order,
// with hostnames from SRV targets or from PTR records.
func TestOrdinal0(t *testing.T) {
	for _, portName := range []string{"intra-node", ""} {
		t.Run("port name "+portName, func(t *testing.T) {
			z := startZone(t, 0)
			sts := []dnszone.Peer{
				{IP: netip.MustParseAddr("127.0.0.9"), Hostname: "cassandra-0"},
				{IP: netip.MustParseAddr("127.0.0.5"), Hostname: "cassandra-1"},
				{IP: netip.MustParseAddr("127.0.0.1"), Hostname: "cassandra-2"},
			}
			z.Set(fqdn, portName, sts...)
			var wg sync.WaitGroup
			results := make([]Decision, len(sts))
			for i, p := range sts {
				c := testConfig(t, z, p.IP.String())
				c.PodName, c.Founding, c.PortName, c.SeedCount = p.Hostname, FoundOrdinal0, portName, 2
				wg.Add(1)
				go func() {
					defer wg.Done()
					r, log := runner(c)
					d, err := r.Run(context.Background())
					if err != nil {
						t.Errorf("%s: %v\n%s", p.Hostname, err, log)
					}
					results[i] = d
				}()
			}
			wg.Wait()
			for i, d := range results {
				if fmt.Sprint(d.Seeds) != "[127.0.0.9 127.0.0.5]" || d.Order != "ordinal" {
					t.Errorf("%s: seeds %v order %s", sts[i].Hostname, d.Seeds, d.Order)
				}
				if want := map[bool]string{true: RoleFounder, false: RoleJoiner}[i == 0]; i != 1 && d.Role != want {
					t.Errorf("%s: role %s, want %s", sts[i].Hostname, d.Role, want)
				}
			}
		})
	}
}

// livePeer is a peer port on ip that accepts every connection (a running
// server), closed with the test; it returns the port.
func livePeer(t *testing.T, ip string) int {
	t.Helper()
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

// 6. A live peer on the peer port: join, even with the lowest IP.
func TestLivePeerMeansJoin(t *testing.T) {
	port := livePeer(t, "127.0.0.3")
	z := startZone(t, 0)
	z.Set(fqdn, "", loopPeers("127.0.0.1", "127.0.0.2", "127.0.0.3")...)
	c := testConfig(t, z, "127.0.0.1")
	// The live peer is not one of its seeds (the first two): it joins the
	// live cluster instead of taking the order's seeds.
	c.PeerPort, c.SeedCount = port, 2
	var dialed []string
	var mu sync.Mutex
	r, _ := runner(c)
	r.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dialed = append(dialed, addr)
		mu.Unlock()
		host, _, _ := net.SplitHostPort(addr)
		if !netip.MustParseAddr(host).IsLoopback() {
			t.Errorf("probe to non-loopback %s", addr)
			return nil, errors.New("refused by test")
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	d, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d.Role != RoleJoiner || fmt.Sprint(d.Seeds) != "[127.0.0.3]" {
		t.Errorf("role %s seeds %v, want joiner of the live peer", d.Role, d.Seeds)
	}
	if len(dialed) != 2 {
		t.Errorf("probed %v, want the two other peers", dialed)
	}
}

// 7. More than 200 peers: UDP truncates, TCP answers, choice deterministic.
func TestLargeGroupOverTCP(t *testing.T) {
	z := startZone(t, 0)
	var ips []string
	for i := range 300 {
		ips = append(ips, fmt.Sprintf("127.0.%d.%d", 1+i/200, 1+i%200))
	}
	z.Set(fqdn, "", loopPeers(ips...)...)
	var seeds []string
	for _, self := range []string{ips[0], ips[150], ips[299]} {
		c := testConfig(t, z, self)
		r, log := runner(c)
		if _, err := r.Run(context.Background()); err != nil {
			t.Fatalf("%v\n%s", err, log)
		}
		s, peers, _ := readOutputs(t, c.OutputDir)
		if len(peers) != 300 {
			t.Fatalf("%d peers", len(peers))
		}
		seeds = append(seeds, s)
	}
	if seeds[0] != seeds[1] || seeds[1] != seeds[2] || seeds[0] != "127.0.1.1,127.0.1.2,127.0.1.3" {
		t.Errorf("seeds %v", seeds)
	}
	if _, tcp := z.Queries(); tcp == 0 {
		t.Error("no TCP fallback happened")
	}
}

// 8. Output not writable, reruns idempotent.
func TestOutputs(t *testing.T) {
	z := startZone(t, 0)
	z.Set(fqdn, "", loopPeers("127.0.0.1", "fd00::1")...)
	c := testConfig(t, z, "127.0.0.1")
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	bad := c
	bad.OutputDir = notDir
	r, _ := runner(bad)
	if _, err := r.Run(context.Background()); Code(err) != ExitNotWritable || !strings.Contains(err.Error(), "not writable") {
		t.Fatalf("exit %d: %v", Code(err), err)
	}
	if os.Geteuid() != 0 {
		ro := t.TempDir()
		if err := os.Chmod(ro, 0o555); err != nil {
			t.Fatal(err)
		}
		bad.OutputDir = ro
		r, _ := runner(bad)
		if _, err := r.Run(context.Background()); Code(err) != ExitNotWritable {
			t.Fatalf("read-only dir: exit %d: %v", Code(err), err)
		}
	}

	var outputs []string
	for range 2 {
		r, _ := runner(c)
		if _, err := r.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		seeds, peers, doc := readOutputs(t, c.OutputDir)
		outputs = append(outputs, fmt.Sprintf("%s %v %s %v", seeds, peers, doc.Role, doc.Seeds))
	}
	// 127.0.0.1 and fd00::1 are, as far as DNS tells, two addresses of
	// unknown pods in two families: the pods are counted, and seeded, by
	// IPv4 (GroupPods); fd00::1 is not a second peer.
	if outputs[0] != outputs[1] || outputs[0] != "127.0.0.1 [127.0.0.1] founder [127.0.0.1]" {
		t.Errorf("outputs %q", outputs)
	}
	entries, _ := os.ReadDir(c.OutputDir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	// No port (neither peer-port nor port-name): no host:port files.
	if want := []string{"discovery.json", "peer-hosts", "peers", "seed-hosts", "seeds"}; !slices.Equal(names, want) {
		t.Errorf("output dir holds %q, want %q (temp files left?)", names, want)
	}
}

// runAll runs seed-discovery for every config at once and returns the
// decisions and errors, in order.
func runAll(t *testing.T, configs []Config) ([]Decision, []error, []string) {
	t.Helper()
	var wg sync.WaitGroup
	ds, errs, logs := make([]Decision, len(configs)), make([]error, len(configs)), make([]string, len(configs))
	for i, c := range configs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, log := runner(c)
			ds[i], errs[i] = r.Run(context.Background())
			logs[i] = log.String()
		}()
	}
	wg.Wait()
	return ds, errs, logs
}

// dualStackPods are three StatefulSet pods with an IPv4 and an IPv6
// address each (addresses are data: nothing dials them).
var dualStackPods = []dnszone.Pod{
	{Hostname: "cassandra-0", IPs: []netip.Addr{netip.MustParseAddr("127.0.0.9"), netip.MustParseAddr("fd00::9")}},
	{Hostname: "cassandra-1", IPs: []netip.Addr{netip.MustParseAddr("127.0.0.5"), netip.MustParseAddr("fd00::5")}},
	{Hostname: "cassandra-2", IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("fd00::1")}},
}

// 9. Dual stack: a zone with A, AAAA and PTR records (or SRV) for each pod.
// Peers are pods: two pods with two addresses each are not enough for
// expected-peers 3, and seeds are distinct pods, each with every address.
func TestDualStackCountsPods(t *testing.T) {
	for _, portName := range []string{"", "intra-node"} {
		t.Run("port name "+portName, func(t *testing.T) {
			z := startZone(t, 0)
			z.Set(fqdn, portName, dnszone.Endpoints(dualStackPods[1:]...)...)
			config := func(p dnszone.Pod) Config {
				c := testConfig(t, z, p.IPs[0].String())
				c.PodName, c.PodIPs, c.PortName, c.SeedCount, c.ExpectedPeers = p.Hostname, p.IPs, portName, 2, 3
				return c
			}
			// Two pods, four addresses: not yet three peers.
			c := config(dualStackPods[1])
			c.Timeout = time.Second
			r, log := runner(c)
			_, err := r.Run(context.Background())
			if Code(err) != ExitNotStable || !strings.Contains(err.Error(), "2 of 3 expected peers visible") {
				t.Fatalf("two dual-stack pods, expected peers 3: exit %d %v\n%s", Code(err), err, log)
			}

			z.Set(fqdn, portName, dnszone.Endpoints(dualStackPods...)...)
			var configs []Config
			for _, p := range dualStackPods {
				configs = append(configs, config(p))
			}
			ds, errs, logs := runAll(t, configs)
			for i, d := range ds {
				if errs[i] != nil {
					t.Fatalf("%s: %v\n%s", dualStackPods[i].Hostname, errs[i], logs[i])
				}
				seeds, peers, _ := readOutputs(t, configs[i].OutputDir)
				if seeds != "127.0.0.9,fd00::9,127.0.0.5,fd00::5" || d.Order != OrderOrdinal {
					t.Errorf("%s: seeds %q (%s order), want both addresses of cassandra-0 and cassandra-1", dualStackPods[i].Hostname, seeds, d.Order)
				}
				if strings.Join(peers, " ") != "127.0.0.9,fd00::9 127.0.0.5,fd00::5 127.0.0.1,fd00::1" || len(d.Uncounted) != 0 {
					t.Errorf("%s: peers file %q, uncounted %v; want one line per pod", dualStackPods[i].Hostname, peers, d.Uncounted)
				}
				if want := []string{RoleFounder, RoleSeed, RoleJoiner}[i]; d.Role != want {
					t.Errorf("%s: role %s, want %s", dualStackPods[i].Hostname, d.Role, want)
				}
			}
		})
	}
}

// Dual-stack pods DNS does not name (a Deployment's: PTR names are the
// IPs with dashes, or there are no PTR records): DNS cannot pair a pod's
// IPv4 and IPv6 addresses, so pods are counted and seeded by one family,
// and the log says so.
func TestDualStackWithoutHostnames(t *testing.T) {
	pods := []dnszone.Pod{
		{IPs: []netip.Addr{netip.MustParseAddr("127.0.0.9"), netip.MustParseAddr("fd00::9")}},
		{IPs: []netip.Addr{netip.MustParseAddr("127.0.0.5"), netip.MustParseAddr("fd00::5")}},
		{IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("fd00::1")}},
	}
	for _, ptr := range []bool{true, false} {
		t.Run(fmt.Sprintf("PTR %v", ptr), func(t *testing.T) {
			z := startZone(t, 0)
			z.ServePTR(ptr)
			z.Set(fqdn, "", dnszone.Endpoints(pods[1:]...)...)
			config := func(p dnszone.Pod) Config {
				c := testConfig(t, z, p.IPs[0].String())
				c.PodName, c.PodIPs, c.SeedCount, c.ExpectedPeers = "cassandra-7d9f8-abcde", p.IPs, 2, 3
				return c
			}
			c := config(pods[1])
			c.Timeout = time.Second
			r, log := runner(c)
			_, err := r.Run(context.Background())
			if Code(err) != ExitNotStable || !strings.Contains(err.Error(), "2 of 3 expected peers visible") {
				t.Fatalf("two dual-stack pods, expected peers 3: exit %d %v\n%s", Code(err), err, log)
			}
			if !strings.Contains(log.String(), "counting pods by their 2 IPv4 addresses, as a pod has at most one address per family; the 2 other addresses are not counted") {
				t.Errorf("the log does not say how pods are counted:\n%s", log)
			}

			z.Set(fqdn, "", dnszone.Endpoints(pods...)...)
			var configs []Config
			for _, p := range pods {
				configs = append(configs, config(p))
			}
			ds, errs, logs := runAll(t, configs)
			for i, d := range ds {
				if errs[i] != nil {
					t.Fatalf("pod %d: %v\n%s", i, errs[i], logs[i])
				}
				seeds, peers, _ := readOutputs(t, configs[i].OutputDir)
				if seeds != "127.0.0.1,127.0.0.5" || len(peers) != 3 || fmt.Sprint(d.Uncounted) != "[fd00::1 fd00::5 fd00::9]" {
					t.Errorf("pod %d: seeds %q peers %v uncounted %v; want two pods by IPv4", i, seeds, peers, d.Uncounted)
				}
			}
		})
	}
}

// 10. founding=ordinal0 on pods that are not a StatefulSet's: their DNS
// names are their IPs with dashes, not ordinals, and seed-discovery says so
// instead of waiting for an "ordinal 0" that is an IP ending in .0.
func TestOrdinal0OnDeploymentPods(t *testing.T) {
	z := startZone(t, 0)
	z.Set(fqdn, "", loopPeers("127.0.1.0", "127.0.1.7", "127.0.1.9")...)
	c := testConfig(t, z, "127.0.1.7")
	c.PodName, c.Founding, c.Timeout = "cassandra-7d9f8-abcde", FoundOrdinal0, time.Second
	r, log := runner(c)
	_, err := r.Run(context.Background())
	if Code(err) != ExitNotStable || !strings.Contains(err.Error(), "founding=ordinal0 needs every peer to be a pod of one StatefulSet") ||
		!strings.Contains(err.Error(), `127.0.1.0 is named "127-0-1-0" after its IP`) {
		t.Fatalf("exit %d: %v\n%s", Code(err), err, log)
	}
	if !strings.Contains(log.String(), "stable but waiting: founding=ordinal0") {
		t.Errorf("the log does not say why it waits:\n%s", log)
	}
}

// 11. A group larger than one DNS answer: the answer is truncated even
// over TCP. That is reported, at once, and never taken as the group.
func TestTruncatedTCPAnswer(t *testing.T) {
	many := func(n int) []dnszone.Peer {
		out := make([]dnszone.Peer, n)
		for i := range out {
			out[i] = dnszone.Peer{IP: netip.AddrFrom4([4]byte{127, byte(1 + i>>16), byte(i >> 8), byte(i)})}
		}
		return out
	}
	for _, portName := range []string{"", "intra-node"} {
		t.Run("port name "+portName, func(t *testing.T) {
			z := startZone(t, 0)
			z.Set(fqdn, portName, many(5000)...)
			c := testConfig(t, z, "127.1.0.0")
			c.PortName = portName
			r, log := runner(c)
			start := time.Now()
			_, err := r.Run(context.Background())
			var trunc *TruncatedError
			if Code(err) != ExitDNSErrors || !errors.As(err, &trunc) || !strings.Contains(err.Error(), "the group is larger than one DNS answer can carry") {
				t.Fatalf("exit %d: %v\n%s", Code(err), err, log)
			}
			if trunc.SRV != (portName != "") || !strings.Contains(err.Error(), fmt.Sprintf("at most %d pods", contract.MaxPeers)) {
				t.Errorf("message %q", err)
			}
			if took := time.Since(start); took > c.Timeout/2 {
				t.Errorf("took %s: a truncated answer is not retried until the timeout", took)
			}
			if _, statErr := os.Stat(filepath.Join(c.OutputDir, "seeds")); !errors.Is(statErr, os.ErrNotExist) {
				t.Error("seeds written from a truncated answer")
			}
		})
	}
}

// contract.MaxPeers addresses fit in one TCP answer even under the longest
// name a Service can have, for A and for AAAA: the largest expected-peers
// can be seen.
func TestMaxPeersFitOneAnswer(t *testing.T) {
	z := startZone(t, 0)
	// 63 + 63 + "svc" + 121: 254 characters with the trailing dot, a
	// 255-byte name on the wire.
	long := Config{Service: strings.Repeat("s", 63), Namespace: strings.Repeat("n", 63), ClusterDomain: strings.Repeat("d", 60) + "." + strings.Repeat("e", 60)}
	name := long.FQDN()
	if len(name) != 254 {
		t.Fatalf("name of %d characters", len(name))
	}
	peers := make([]dnszone.Peer, 0, 2*contract.MaxPeers)
	for i := range contract.MaxPeers {
		peers = append(peers,
			dnszone.Peer{IP: netip.AddrFrom4([4]byte{127, 1, byte(i >> 8), byte(i)})},
			dnszone.Peer{IP: netip.AddrFrom16([16]byte{0xfd, 14: byte(i >> 8), 15: byte(i)})})
	}
	z.Set(name, "", peers...)
	obs, err := (&Resolver{Server: z.Addr}).Observe(context.Background(), name, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(obs.Peers) != 2*contract.MaxPeers {
		t.Errorf("%d addresses, want %d", len(obs.Peers), 2*contract.MaxPeers)
	}
	if _, tcp := z.Queries(); tcp != 2 {
		t.Errorf("%d TCP queries, want one for A and one for AAAA", tcp)
	}
}

// 12. CoreDNS answers a pod IP's PTR query with one record per Service
// whose endpoints hold the address, in Go map order. Here a client Service
// (not the pods' subdomain, so its endpoints are named after their IPs)
// selects the group's pods too, and the zone lists the two names in the
// other order on each query of an address. Two pods deciding one after the
// other on the same A/AAAA records, so seeing every PTR answer in opposite
// orders, must agree: ordinal order, the same seeds, one founder. In the
// dual-stack group each pod's IPv4 and IPv6 answers also come in opposite
// orders within one run, and a pod still counts once.
func TestPTRNamesOfOtherServices(t *testing.T) {
	const clientFQDN = "cassandra-client.db.svc.cluster.local."
	singleStack := []dnszone.Pod{
		{Hostname: "cassandra-0", IPs: []netip.Addr{netip.MustParseAddr("127.0.0.9")}},
		{Hostname: "cassandra-1", IPs: []netip.Addr{netip.MustParseAddr("127.0.0.5")}},
		{Hostname: "cassandra-2", IPs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}},
	}
	for _, tc := range []struct {
		name  string
		pods  []dnszone.Pod
		seeds string
	}{
		{"single stack", singleStack, "127.0.0.9,127.0.0.5"},
		{"dual stack", dualStackPods, "127.0.0.9,fd00::9,127.0.0.5,fd00::5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			z := startZone(t, 0)
			z.Set(fqdn, "", dnszone.Endpoints(tc.pods...)...)
			var unnamed []dnszone.Peer
			var ipv6 []Peer
			for _, p := range dnszone.Endpoints(tc.pods...) {
				unnamed = append(unnamed, dnszone.Peer{IP: p.IP})
				if p.IP.Is6() {
					ipv6 = append(ipv6, Peer{IP: p.IP})
				}
			}
			z.Set(clientFQDN, "", unnamed...)
			// Ask every IPv6 address once ahead: in each run below a pod's
			// IPv4 and IPv6 answers then list the two names in opposite
			// orders.
			if _, err := (&Resolver{Server: z.Addr}).Hostnames(context.Background(), fqdn, ipv6); err != nil {
				t.Fatal(err)
			}

			// One after the other: each run asks each address once, so the
			// second run gets every answer in the order the first did not.
			// Taking the first PTR record, in the single-stack group
			// cassandra-2 read the client Service's names (IP order: it is
			// first) and cassandra-0 the group's (ordinal order: it is
			// first), and both founded; in the dual-stack group each pod
			// was split in two, one family named and the other not.
			var decided []string
			for _, p := range []dnszone.Pod{tc.pods[2], tc.pods[0]} {
				c := testConfig(t, z, p.IPs[0].String())
				c.PodName, c.PodIPs, c.SeedCount, c.ExpectedPeers = p.Hostname, p.IPs, 2, 3
				r, log := runner(c)
				d, err := r.Run(context.Background())
				if err != nil {
					t.Fatalf("%s: %v\n%s", p.Hostname, err, log)
				}
				seeds, peers, _ := readOutputs(t, c.OutputDir)
				if seeds != tc.seeds || d.Order != OrderOrdinal {
					t.Errorf("%s: seeds %q (%s order), want %q in ordinal order", p.Hostname, seeds, d.Order, tc.seeds)
				}
				if len(d.Peers) != len(tc.pods) || len(d.Uncounted) != 0 {
					t.Errorf("%s: %d pods %v, uncounted %v; want each of the %d pods once", p.Hostname, len(d.Peers), peers, d.Uncounted, len(tc.pods))
				}
				decided = append(decided, fmt.Sprintf("%s %s %v", d.Order, seeds, peers))
				if want := map[string]string{"cassandra-0": RoleFounder, "cassandra-2": RoleJoiner}[p.Hostname]; d.Role != want {
					t.Errorf("%s: role %s, want %s", p.Hostname, d.Role, want)
				}
			}
			if decided[0] != decided[1] {
				t.Errorf("two pods decided differently on the same records:\n%s\n%s", decided[0], decided[1])
			}
		})
	}
}

// discovery.json counts the DNS messages the pod sent until it decided:
// exactly what the DNS server received from it, the truncated answers'
// TCP retries included.
func TestDecisionCountsItsQueries(t *testing.T) {
	many := []string{"127.0.0.30"}
	for i := range 150 {
		many = append(many, fmt.Sprintf("127.0.1.%d", i+1))
	}
	for _, tc := range []struct {
		name    string
		peers   []string
		wantTCP bool
	}{{"udp", []string{"127.0.0.30", "127.0.0.31"}, false}, {"truncated, then tcp", many, true}} {
		t.Run(tc.name, func(t *testing.T) {
			z := startZone(t, 0)
			z.Set(fqdn, "", loopPeers(tc.peers...)...)
			c := testConfig(t, z, "127.0.0.30")
			r, _ := runner(c)
			d, err := r.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			udp, tcp := z.Queries()
			_, _, doc := readOutputs(t, c.OutputDir)
			if doc.Queries != udp+tcp || d.Queries != doc.Queries {
				t.Fatalf("discovery.json says %d queries (decision %d), the server received %d over UDP and %d over TCP", doc.Queries, d.Queries, udp, tcp)
			}
			if (tcp > 0) != tc.wantTCP {
				t.Fatalf("%d TCP queries: the case does not test what it names", tcp)
			}
		})
	}
}

// A peer that stays in DNS but never answers (a pod of a lost node before
// its eviction: traffic to it is dropped) costs one bounded probe per
// observation and is never a seed: the pod joins the peer that answers.
func TestSilentPeerIsNeverASeed(t *testing.T) {
	port := livePeer(t, "127.0.0.3")
	z := startZone(t, 0)
	z.Set(fqdn, "", loopPeers("127.0.0.1", "127.0.0.2", "127.0.0.3")...)
	c := testConfig(t, z, "127.0.0.1")
	c.PeerPort, c.SeedCount = port, 2
	r, _ := runner(c)
	var silentProbes int
	var mu sync.Mutex
	r.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, _ := net.SplitHostPort(addr)
		if host != "127.0.0.2" {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}
		deadline, ok := ctx.Deadline()
		if !ok || time.Until(deadline) > probeTimeout {
			t.Errorf("a probe of a silent peer may wait %v (deadline set: %v), want at most %v", time.Until(deadline), ok, probeTimeout)
		}
		mu.Lock()
		silentProbes++
		mu.Unlock()
		select { // dropped: no answer, no refusal
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(2 * probeTimeout):
			return nil, errors.New("the probe outlived its bound")
		}
	}
	d, err := r.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d.Role != RoleJoiner || fmt.Sprint(d.Seeds) != "[127.0.0.3]" {
		t.Errorf("role %s seeds %v, want joiner of the peer that answers only", d.Role, d.Seeds)
	}
	if silentProbes == 0 {
		t.Error("the silent peer was never probed")
	}
	// It stays in the view: every pod orders the same set, whatever its
	// probes saw (docs/design.md, "Addresses that never answer").
	var peers []string
	for _, p := range d.Peers {
		peers = append(peers, fmt.Sprint(p.IPs))
	}
	if want := "[[127.0.0.1] [127.0.0.2] [127.0.0.3]]"; fmt.Sprint(peers) != want {
		t.Errorf("peers %v, want %s: the silent peer kept in the view", peers, want)
	}
}
