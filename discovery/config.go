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
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/peergroup/peergroup/contract"
)

// Config is seed-discovery's input (docs/design.md, seed-discovery). Env
// vars give the values, flags override them.
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
	// PeerPort 0 means no probing.
	PeerPort int
	// PortName empty means A/AAAA records instead of SRV.
	PortName string
	// SeedAddress says whether hosts are IPs or the pods' DNS names.
	SeedAddress contract.SeedAddress
	// Refresh, when positive, keeps the peer files current at this
	// interval after the first decision (the refreshing sidecar).
	Refresh   time.Duration
	DNSServer string
	OutputDir string
	// TerminationLog receives the failure reason when writable.
	TerminationLog string
	// PollInterval between DNS observations; 0 derives it from the margin.
	PollInterval time.Duration
}

// Env vars only seed-discovery reads: the webhook never sets them, so they
// are not part of the contract.
const (
	envDNSServer          = "PEERGROUP_DNS_SERVER"
	envOutputDir          = "PEERGROUP_OUTPUT_DIR"
	defaultTerminationLog = "/dev/termination-log"
)

// FQDN is the absolute name queried: no search-path expansion.
func (c Config) FQDN() string {
	return fmt.Sprintf("%s.%s.svc.%s.", c.Service, c.Namespace, strings.TrimSuffix(c.ClusterDomain, "."))
}

// Asked names what Run asks DNS, for messages: the SRV name with a port
// name, else the A/AAAA name.
func (c Config) Asked() string {
	if c.PortName != "" {
		return "SRV " + SRVName(c.FQDN(), c.PortName)
	}
	return "A/AAAA " + c.FQDN()
}

// SRVName is the SRV record name of a Service's named TCP port.
func SRVName(fqdn, portName string) string { return "_" + portName + "._tcp." + fqdn }

// LoadConfig reads env (getenv), then flags (args), then the resolv.conf
// content for what is still missing (cluster domain, DNS server).
func LoadConfig(args []string, getenv func(string) string, resolvConf []byte) (Config, error) {
	c, err := load(args, getenv, resolvConf)
	if err != nil {
		return Config{}, &ConfigError{err}
	}
	return c, nil
}

// tuningField stores a tuning value's text into its Config field. The text
// has passed the tuning's Check, so it parses.
type tuningField struct {
	usage string
	set   func(c *Config, s string)
}

// tuningFields covers every contract.Tunings entry, by name.
var tuningFields = map[string]tuningField{
	contract.SeedCount.Name:     {"number of seeds", func(c *Config, s string) { c.SeedCount = atoi(s) }},
	contract.ExpectedPeers.Name: {"peers to see before founding", func(c *Config, s string) { c.ExpectedPeers = atoi(s) }},
	contract.StableMargin.Name:  {"how long the view must not change", func(c *Config, s string) { c.StableMargin = duration(s) }},
	contract.Timeout.Name:       {"overall deadline", func(c *Config, s string) { c.Timeout = duration(s) }},
	contract.FoundingValue.Name: {"lowest, ordinal0 or never", func(c *Config, s string) { c.Founding = Founding(s) }},
	contract.PeerPort.Name:      {"TCP port probed on peers; a live peer means join", func(c *Config, s string) { c.PeerPort = atoi(s) }},
	contract.PortName.Name:      {"query SRV records of this port name", func(c *Config, s string) { c.PortName = s }},
	contract.SeedAddressValue.Name: {"write seeds and peers as IPs or as the pods' DNS names",
		func(c *Config, s string) { c.SeedAddress = contract.SeedAddress(s) }},
	contract.Refresh.Name: {"after deciding, keep the peer files current at this interval (0: exit)", func(c *Config, s string) { c.Refresh = duration(s) }},
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func duration(s string) time.Duration {
	d, _ := time.ParseDuration(s)
	return d
}

// rawInputs is the text of the values parsed after the flags: the tuning
// values, indexed like contract.Tunings, and the pod IPs.
type rawInputs struct {
	tunings []string
	podIPs  string
}

func load(args []string, getenv func(string) string, resolvConf []byte) (Config, error) {
	c := Config{
		SeedCount:     contract.DefaultSeedCount,
		ExpectedPeers: contract.DefaultExpectedPeers,
		StableMargin:  contract.DefaultStableMargin,
		Timeout:       contract.DefaultTimeout,
		Founding:      contract.DefaultFounding,
		SeedAddress:   contract.DefaultSeedAddress,
	}
	fs, raw := newFlagSet(&c, getenv)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	set := flagsSet(fs)
	errs = append(errs, readTunings(&c, raw.tunings, set)...)
	ips, ipErrs := parsePodIPs(raw.podIPs)
	c.PodIPs = ips
	errs = append(errs, ipErrs...)
	domainSource := contract.EnvClusterDomain
	if set["cluster-domain"] {
		domainSource = "--cluster-domain"
	}
	if c.ClusterDomain == "" {
		domainSource = "the resolv.conf search line"
	}
	serverSource := source(set, "dns-server", envDNSServer)
	if c.DNSServer == "" {
		serverSource = "the resolv.conf nameserver"
	}
	fillFromResolvConf(&c, resolvConf)
	if err := checkClusterDomain(c, domainSource); err != nil {
		errs = append(errs, err)
	}
	if err := checkDNSServer(c.DNSServer, serverSource); err != nil {
		errs = append(errs, err)
	}
	if err := checkOutputDir(c.OutputDir, source(set, "output-dir", envOutputDir)); err != nil {
		errs = append(errs, err)
	}
	if err := checkPollInterval(c.PollInterval, set["poll-interval"]); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, checkRequired(c)...)
	if c.PollInterval == 0 {
		c.PollInterval = min(max(c.StableMargin/4, 100*time.Millisecond), time.Second)
	}
	return c, errors.Join(errs...)
}

