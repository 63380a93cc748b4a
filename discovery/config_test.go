package discovery

import (
	"fmt"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/webhook/admit"
)

func envMap(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

var baseEnv = map[string]string{
	"PEERGROUP_SERVICE": "cassandra", "POD_NAMESPACE": "db", "POD_NAME": "cassandra-0",
	"POD_IP": "10.1.2.3", "POD_IPS": "10.1.2.3,fd00::3",
}

const resolvConf = "search db.svc.corp.example svc.corp.example corp.example\nnameserver 10.96.0.10\noptions ndots:5\n"

func TestLoadConfig(t *testing.T) {
	c, err := LoadConfig(nil, envMap(baseEnv), []byte(resolvConf))
	if err != nil {
		t.Fatal(err)
	}
	if c.ClusterDomain != "corp.example" || c.DNSServer != "10.96.0.10:53" || c.FQDN() != "cassandra.db.svc.corp.example." {
		t.Errorf("from resolv.conf: domain %q server %q fqdn %q", c.ClusterDomain, c.DNSServer, c.FQDN())
	}
	if len(c.PodIPs) != 2 || c.PodIPs[1].String() != "fd00::3" {
		t.Errorf("pod IPs %v", c.PodIPs)
	}
	if c.SeedCount != 3 || c.ExpectedPeers != 1 || c.StableMargin != 5*time.Second || c.Timeout != 300*time.Second || c.Founding != FoundLowest || c.OutputDir != "/var/run/peergroup" {
		t.Errorf("defaults %+v", c)
	}

	env := map[string]string{"PEERGROUP_CLUSTER_DOMAIN": "cluster.local", "PEERGROUP_SEED_COUNT": "2", "PEERGROUP_STABLE_MARGIN": "10s", "PEERGROUP_FOUNDING": "ordinal0"}
	for k, v := range baseEnv {
		env[k] = v
	}
	c, err = LoadConfig([]string{"--seed-count=5", "--dns-server=127.0.0.1:5353"}, envMap(env), []byte(resolvConf))
	if err != nil {
		t.Fatal(err)
	}
	if c.ClusterDomain != "cluster.local" || c.SeedCount != 5 || c.StableMargin != 10*time.Second || c.Founding != FoundOrdinal0 || c.DNSServer != "127.0.0.1:5353" {
		t.Errorf("env then flags: %+v", c)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	cases := []struct {
		name   string
		env    map[string]string
		args   []string
		resolv string
		want   string
	}{
		{name: "no domain anywhere", env: baseEnv, resolv: "nameserver 10.96.0.10\n", want: "set PEERGROUP_CLUSTER_DOMAIN, or run with a resolv.conf"},
		{name: "no service", env: map[string]string{"POD_NAMESPACE": "db", "POD_IP": "10.0.0.1"}, resolv: resolvConf, want: "PEERGROUP_SERVICE"},
		{name: "no pod ip", env: map[string]string{"PEERGROUP_SERVICE": "x", "POD_NAMESPACE": "db"}, resolv: resolvConf, want: "no pod IP"},
		{name: "bad ip", env: map[string]string{"PEERGROUP_SERVICE": "x", "POD_NAMESPACE": "db", "POD_IP": "10.0.0"}, resolv: resolvConf, want: `pod IP "10.0.0"`},
		{name: "bad founding", env: baseEnv, args: []string{"--founding=first"}, resolv: resolvConf, want: `--founding: founding value "first" is invalid: it must be one of lowest, ordinal0, never`},
		{name: "bad seed count", env: baseEnv, args: []string{"--seed-count=0"}, resolv: resolvConf, want: `--seed-count: seed-count value "0" is invalid: it must be an integer from 1 to 100`},
		{name: "bad env int", env: map[string]string{"PEERGROUP_SERVICE": "x", "POD_NAMESPACE": "db", "POD_IP": "10.0.0.1", "PEERGROUP_SEED_COUNT": "three"}, resolv: resolvConf, want: `PEERGROUP_SEED_COUNT: seed-count value "three" is invalid: it must be an integer from 1 to 100`},
		{name: "sub-second margin", env: map[string]string{"PEERGROUP_SERVICE": "x", "POD_NAMESPACE": "db", "POD_IP": "10.0.0.1", "PEERGROUP_STABLE_MARGIN": "500ms"}, resolv: resolvConf, want: `PEERGROUP_STABLE_MARGIN: stable-margin value "500ms" is invalid: it must be a Go duration from 1s to 10m (e.g. 5s)`},
		{name: "no DNS server", env: baseEnv, resolv: "", args: []string{"--cluster-domain=cluster.local"}, want: "no DNS server"},

		// A cluster domain no DNS name can be built from is exit 2, from
		// wherever it came, never a query retried until the timeout.
		{name: "env domain with a leading dot", env: withEnv(map[string]string{"PEERGROUP_CLUSTER_DOMAIN": ".cluster.local"}), resolv: resolvConf, want: `PEERGROUP_CLUSTER_DOMAIN: cluster domain ".cluster.local" is invalid: it must be a DNS subdomain`},
		{name: "flag domain with an empty label", env: baseEnv, args: []string{"--cluster-domain=cluster..local"}, resolv: resolvConf, want: `--cluster-domain: cluster domain "cluster..local" is invalid: it must be a DNS subdomain`},
		{name: "flag domain with two trailing dots", env: withEnv(map[string]string{"PEERGROUP_CLUSTER_DOMAIN": "cluster.local"}), args: []string{"--cluster-domain=cluster.local.."}, resolv: resolvConf, want: `--cluster-domain: cluster domain "cluster.local.." is invalid`},
		{name: "env domain upper case", env: withEnv(map[string]string{"PEERGROUP_CLUSTER_DOMAIN": "Cluster.Local"}), resolv: resolvConf, want: `PEERGROUP_CLUSTER_DOMAIN: cluster domain "Cluster.Local" is invalid`},
		{name: "resolv.conf domain with an empty label", env: baseEnv, resolv: "search db.svc..corp.example\nnameserver 10.96.0.10\n", want: `the resolv.conf search line: cluster domain ".corp.example" is invalid: it must be a DNS subdomain such as cluster.local`},
		{name: "query name too long", env: withEnv(map[string]string{"PEERGROUP_SERVICE": strings.Repeat("s", 63), "POD_NAMESPACE": strings.Repeat("n", 63), "PEERGROUP_CLUSTER_DOMAIN": strings.Repeat("d", 63) + "." + strings.Repeat("e", 63)}), resolv: resolvConf, want: "is not a valid DNS name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadConfig(tc.args, envMap(tc.env), []byte(tc.resolv))
			if err == nil || Code(err) != ExitConfig || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("exit %d, error %v; want %q", Code(err), err, tc.want)
			}
		})
	}
}

