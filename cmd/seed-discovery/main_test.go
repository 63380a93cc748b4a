package main

import (
	"bytes"
	"context"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/discovery"
	"github.com/peergroup/peergroup/test/dnszone"
	"github.com/peergroup/peergroup/webhook/admit"
)

func TestRunBadConfigExits2(t *testing.T) {
	t.Setenv("PEERGROUP_SERVICE", "")
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"--dns-server=127.0.0.1:1"}, io.Discard, &stderr)
	if discovery.Code(err) != discovery.ExitConfig || !strings.Contains(stderr.String(), "exit 2: configuration") {
		t.Fatalf("exit %d, stderr %q", discovery.Code(err), stderr.String())
	}
}

func TestRunWritesSeedsAndTerminationLog(t *testing.T) {
	z, err := dnszone.Start(0)
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	z.Set("cassandra.db.svc.cluster.local.", "", dnszone.Peer{IP: netip.MustParseAddr("127.0.0.1")})
	for k, v := range map[string]string{"PEERGROUP_SERVICE": "cassandra", "POD_NAMESPACE": "db", "POD_IPS": "127.0.0.1", "PEERGROUP_CLUSTER_DOMAIN": "cluster.local", "PEERGROUP_STABLE_MARGIN": "1s"} {
		t.Setenv(k, v)
	}
	out := t.TempDir()
	var stderr bytes.Buffer
	if err := run(context.Background(), []string{"--dns-server=" + z.Addr, "--output-dir=" + out}, io.Discard, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	seeds, _ := os.ReadFile(filepath.Join(out, "seeds"))
	if string(seeds) != "127.0.0.1\n" {
		t.Errorf("seeds %q", seeds)
	}
	if !strings.Contains(stderr.String(), "decided after") {
		t.Errorf("no decision log line: %s", stderr.String())
	}

	// Failure: the reason goes to the termination log when it exists.
	termLog := filepath.Join(t.TempDir(), "termination-log")
	if err := os.WriteFile(termLog, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err = run(context.Background(), []string{"--dns-server=" + z.Addr, "--output-dir=" + notDir, "--termination-log=" + termLog}, io.Discard, &stderr)
	if discovery.Code(err) != discovery.ExitNotWritable {
		t.Fatalf("exit %d: %v", discovery.Code(err), err)
	}
	msg, _ := os.ReadFile(termLog)
	if !strings.Contains(string(msg), "exit 6") || !strings.Contains(string(msg), "not writable") {
		t.Errorf("termination log %q", msg)
	}
}

// A tuning value the webhook would deny is a configuration error here too.
func TestRunRejectsWhatTheWebhookDenies(t *testing.T) {
	for k, v := range map[string]string{"PEERGROUP_SERVICE": "cassandra", "POD_NAMESPACE": "db", "POD_IPS": "127.0.0.1", "PEERGROUP_CLUSTER_DOMAIN": "cluster.local", "PEERGROUP_STABLE_MARGIN": "200ms"} {
		t.Setenv(k, v)
	}
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"--dns-server=127.0.0.1:1"}, io.Discard, &stderr)
	// The rule's words are the contract's, as the webhook quotes them.
	want := `seed-discovery: exit 2: configuration: PEERGROUP_STABLE_MARGIN: stable-margin value "200ms" is invalid: it must be ` + contract.StableMargin.Rule
	if !strings.HasPrefix(contract.StableMargin.Rule, "a Go duration from 1s to 10m (e.g. 5s)") {
		t.Errorf("stable-margin rule %q", contract.StableMargin.Rule)
	}
	if discovery.Code(err) != discovery.ExitConfig || strings.TrimSpace(stderr.String()) != want {
		t.Fatalf("exit %d, stderr %q\nwant %q", discovery.Code(err), stderr.String(), want)
	}
}

