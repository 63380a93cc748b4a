package discovery

import (
	"strings"
	"testing"
	"time"
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
		{name: "bad founding", env: baseEnv, args: []string{"--founding=first"}, resolv: resolvConf, want: `founding "first"`},
		{name: "bad seed count", env: baseEnv, args: []string{"--seed-count=0"}, resolv: resolvConf, want: "seed count 0"},
		{name: "bad env int", env: map[string]string{"PEERGROUP_SERVICE": "x", "POD_NAMESPACE": "db", "POD_IP": "10.0.0.1", "PEERGROUP_SEED_COUNT": "three"}, resolv: resolvConf, want: `PEERGROUP_SEED_COUNT="three"`},
		{name: "no DNS server", env: baseEnv, resolv: "", args: []string{"--cluster-domain=cluster.local"}, want: "no DNS server"},
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