func withEnv(env map[string]string) map[string]string {
	all := maps.Clone(baseEnv)
	maps.Copy(all, env)
	return all
}

func TestLoadConfigClusterDomain(t *testing.T) {
	for _, domain := range []string{"cluster.local", "cluster.local.", "corp.example"} {
		c, err := LoadConfig(nil, envMap(withEnv(map[string]string{"PEERGROUP_CLUSTER_DOMAIN": domain})), []byte(resolvConf))
		if err != nil || c.FQDN() != "cassandra.db.svc."+strings.TrimSuffix(domain, ".")+"." {
			t.Errorf("domain %q: fqdn %q, %v", domain, c.FQDN(), err)
		}
	}
	// An explicit valid domain wins over a resolv.conf that gives a bad one.
	if _, err := LoadConfig([]string{"--cluster-domain=cluster.local"}, envMap(baseEnv), []byte("search db.svc..x\nnameserver 10.96.0.10\n")); err != nil {
		t.Error(err)
	}
}

// tuningCase is one text for one tuning value and what Config gets from it.
type tuningCase struct {
	tuning contract.Tuning
	value  string
	valid  bool
	want   any // the Config field when valid
}

// field reads the Config field a tuning sets.
func field(c Config, t contract.Tuning) any {
	switch t.Name {
	case contract.SeedCount.Name:
		return c.SeedCount
	case contract.ExpectedPeers.Name:
		return c.ExpectedPeers
	case contract.StableMargin.Name:
		return c.StableMargin
	case contract.Timeout.Name:
		return c.Timeout
	case contract.FoundingValue.Name:
		return c.Founding
	case contract.PeerPort.Name:
		return c.PeerPort
	case contract.PortName.Name:
		return c.PortName
	case contract.SeedAddressValue.Name:
		return c.SeedAddress
	case contract.Refresh.Name:
		return c.Refresh
	}
	panic("no Config field for tuning " + t.Name)
}

