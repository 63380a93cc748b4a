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
	"strings"
	"sync"
	"testing"
	"time"

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
		if Code(err) != ExitNoSelf || !strings.Contains(err.Error(), "never appeared") {
			t.Fatalf("exit %d: %v", Code(err), err)
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

// 6. A live peer on the peer port: join, even with the lowest IP.
func TestLivePeerMeansJoin(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.3:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	z := startZone(t, 0)
	z.Set(fqdn, "", loopPeers("127.0.0.1", "127.0.0.2", "127.0.0.3")...)
	c := testConfig(t, z, "127.0.0.1")
	c.PeerPort = port
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
	if outputs[0] != outputs[1] || outputs[0] != "127.0.0.1,fd00::1 [127.0.0.1 fd00::1] founder [127.0.0.1 fd00::1]" {
		t.Errorf("outputs %q", outputs)
	}
	entries, _ := os.ReadDir(c.OutputDir)
	if len(entries) != 3 {
		t.Errorf("output dir holds %d entries (temp files left?)", len(entries))
	}
}