// A cluster domain no DNS name can be built from exits 2 at once, naming
// the variable, the value and the rule, instead of querying a name no
// resolver answers until the timeout.
func TestRunBadClusterDomainExits2(t *testing.T) {
	z, err := dnszone.Start(0)
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	for _, domain := range []string{".cluster.local", "cluster..local", "cluster.local.."} {
		for k, v := range map[string]string{"PEERGROUP_SERVICE": "cassandra", "POD_NAMESPACE": "db", "POD_IPS": "127.0.0.1", "PEERGROUP_CLUSTER_DOMAIN": domain, "PEERGROUP_TIMEOUT": "10s"} {
			t.Setenv(k, v)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		var stderr bytes.Buffer
		start := time.Now()
		err := run(ctx, []string{"--dns-server=" + z.Addr, "--output-dir=" + t.TempDir()}, io.Discard, &stderr)
		cancel()
		want := `seed-discovery: exit 2: configuration: PEERGROUP_CLUSTER_DOMAIN: cluster domain "` + domain + `" is invalid: it must be a DNS subdomain such as cluster.local`
		if discovery.Code(err) != discovery.ExitConfig || !strings.HasPrefix(stderr.String(), want) {
			t.Errorf("domain %q: exit %d after %s, stderr %q\nwant %q", domain, discovery.Code(err), time.Since(start).Round(time.Millisecond), stderr.String(), want)
		}
		if udp, tcp := z.Queries(); udp+tcp != 0 {
			t.Errorf("domain %q: %d DNS queries sent", domain, udp+tcp)
		}
	}
}

// Operator flags that could only fail later exit 2 at once, naming the
// flag and the value: a negative poll interval (a DNS query loop without a
// pause), a DNS server that is not host:port (queries retried until the
// timeout, then exit 5), an empty output directory (seeds written into the
// working directory). Nothing is queried and nothing written.
func TestRunBadOperatorFlagsExit2(t *testing.T) {
	z, err := dnszone.Start(0)
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	z.Set("cassandra.db.svc.cluster.local.", "", dnszone.Peer{IP: netip.MustParseAddr("127.0.0.1")})
	for k, v := range map[string]string{"PEERGROUP_SERVICE": "cassandra", "POD_NAMESPACE": "db", "POD_IPS": "127.0.0.1", "PEERGROUP_CLUSTER_DOMAIN": "cluster.local", "PEERGROUP_STABLE_MARGIN": "1s", "PEERGROUP_TIMEOUT": "10s"} {
		t.Setenv(k, v)
	}
	for _, tc := range []struct {
		flag string
		want string
	}{
		{"--poll-interval=-1s", `seed-discovery: exit 2: configuration: --poll-interval: poll interval "-1s" is invalid: it must be a positive duration`},
		{"--dns-server=not a server", `seed-discovery: exit 2: configuration: --dns-server: DNS server "not a server" is invalid: it must be host:port`},
		{"--output-dir=", `seed-discovery: exit 2: configuration: --output-dir: output directory "" is invalid: it must name a directory`},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			work := t.TempDir()
			t.Chdir(work)
			// The other flags are good: only the one under test is wrong.
			args := []string{"--dns-server=" + z.Addr, "--output-dir=" + t.TempDir(), "--termination-log=", tc.flag}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			var stderr bytes.Buffer
			start := time.Now()
			err := run(ctx, args, io.Discard, &stderr)
			if discovery.Code(err) != discovery.ExitConfig || !strings.HasPrefix(stderr.String(), tc.want) {
				t.Fatalf("exit %d after %s, stderr %q\nwant exit 2, %q", discovery.Code(err), time.Since(start).Round(time.Millisecond), stderr.String(), tc.want)
			}
			if udp, tcp := z.Queries(); udp+tcp != 0 {
				t.Errorf("%d DNS queries sent", udp+tcp)
			}
			if entries, _ := os.ReadDir(work); len(entries) != 0 {
				t.Errorf("wrote %d files into the working directory", len(entries))
			}
		})
	}
}