// boundaryCases holds min-1, min, max and max+1 of every range, every
// founding value and an invalid one, and good and bad port names.
func boundaryCases() []tuningCase {
	var cases []tuningCase
	for _, x := range []struct {
		t contract.Tuning
		r contract.IntRange
	}{{contract.SeedCount, contract.SeedCountRange}, {contract.ExpectedPeers, contract.ExpectedPeersRange}, {contract.PeerPort, contract.PeerPortRange}} {
		cases = append(cases,
			tuningCase{x.t, strconv.Itoa(x.r.Min - 1), false, nil},
			tuningCase{x.t, strconv.Itoa(x.r.Min), true, x.r.Min},
			tuningCase{x.t, strconv.Itoa(x.r.Max), true, x.r.Max},
			tuningCase{x.t, strconv.Itoa(x.r.Max + 1), false, nil})
	}
	for _, x := range []struct {
		t contract.Tuning
		r contract.DurationRange
	}{{contract.StableMargin, contract.StableMarginRange}, {contract.Timeout, contract.TimeoutRange}, {contract.Refresh, contract.RefreshRange}} {
		cases = append(cases,
			tuningCase{x.t, (x.r.Min - time.Nanosecond).String(), false, nil},
			tuningCase{x.t, x.r.Min.String(), true, x.r.Min},
			tuningCase{x.t, x.r.Max.String(), true, x.r.Max},
			tuningCase{x.t, (x.r.Max + time.Nanosecond).String(), false, nil})
	}
	for _, f := range contract.Foundings {
		cases = append(cases, tuningCase{contract.FoundingValue, string(f), true, f})
	}
	return append(cases,
		tuningCase{contract.StableMargin, "500ms", false, nil},
		tuningCase{contract.StableMargin, "5", false, nil},
		tuningCase{contract.FoundingValue, "first", false, nil},
		tuningCase{contract.FoundingValue, "Lowest", false, nil},
		tuningCase{contract.PortName, "intra-node", true, "intra-node"},
		tuningCase{contract.PortName, "intra_node", false, nil},
		tuningCase{contract.PortName, "sixteen-chars-xx", false, nil},
		tuningCase{contract.PortName, "7000", false, nil},
		tuningCase{contract.SeedAddressValue, "ip", true, contract.AddressIP},
		tuningCase{contract.SeedAddressValue, "hostname", true, contract.AddressHostname},
		tuningCase{contract.SeedAddressValue, "Hostname", false, nil},
		tuningCase{contract.SeedAddressValue, "dns", false, nil},
		tuningCase{contract.Refresh, "0", false, nil},
		tuningCase{contract.Refresh, "30s", true, 30 * time.Second},
	)
}

// loadWith loads baseEnv plus env with args.
func loadWith(env map[string]string, args ...string) (Config, error) {
	all := maps.Clone(baseEnv)
	maps.Copy(all, env)
	return LoadConfig(args, envMap(all), []byte(resolvConf))
}

func TestTuningBoundaries(t *testing.T) {
	for _, tc := range boundaryCases() {
		for _, via := range []string{"env", "flag"} {
			t.Run(fmt.Sprintf("%s=%s via %s", tc.tuning.Name, tc.value, via), func(t *testing.T) {
				var c Config
				var err error
				source := tc.tuning.Env
				if via == "env" {
					c, err = loadWith(map[string]string{tc.tuning.Env: tc.value})
				} else {
					source = "--" + tc.tuning.Name
					c, err = loadWith(nil, source+"="+tc.value)
				}
				if tc.valid {
					if err != nil {
						t.Fatal(err)
					}
					if got := field(c, tc.tuning); got != tc.want {
						t.Errorf("%s = %v, want %v", tc.tuning.Name, got, tc.want)
					}
					return
				}
				want := fmt.Sprintf("configuration: %s: %s value %q is invalid: it must be %s", source, tc.tuning.Name, tc.value, tc.tuning.Rule)
				if Code(err) != ExitConfig || err.Error() != want {
					t.Fatalf("exit %d, error %v\nwant exit %d, error %s", Code(err), err, ExitConfig, want)
				}
			})
		}
	}
}