// newFlagSet defines the flags with the env values as their defaults. The
// tuning values and pod IPs stay text until the flags are parsed.
func newFlagSet(c *Config, getenv func(string) string) (*flag.FlagSet, *rawInputs) {
	envOr := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	raw := &rawInputs{tunings: make([]string, len(contract.Tunings))}
	fs := flag.NewFlagSet("seed-discovery", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.Service, "service", getenv(contract.EnvService), "headless Service name ("+contract.EnvService+")")
	fs.StringVar(&c.Namespace, "namespace", getenv(contract.EnvPodNamespace), "namespace ("+contract.EnvPodNamespace+")")
	fs.StringVar(&c.PodName, "pod-name", getenv(contract.EnvPodName), "this pod's name ("+contract.EnvPodName+")")
	fs.StringVar(&raw.podIPs, "pod-ips", envOr(contract.EnvPodIPs, getenv(contract.EnvPodIP)),
		"this pod's IPs, comma separated ("+contract.EnvPodIPs+", else "+contract.EnvPodIP+")")
	fs.StringVar(&c.ClusterDomain, "cluster-domain", getenv(contract.EnvClusterDomain),
		"cluster DNS domain ("+contract.EnvClusterDomain+", else the resolv.conf search line)")
	for i, t := range contract.Tunings {
		fs.StringVar(&raw.tunings[i], t.Name, getenv(t.Env), tuningFields[t.Name].usage+" ("+t.Env+"; "+t.Rule+")")
	}
	fs.StringVar(&c.DNSServer, "dns-server", getenv(envDNSServer), "DNS server host:port (default: the resolv.conf nameserver)")
	fs.StringVar(&c.OutputDir, "output-dir", envOr(envOutputDir, contract.SeedsMountPath), "directory for seeds, peers and discovery.json")
	fs.StringVar(&c.TerminationLog, "termination-log", defaultTerminationLog, "file that receives the failure reason")
	fs.DurationVar(&c.PollInterval, "poll-interval", 0, "time between observations, positive (default: stable margin / 4, within 100ms..1s)")
	return fs, raw
}

func flagsSet(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// readTunings checks each non-empty tuning value with the same function the
// webhook runs on the annotation, so both sides accept the same values
// (docs/design.md, "The contract"), and stores it. Empty values keep the
// defaults. An error names where the value came from: the flag when given,
// else the env var.
func readTunings(c *Config, texts []string, flagSet map[string]bool) []error {
	var errs []error
	for i, t := range contract.Tunings {
		s := texts[i]
		if s == "" {
			continue
		}
		if err := t.Check(s); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", source(flagSet, t.Name, t.Env), err))
			continue
		}
		tuningFields[t.Name].set(c, s)
	}
	return errs
}

// parsePodIPs reads a comma-separated list, as the downward API writes
// status.podIPs.
func parsePodIPs(list string) ([]netip.Addr, []error) {
	var ips []netip.Addr
	var errs []error
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		ip, err := netip.ParseAddr(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("pod IP %q: %w", s, err))
			continue
		}
		ips = append(ips, ip.Unmap())
	}
	return ips, errs
}

// fillFromResolvConf takes the cluster domain and the DNS server from the
// pod's resolv.conf when neither env nor flags gave them.
func fillFromResolvConf(c *Config, resolvConf []byte) {
	if len(resolvConf) == 0 {
		return
	}
	rc, _ := dns.ClientConfigFromReader(bytes.NewReader(resolvConf))
	if rc == nil {
		return
	}
	if c.ClusterDomain == "" {
		c.ClusterDomain = domainFromSearch(rc.Search, c.Namespace)
	}
	if c.DNSServer == "" && len(rc.Servers) > 0 {
		c.DNSServer = net.JoinHostPort(rc.Servers[0], rc.Port)
	}
}

