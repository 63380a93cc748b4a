package discovery

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Config is seed-discovery's input (DESIGN.md section 3). Env vars give the
// defaults, flags override them.
type Config struct {
	Service       string
	Namespace     string
	PodName       string
	PodIPs        []netip.Addr
	ClusterDomain string
	SeedCount     int
	ExpectedPeers int
	StableMargin  time.Duration
	Timeout       time.Duration
	Founding      Founding
	PeerPort      int
	PortName      string
	DNSServer     string
	OutputDir     string
	// TerminationLog receives the failure reason when writable.
	TerminationLog string
	// PollInterval between DNS observations; 0 derives it from the margin.
	PollInterval time.Duration
}

// FQDN is the absolute name queried: no search-path expansion.
func (c Config) FQDN() string {
	return fmt.Sprintf("%s.%s.svc.%s.", c.Service, c.Namespace, strings.TrimSuffix(c.ClusterDomain, "."))
}

// ConfigError is exit code 2.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return "configuration: " + e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// LoadConfig reads env (getenv), then flags (args), then the resolv.conf
// content for what is still missing (cluster domain, DNS server).
func LoadConfig(args []string, getenv func(string) string, resolvConf []byte) (Config, error) {
	c, err := load(args, getenv, resolvConf)
	if err != nil {
		return Config{}, &ConfigError{err}
	}
	return c, nil
}