func TestTuningFlagOverridesEnv(t *testing.T) {
	c, err := loadWith(map[string]string{"PEERGROUP_SEED_COUNT": "101"}, "--seed-count=7")
	if err != nil || c.SeedCount != 7 {
		t.Errorf("valid flag over invalid env: seed count %d, %v", c.SeedCount, err)
	}
	_, err = loadWith(map[string]string{"PEERGROUP_SEED_COUNT": "7"}, "--seed-count=101")
	if Code(err) != ExitConfig || !strings.Contains(err.Error(), `--seed-count: seed-count value "101"`) {
		t.Errorf("invalid flag over valid env: exit %d, %v", Code(err), err)
	}
	c, err = loadWith(map[string]string{"PEERGROUP_SEED_COUNT": "7"}, "--seed-count=")
	if err != nil || c.SeedCount != contract.DefaultSeedCount {
		t.Errorf("empty flag: seed count %d, %v; want the default", c.SeedCount, err)
	}
}

func TestTuningDefaults(t *testing.T) {
	c, err := loadWith(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.SeedCount != contract.DefaultSeedCount || c.ExpectedPeers != contract.DefaultExpectedPeers ||
		c.StableMargin != contract.DefaultStableMargin || c.Timeout != contract.DefaultTimeout ||
		c.Founding != contract.DefaultFounding || c.PeerPort != 0 || c.PortName != "" || c.OutputDir != contract.SeedsMountPath {
		t.Errorf("defaults %+v", c)
	}
}

func TestEveryTuningHasAField(t *testing.T) {
	for _, tn := range contract.Tunings {
		if tuningFields[tn.Name].set == nil {
			t.Errorf("tuning %s has no entry in tuningFields", tn.Name)
		}
	}
	if len(tuningFields) != len(contract.Tunings) {
		t.Errorf("tuningFields has %d entries, contract.Tunings %d", len(tuningFields), len(contract.Tunings))
	}
}

// TestBothSidesAcceptTheSameValues: seed-discovery accepts a tuning value,
// from env or flag, exactly when the webhook (admit.TuningEnv, what Mutate
// runs on the pod's annotations) admits the annotation, so an admitted pod never fails in its init
// container on a value, and the other way round.
func TestBothSidesAcceptTheSameValues(t *testing.T) {
	values := []string{
		"0", "1", "-1", "+5", "3", "007", "1e3", "0x10", " 3", "3 ", "three",
		"100", "101", "10000", "10001", "65535", "65536", "9223372036854775808",
		"5", "1s", "999ms", "500ms", "+5s", "-5s", ".5m", "1m30s", "10m", "10m1s", "9s", "10s", "24h", "24h0m1s", "1d",
		"lowest", "ordinal0", "never", "first", "LOWEST",
		"intra-node", "cql", "http2", "intra_node", "-cql", "a-very-long-port-name", "x",
		"ip", "hostname", "IP", "host", "4s", "5s", "1h", "1h0m1s", "61m",
	}
	for _, tc := range boundaryCases() {
		values = append(values, tc.value)
	}
	for _, tn := range contract.Tunings {
		for _, v := range values {
			env, err := admit.TuningEnv(map[string]string{tn.Annotation: v})
			webhook := err == nil
			if webhook && (len(env) != 1 || env[0].Name != tn.Env || env[0].Value != v) {
				t.Errorf("%s %q: the webhook passes %v, want %s=%q", tn.Name, v, env, tn.Env, v)
			}
			_, envErr := loadWith(map[string]string{tn.Env: v})
			_, flagErr := loadWith(nil, "--"+tn.Name+"="+v)
			if (envErr == nil) != webhook || (flagErr == nil) != webhook {
				t.Errorf("%s %q: webhook accepts %v, seed-discovery via env: %v, via flag: %v", tn.Name, v, webhook, envErr, flagErr)
			}
		}
	}
}

// The operator flags seed-discovery alone reads are checked like the
// tuning values: a value that could only fail later (a DNS query loop
// without a pause, queries to no server until the timeout, files written
// into the working directory) is a configuration error, exit 2, naming the
// flag or env var and the value.
func TestOperatorValues(t *testing.T) {
	const pollRule = "it must be a positive duration such as 250ms (without the flag: the stable margin / 4, within 100ms..1s)"
	serverErr := func(source, value string) string {
		return fmt.Sprintf("configuration: %s: DNS server %q is invalid: it must be %s", source, value, dnsServerRule)
	}
	outputErr := func(source, value string) string {
		return fmt.Sprintf("configuration: %s: output directory %q is invalid: it must name a directory (default /var/run/peergroup)", source, value)
	}
	invalid := []struct {
		name   string
		env    map[string]string
		args   []string
		resolv string // resolvConf when empty
		want   string
	}{
		{name: "negative poll interval", args: []string{"--poll-interval=-1s"}, want: `configuration: --poll-interval: poll interval "-1s" is invalid: ` + pollRule},
		{name: "zero poll interval", args: []string{"--poll-interval=0"}, want: `configuration: --poll-interval: poll interval "0s" is invalid: ` + pollRule},
		{name: "negative nanosecond", args: []string{"--poll-interval=-1ns"}, want: `configuration: --poll-interval: poll interval "-1ns" is invalid: ` + pollRule},

		{name: "not host:port", args: []string{"--dns-server=not a server"}, want: serverErr("--dns-server", "not a server")},
		{name: "no port", args: []string{"--dns-server=10.96.0.10"}, want: serverErr("--dns-server", "10.96.0.10")},
		{name: "port 0", args: []string{"--dns-server=10.96.0.10:0"}, want: serverErr("--dns-server", "10.96.0.10:0")},
		{name: "port 65536", args: []string{"--dns-server=10.96.0.10:65536"}, want: serverErr("--dns-server", "10.96.0.10:65536")},
		{name: "negative port", args: []string{"--dns-server=10.96.0.10:-53"}, want: serverErr("--dns-server", "10.96.0.10:-53")},
		{name: "signed port", args: []string{"--dns-server=10.96.0.10:+53"}, want: serverErr("--dns-server", "10.96.0.10:+53")},
		{name: "named port", args: []string{"--dns-server=10.96.0.10:domain"}, want: serverErr("--dns-server", "10.96.0.10:domain")},
		{name: "empty port", args: []string{"--dns-server=10.96.0.10:"}, want: serverErr("--dns-server", "10.96.0.10:")},
		{name: "no host", args: []string{"--dns-server=:53"}, want: serverErr("--dns-server", ":53")},
		{name: "IPv6 without brackets", args: []string{"--dns-server=fd00::10:53"}, want: serverErr("--dns-server", "fd00::10:53")},
		{name: "host with an underscore", args: []string{"--dns-server=kube_dns:53"}, want: serverErr("--dns-server", "kube_dns:53")},
		{name: "host with an empty label", args: []string{"--dns-server=kube-dns..svc:53"}, want: serverErr("--dns-server", "kube-dns..svc:53")},
		{name: "bad env server", env: map[string]string{"PEERGROUP_DNS_SERVER": "not a server"}, want: serverErr("PEERGROUP_DNS_SERVER", "not a server")},
		{name: "bad flag over good env", env: map[string]string{"PEERGROUP_DNS_SERVER": "10.96.0.10:53"}, args: []string{"--dns-server=10.96.0.10"}, want: serverErr("--dns-server", "10.96.0.10")},
		{name: "bad resolv.conf nameserver", resolv: "search db.svc.corp.example\nnameserver bogus!\n", want: serverErr("the resolv.conf nameserver", "bogus!:53")},

		{name: "empty output dir", args: []string{"--output-dir="}, want: outputErr("--output-dir", "")},
		{name: "blank output dir", args: []string{"--output-dir= "}, want: outputErr("--output-dir", " ")},
		{name: "empty output dir over env", env: map[string]string{"PEERGROUP_OUTPUT_DIR": "/out"}, args: []string{"--output-dir="}, want: outputErr("--output-dir", "")},
		{name: "blank env output dir", env: map[string]string{"PEERGROUP_OUTPUT_DIR": "  "}, want: outputErr("PEERGROUP_OUTPUT_DIR", "  ")},
	}
	for _, tc := range invalid {
		t.Run(tc.name, func(t *testing.T) {
			resolv := tc.resolv
			if resolv == "" {
				resolv = resolvConf
			}
			_, err := LoadConfig(tc.args, envMap(withEnv(tc.env)), []byte(resolv))
			if Code(err) != ExitConfig || err.Error() != tc.want {
				t.Fatalf("exit %d, error %v\nwant exit %d, error %s", Code(err), err, ExitConfig, tc.want)
			}
		})
	}

	valid := []struct {
		name string
		env  map[string]string
		args []string
		ok   func(Config) bool
	}{
		{name: "poll interval", args: []string{"--poll-interval=250ms"}, ok: func(c Config) bool { return c.PollInterval == 250*time.Millisecond }},
		{name: "smallest poll interval", args: []string{"--poll-interval=1ns"}, ok: func(c Config) bool { return c.PollInterval == time.Nanosecond }},
		{name: "poll interval derived", ok: func(c Config) bool { return c.PollInterval == time.Second }}, // 5s / 4, at most 1s
		{name: "IPv4 server", args: []string{"--dns-server=127.0.0.1:5353"}, ok: func(c Config) bool { return c.DNSServer == "127.0.0.1:5353" }},
		{name: "highest port", args: []string{"--dns-server=10.96.0.10:65535"}, ok: func(c Config) bool { return c.DNSServer == "10.96.0.10:65535" }},
		{name: "IPv6 server", args: []string{"--dns-server=[fd00::10]:53"}, ok: func(c Config) bool { return c.DNSServer == "[fd00::10]:53" }},
		{name: "link-local server with a zone", args: []string{"--dns-server=[fe80::1%eth0]:53"}, ok: func(c Config) bool { return c.DNSServer == "[fe80::1%eth0]:53" }},
		{name: "server by name", args: []string{"--dns-server=kube-dns.kube-system.svc.cluster.local.:53"}, ok: func(c Config) bool { return c.DNSServer == "kube-dns.kube-system.svc.cluster.local.:53" }},
		{name: "server by name, upper case", env: map[string]string{"PEERGROUP_DNS_SERVER": "CoreDNS:1053"}, ok: func(c Config) bool { return c.DNSServer == "CoreDNS:1053" }},
		{name: "server from resolv.conf", ok: func(c Config) bool { return c.DNSServer == "10.96.0.10:53" }},
		{name: "relative output dir", args: []string{"--output-dir=out"}, ok: func(c Config) bool { return c.OutputDir == "out" }},
		{name: "output dir from env", env: map[string]string{"PEERGROUP_OUTPUT_DIR": "/out"}, ok: func(c Config) bool { return c.OutputDir == "/out" }},
	}
	for _, tc := range valid {
		t.Run(tc.name, func(t *testing.T) {
			c, err := LoadConfig(tc.args, envMap(withEnv(tc.env)), []byte(resolvConf))
			if err != nil || !tc.ok(c) {
				t.Fatalf("%v: dns server %q, output dir %q, poll interval %s", err, c.DNSServer, c.OutputDir, c.PollInterval)
			}
		})
	}
}

// The poll interval defaults to a quarter of the stable margin, within
// 100ms..1s.
func TestPollIntervalDefault(t *testing.T) {
	for margin, want := range map[string]time.Duration{"2s": 500 * time.Millisecond, "1s": 250 * time.Millisecond, "10s": time.Second} {
		c, err := loadWith(map[string]string{"PEERGROUP_STABLE_MARGIN": margin})
		if err != nil || c.PollInterval != want {
			t.Errorf("margin %s: poll interval %s (%v), want %s", margin, c.PollInterval, err, want)
		}
	}
}

// A bad cluster domain read from resolv.conf says how to set one; one set
// by the env names only itself.
func TestClusterDomainErrorNamesItsSource(t *testing.T) {
	_, err := LoadConfig(nil, envMap(baseEnv), []byte("search db.svc.-bad- svc.-bad-\nnameserver 10.96.0.10\n"))
	if err == nil || !strings.Contains(err.Error(), "resolv.conf search line") || !strings.Contains(err.Error(), "seedDiscovery.clusterDomain") {
		t.Errorf("from resolv.conf: %v", err)
	}
	_, err = loadWith(map[string]string{"PEERGROUP_CLUSTER_DOMAIN": "-bad-"})
	if err == nil || strings.Contains(err.Error(), "seedDiscovery.clusterDomain") {
		t.Errorf("from the env: %v", err)
	}
}

// The query name is checked once the Service and namespace are known: a
// name past DNS's limits is a configuration error (exit 2), not 300 s of
// failing queries.
func TestQueryNameTooLong(t *testing.T) {
	long := strings.Repeat("a", 63)
	_, err := loadWith(map[string]string{"PEERGROUP_SERVICE": long, "POD_NAMESPACE": long, "PEERGROUP_CLUSTER_DOMAIN": long + "." + long + "." + long})
	if err == nil || !strings.Contains(err.Error(), "is not a valid DNS name") {
		t.Errorf("a %d-character query name: %v", 4*64+4, err)
	}
}

// A DNS server named by a host whose labels are at most 63 characters is
// accepted; a longer label is not.
func TestDNSServerLabelLength(t *testing.T) {
	for label, ok := range map[string]bool{strings.Repeat("a", 63): true, strings.Repeat("a", 64): false} {
		_, err := loadWith(nil, "--dns-server="+label+".example:53")
		if (err == nil) != ok {
			t.Errorf("a %d-character label: %v, want ok=%v", len(label), err, ok)
		}
	}
}