// The sidecar: decides, keeps refreshing until SIGTERM (exit 0), is probed
// by `decided`, and when restarted keeps its first seeds instead of
// deciding again from a later view.
func TestSidecarLifecycle(t *testing.T) {
	z, err := dnszone.Start(0)
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	const fqdn = "cassandra.db.svc.cluster.local."
	z.Set(fqdn, "", dnszone.Peer{IP: netip.MustParseAddr("127.0.0.1")}, dnszone.Peer{IP: netip.MustParseAddr("127.0.0.2")})
	for k, v := range map[string]string{"PEERGROUP_SERVICE": "cassandra", "POD_NAMESPACE": "db", "POD_IPS": "127.0.0.2", "PEERGROUP_CLUSTER_DOMAIN": "cluster.local",
		"PEERGROUP_STABLE_MARGIN": "1s", contract.Refresh.Env: "5s"} {
		t.Setenv(k, v)
	}
	out := t.TempDir()
	args := []string{"--dns-server=" + z.Addr, "--output-dir=" + out}
	if err := run(context.Background(), []string{"decided", "--output-dir=" + out}, io.Discard, &bytes.Buffer{}); discovery.Code(err) == 0 {
		t.Fatal("decided before any decision")
	}
	if err := run(context.Background(), []string{"decided", "--bogus"}, io.Discard, &bytes.Buffer{}); discovery.Code(err) != discovery.ExitConfig {
		t.Fatalf("decided with a bad flag: exit %d", discovery.Code(err))
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var stderr bytes.Buffer
	go func() { done <- run(ctx, args, io.Discard, &stderr) }()
	deadline := time.Now().Add(10 * time.Second)
	for run(context.Background(), []string{"decided", "--output-dir=" + out}, io.Discard, &bytes.Buffer{}) != nil {
		if time.Now().After(deadline) {
			t.Fatal("no decision within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel() // SIGTERM
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("sidecar stopped with %v\n%s", err, stderr.String())
		}
	case <-time.After(3 * time.Second):
		t.Fatal("sidecar did not stop")
	}
	seeds, _ := os.ReadFile(filepath.Join(out, "seeds"))
	if string(seeds) != "127.0.0.1,127.0.0.2\n" {
		t.Fatalf("seeds %q", seeds)
	}

	// Restarted after the group changed: it does not decide again.
	z.Set(fqdn, "", dnszone.Peer{IP: netip.MustParseAddr("127.0.0.2")})
	ctx, cancel = context.WithCancel(context.Background())
	stderr.Reset()
	go func() { done <- run(ctx, args, io.Discard, &stderr) }()
	time.Sleep(500 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("restarted sidecar: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(out, "seeds")); string(got) != string(seeds) || strings.Contains(stderr.String(), "decided after") {
		t.Errorf("restarted sidecar decided again: seeds %q\n%s", got, stderr.String())
	}
}

// A sidecar restarted with another address (its sandbox recreated) or over
// an unreadable decision decides again (discovery.Forget keeps its startup
// probe from passing on the old seeds meanwhile).
func TestSidecarDecidesAgain(t *testing.T) {
	z, err := dnszone.Start(0)
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	const fqdn = "cassandra.db.svc.cluster.local."
	for k, v := range map[string]string{"PEERGROUP_SERVICE": "cassandra", "POD_NAMESPACE": "db", "PEERGROUP_CLUSTER_DOMAIN": "cluster.local",
		"PEERGROUP_STABLE_MARGIN": "1s", contract.Refresh.Env: "5s"} {
		t.Setenv(k, v)
	}
	out := t.TempDir()
	args := []string{"--dns-server=" + z.Addr, "--output-dir=" + out}
	sidecar := func(self string) string {
		t.Helper()
		t.Setenv("POD_IPS", self)
		z.Set(fqdn, "", dnszone.Peer{IP: netip.MustParseAddr(self)})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		var stderr bytes.Buffer
		go func() { done <- run(ctx, args, io.Discard, &stderr) }()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if b, _ := os.ReadFile(filepath.Join(out, "seeds")); string(b) == self+"\n" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no decision as %s", self)
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("%v\n%s", err, stderr.String())
		}
		return stderr.String()
	}
	sidecar("127.0.0.1")
	if log := sidecar("127.0.0.9"); !strings.Contains(log, "deciding again: the earlier decision was made as 127.0.0.1, and this pod is now [127.0.0.9]") {
		t.Errorf("log: %s", log)
	}
	if err := os.WriteFile(filepath.Join(out, "discovery.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if log := sidecar("127.0.0.5"); !strings.Contains(log, "deciding again: read the previous decision") {
		t.Errorf("log: %s", log)
	}
	if err := run(context.Background(), []string{"decided", "extra", "--output-dir=" + out}, io.Discard, &bytes.Buffer{}); discovery.Code(err) != discovery.ExitConfig {
		t.Errorf("decided with an extra argument: exit %d", discovery.Code(err))
	}
}

// --version prints the stamped version before any configuration is read:
// with none of the pod's environment set it still exits 0.
func TestVersion(t *testing.T) {
	defer func(v string) { version = v }(version)
	version = "v1.2.3-test"
	for _, env := range []string{"PEERGROUP_SERVICE", "POD_NAMESPACE", "POD_IPS", "POD_IP"} {
		t.Setenv(env, "")
	}
	for _, arg := range []string{"--version", "-version"} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), []string{arg}, &stdout, &stderr)
		if discovery.Code(err) != 0 || err != nil {
			t.Fatalf("%s: exit %d (%v), stderr %q", arg, discovery.Code(err), err, stderr.String())
		}
		if stdout.String() != "v1.2.3-test\n" || stderr.Len() > 0 {
			t.Errorf("%s: stdout %q stderr %q, want the version alone on stdout", arg, stdout.String(), stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"--version", "--output-dir=/x"}, &stdout, &stderr)
	if discovery.Code(err) != discovery.ExitConfig || stdout.Len() > 0 || !strings.Contains(stderr.String(), "takes no other arguments") {
		t.Errorf("--version with arguments: exit %d (%v), stdout %q, stderr %q: want a usage error (exit 2) on stderr",
			discovery.Code(err), err, stdout.String(), stderr.String())
	}
}

// The startup probe the webhook builds from a --seed-discovery-command
// that carries flags (`seed-discovery --dns-server=… decided …`) works:
// before it read the flags as the main command's and exited 2 ("unexpected
// arguments"), so the kubelet restarted the sidecar in a loop.
func TestDecidedProbeWithFlagsInTheCommand(t *testing.T) {
	for _, command := range [][]string{
		{"/usr/local/bin/seed-discovery"},
		{"/usr/local/bin/seed-discovery", "--dns-server=10.0.0.10:53"},
		{"/usr/local/bin/seed-discovery", "--dns-server", "10.0.0.10:53", "--poll-interval=1s"},
	} {
		cfg := admit.DefaultConfig()
		cfg.SeedDiscoveryCommand = command
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Annotations: map[string]string{contract.Refresh.Annotation: "5s"}}}
		pod.Spec.Containers = []corev1.Container{{Name: "app", Image: "app"}}
		mutated, _, err := admit.Mutate(pod, admit.Membership{Group: "g", Service: "g"}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		var probe []string
		for _, c := range mutated.Spec.InitContainers {
			if c.Name == contract.InitContainerName && c.StartupProbe != nil && c.StartupProbe.Exec != nil {
				probe = c.StartupProbe.Exec.Command
			}
		}
		if len(probe) < 2 || probe[0] != command[0] {
			t.Fatalf("command %q: no startup probe running it: %q", command, probe)
		}
		out := t.TempDir()
		args := append(slices.Clone(probe[1:]), "--output-dir="+out) // the last --output-dir wins
		if err := run(context.Background(), args, io.Discard, io.Discard); discovery.Code(err) != discovery.ExitInterrupted {
			t.Errorf("probe %q before a decision: exit %d (%v), want %d", args, discovery.Code(err), err, discovery.ExitInterrupted)
		}
		if err := os.WriteFile(filepath.Join(out, contract.SeedsFileName), []byte("10.0.0.1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := run(context.Background(), args, io.Discard, io.Discard); err != nil {
			t.Errorf("probe %q after the decision: exit %d (%v), want 0", args, discovery.Code(err), err)
		}
	}
	// A flag's value that reads "decided" is no subcommand.
	if got := decidedAt([]string{"--pod-name", "decided"}); got != -1 {
		t.Errorf("decidedAt(--pod-name decided) = %d, want -1", got)
	}
}