// checkClusterDomain refuses a cluster domain no DNS name can be built
// from (contract.ValidClusterDomain) and a query name longer than DNS
// allows: either would only ever fail its queries, so seed-discovery would
// retry until its timeout and exit 5 where exit 2 says what to fix. source
// names where the domain came from. An empty domain is checkRequired's.
func checkClusterDomain(c Config, source string) error {
	if c.ClusterDomain == "" {
		return nil
	}
	if err := contract.ValidClusterDomain(c.ClusterDomain); err != nil {
		if source == "the resolv.conf search line" {
			return fmt.Errorf("%s: %w; set %s (chart value seedDiscovery.clusterDomain) or --cluster-domain", source, err, contract.EnvClusterDomain)
		}
		return fmt.Errorf("%s: %w", source, err)
	}
	if c.Service == "" || c.Namespace == "" {
		return nil
	}
	name := c.FQDN()
	if c.PortName != "" {
		name = "_" + c.PortName + "._tcp." + name
	}
	// IsDomainName checks the wire limits: labels of 63 bytes, names of 255.
	if _, ok := dns.IsDomainName(name); !ok {
		return fmt.Errorf("the name to query, %q, is not a valid DNS name (labels of 1 to 63 characters, at most 253 characters in all): check the Service, the namespace and the cluster domain (from %s)", name, source)
	}
	return nil
}

// source names where a flag's value came from in an error: the flag when
// given, else its env var (the flag's default).
func source(set map[string]bool, flagName, env string) string {
	if set[flagName] {
		return "--" + flagName
	}
	return env
}

// dnsServerRule says in words what checkDNSServer accepts.
const dnsServerRule = "host:port, the host an IP address or a DNS name and the port a number from 1 to 65535, such as 10.96.0.10:53 or [fd00::10]:53"

// checkDNSServer refuses a DNS server no query can be sent to: not
// host:port, an empty or malformed host, a port that is not a number from
// 1 to 65535. Every query to it would fail, so seed-discovery would retry
// until its timeout and exit 5, where exit 2 says at once what to fix.
// source names where the server came from. An empty server is
// checkRequired's.
func checkDNSServer(server, source string) error {
	if server == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(server)
	if err == nil && validHost(host) && validPort(port) {
		return nil
	}
	return fmt.Errorf("%s: DNS server %q is invalid: it must be %s", source, server, dnsServerRule)
}

// validHost accepts an IP address (an IPv6 one with its zone, as
// resolv.conf may give a link-local server) or a DNS name, case-insensitive
// as DNS names are, with one trailing dot allowed.
func validHost(host string) bool {
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	if len(validation.IsDNS1123Subdomain(name)) != 0 {
		return false
	}
	for label := range strings.SplitSeq(name, ".") {
		if len(label) > validation.DNS1123LabelMaxLength {
			return false
		}
	}
	return true
}

// validPort accepts a decimal port from 1 to 65535. A service name
// ("domain") is refused: resolving it needs /etc/services, which an init
// container image need not have.
func validPort(port string) bool {
	n, err := strconv.ParseUint(port, 10, 16)
	return err == nil && n > 0
}

// checkOutputDir refuses an empty output directory (or one of blanks only,
// surely a quoting mistake): the files would land in the working directory,
// where no container reads them, and the pod would start without seeds.
func checkOutputDir(dir, source string) error {
	if strings.TrimSpace(dir) != "" {
		return nil
	}
	return fmt.Errorf("%s: output directory %q is invalid: it must name a directory (default %s)", source, dir, contract.SeedsMountPath)
}

// checkPollInterval refuses a poll interval given as zero or less: the
// loop would query DNS without a pause. Not given, it is 0 here and derived
// from the stable margin afterwards.
func checkPollInterval(d time.Duration, given bool) error {
	if !given || d > 0 {
		return nil
	}
	return fmt.Errorf("--poll-interval: poll interval %q is invalid: it must be a positive duration such as 250ms (without the flag: the stable margin / 4, within 100ms..1s)", d)
}

// checkRequired reports each value seed-discovery cannot run without.
func checkRequired(c Config) []error {
	var errs []error
	switch {
	case c.Service == "":
		errs = append(errs, fmt.Errorf("no Service name: set %s or --service", contract.EnvService))
	case c.Namespace == "":
		errs = append(errs, fmt.Errorf("no namespace: set %s or --namespace", contract.EnvPodNamespace))
	}
	if len(c.PodIPs) == 0 {
		errs = append(errs, fmt.Errorf("no pod IP: set %s or %s (downward API status.podIPs / status.podIP) or --pod-ips", contract.EnvPodIPs, contract.EnvPodIP))
	}
	if c.ClusterDomain == "" {
		errs = append(errs, fmt.Errorf("no cluster domain: set %s, or run with a resolv.conf whose search line has <namespace>.svc.<domain>", contract.EnvClusterDomain))
	}
	if c.DNSServer == "" {
		errs = append(errs, errors.New("no DNS server: give --dns-server or a resolv.conf nameserver"))
	}
	return errs
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