func load(args []string, getenv func(string) string, resolvConf []byte) (Config, error) {
	var errs []error
	envInt := func(name string, def int) int {
		v := getenv(name)
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q is not an integer", name, v))
		}
		return n
	}
	envDur := func(name string, def time.Duration) time.Duration {
		v := getenv(name)
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q is not a duration (e.g. 5s)", name, v))
		}
		return d
	}
	envStr := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	c := Config{}
	podIPs := envStr("POD_IPS", getenv("POD_IP"))
	founding := envStr("PEERGROUP_FOUNDING", string(FoundLowest))

	fs := flag.NewFlagSet("seed-discovery", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.Service, "service", getenv("PEERGROUP_SERVICE"), "headless Service name (PEERGROUP_SERVICE)")
	fs.StringVar(&c.Namespace, "namespace", getenv("POD_NAMESPACE"), "namespace (POD_NAMESPACE)")
	fs.StringVar(&c.PodName, "pod-name", getenv("POD_NAME"), "this pod's name (POD_NAME)")
	fs.StringVar(&podIPs, "pod-ips", podIPs, "this pod's IPs, comma separated (POD_IPS, else POD_IP)")
	fs.StringVar(&c.ClusterDomain, "cluster-domain", getenv("PEERGROUP_CLUSTER_DOMAIN"), "cluster DNS domain (PEERGROUP_CLUSTER_DOMAIN, else the resolv.conf search line)")
	fs.IntVar(&c.SeedCount, "seed-count", envInt("PEERGROUP_SEED_COUNT", 3), "number of seeds (PEERGROUP_SEED_COUNT)")
	fs.IntVar(&c.ExpectedPeers, "expected-peers", envInt("PEERGROUP_EXPECTED_PEERS", 1), "peers to see before founding (PEERGROUP_EXPECTED_PEERS)")
	fs.DurationVar(&c.StableMargin, "stable-margin", envDur("PEERGROUP_STABLE_MARGIN", 5*time.Second), "how long the view must not change (PEERGROUP_STABLE_MARGIN)")
	fs.DurationVar(&c.Timeout, "timeout", envDur("PEERGROUP_TIMEOUT", 300*time.Second), "overall deadline (PEERGROUP_TIMEOUT)")
	fs.StringVar(&founding, "founding", founding, "lowest, ordinal0 or never (PEERGROUP_FOUNDING)")
	fs.IntVar(&c.PeerPort, "peer-port", envInt("PEERGROUP_PEER_PORT", 0), "TCP port probed on peers; a live peer means join (PEERGROUP_PEER_PORT)")
	fs.StringVar(&c.PortName, "port-name", getenv("PEERGROUP_PORT_NAME"), "query SRV records of this port name (PEERGROUP_PORT_NAME)")
	fs.StringVar(&c.DNSServer, "dns-server", getenv("PEERGROUP_DNS_SERVER"), "DNS server host:port (default: the resolv.conf nameserver)")
	fs.StringVar(&c.OutputDir, "output-dir", envStr("PEERGROUP_OUTPUT_DIR", "/var/run/peergroup"), "directory for seeds, peers and discovery.json")
	fs.StringVar(&c.TerminationLog, "termination-log", "/dev/termination-log", "file that receives the failure reason")
	fs.DurationVar(&c.PollInterval, "poll-interval", 0, "time between observations (default: stable margin / 4, within 100ms..1s)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	c.Founding = Founding(founding)

	for _, s := range strings.Split(podIPs, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		ip, err := netip.ParseAddr(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("pod IP %q: %w", s, err))
			continue
		}
		c.PodIPs = append(c.PodIPs, ip.Unmap())
	}

	var rc *dns.ClientConfig
	if len(resolvConf) > 0 {
		rc, _ = dns.ClientConfigFromReader(bytes.NewReader(resolvConf))
	}
	if c.ClusterDomain == "" && rc != nil {
		c.ClusterDomain = domainFromSearch(rc.Search, c.Namespace)
	}
	if c.DNSServer == "" && rc != nil && len(rc.Servers) > 0 {
		c.DNSServer = net.JoinHostPort(rc.Servers[0], rc.Port)
	}

	switch {
	case c.Service == "":
		errs = append(errs, errors.New("no Service name: set PEERGROUP_SERVICE or --service"))
	case c.Namespace == "":
		errs = append(errs, errors.New("no namespace: set POD_NAMESPACE or --namespace"))
	}
	if len(c.PodIPs) == 0 {
		errs = append(errs, errors.New("no pod IP: set POD_IPS or POD_IP (downward API status.podIPs / status.podIP) or --pod-ips"))
	}
	if c.ClusterDomain == "" {
		errs = append(errs, errors.New("no cluster domain: set PEERGROUP_CLUSTER_DOMAIN, or run with a resolv.conf whose search line has <namespace>.svc.<domain>"))
	}
	if c.DNSServer == "" {
		errs = append(errs, errors.New("no DNS server: give --dns-server or a resolv.conf nameserver"))
	}
	if c.SeedCount < 1 {
		errs = append(errs, fmt.Errorf("seed count %d must be at least 1", c.SeedCount))
	}
	if c.ExpectedPeers < 1 {
		errs = append(errs, fmt.Errorf("expected peers %d must be at least 1", c.ExpectedPeers))
	}
	if c.StableMargin <= 0 || c.Timeout <= 0 {
		errs = append(errs, errors.New("stable margin and timeout must be positive"))
	}
	switch c.Founding {
	case FoundLowest, FoundOrdinal0, FoundNever:
	default:
		errs = append(errs, fmt.Errorf("founding %q must be lowest, ordinal0 or never", c.Founding))
	}
	if c.PeerPort < 0 || c.PeerPort > 65535 {
		errs = append(errs, fmt.Errorf("peer port %d out of range", c.PeerPort))
	}
	if c.PollInterval == 0 {
		c.PollInterval = min(max(c.StableMargin/4, 100*time.Millisecond), time.Second)
	}
	return c, errors.Join(errs...)
}

// domainFromSearch finds the cluster domain in a pod's search list
// ("<ns>.svc.cluster.local svc.cluster.local cluster.local").
func domainFromSearch(search []string, namespace string) string {
	for _, s := range search {
		s = strings.TrimSuffix(s, ".")
		if namespace != "" {
			if d, ok := strings.CutPrefix(s, namespace+".svc."); ok {
				return d
			}
		}
		if d, ok := strings.CutPrefix(s, "svc."); ok {
			return d
		}
	}
	return ""
}
