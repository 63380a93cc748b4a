package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/test/framework"
	"github.com/peergroup/peergroup/webhook"
)

// 8. Upgrades without refusals. Two replicas of the webhook
// binary, run as processes with the chart's Deployment args, behind one
// loopback address that forwards new connections only to replicas whose
// /readyz passes, polled every second: kube-proxy applies endpoint changes
// at most once a second (--iptables-min-sync-period), so a replica leaves
// the address about as fast as a pod leaves its Service. Under
// continuous pod creates through the API server (failurePolicy Fail), both
// replicas are replaced the way the chart's rolling update does it
// (maxSurge 1, maxUnavailable 0): a new replica starts and becomes ready,
// then the old one gets SIGTERM. No create is refused, no TLS handshake
// through the address fails, and each old replica exits 0.
//
// ROLLOUT_SHUTDOWN_DELAY (e.g. 0s) overrides the chart's --shutdown-delay,
// to see the refusals without the graceful shutdown.
func TestRolloutWithoutRefusals(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	binary, kubeconfig := webhookProcess(t, ctx)
	shutdownArgs, err := framework.ShutdownArgs(rendered)
	if err != nil {
		t.Fatal(err)
	}
	if v := os.Getenv("ROLLOUT_SHUTDOWN_DELAY"); v != "" {
		shutdownArgs = append(shutdownArgs, "--shutdown-delay="+v)
		t.Logf("shutdown delay overridden to %s: refusals are expected", v)
	}
	// One serving certificate for every replica, as the Secret cert-manager
	// keeps is mounted in every pod.
	_, certDir, caBundle, err := framework.LoopbackServing()
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "webhooks.log")
	logs, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("webhook logs:\n%s", tail(string(b), 60))
		}
	})

	endpoints := framework.WatchEndpoints(time.Second)
	defer endpoints.Stop()
	start := func() *framework.Webhook {
		t.Helper()
		w, err := framework.StartWebhook(ctx, cluster, rendered, releaseNamespace,
			framework.Process(binary, kubeconfig, logs),
			framework.Args(append([]string{"--cert-dir=" + certDir}, shutdownArgs...)...))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Stop)
		endpoints.Add(w)
		eventually(t, 10*time.Second, "replica "+w.Addr()+" in the endpoints", func() bool {
			return slices.Contains(endpoints.Ready(), w.Addr())
		})
		return w
	}
	old := []*framework.Webhook{start(), start()}
	lb, err := framework.StartEndpointsProxy(endpoints)
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()

	member := newNamespace(t, map[string]string{"peergroup.dev/group": "rollout"})
	reg, err := framework.RegisterWebhook(ctx, cluster, rendered, "https://"+lb.Addr()+webhook.Path, caBundle,
		framework.NameSuffix("-rollout"),
		framework.Tweak(func(w *admissionregistrationv1.MutatingWebhook) {
			w.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": member}}
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Delete(context.Background(), cluster) })
	if err := framework.WaitForInjection(ctx, cluster, member); err != nil {
		t.Fatal(err)
	}

	load := startRolloutLoad(t, member, lb.Addr(), caBundle)
	time.Sleep(3 * time.Second)
	// The Deployment controller's rolling update with maxSurge 1 and
	// maxUnavailable 0: a new replica, once ready, lets one old replica be
	// terminated; the terminating one no longer counts, so the next new
	// replica starts at once.
	rolloutStart := time.Now()
	type exit struct {
		addr string
		took time.Duration
		err  error
	}
	exits := make(chan exit, len(old))
	for _, o := range old {
		n := start()
		load.mark(fmt.Sprintf("new replica %s ready; SIGTERM to %s", n.Addr(), o.Addr()))
		go func() {
			began := time.Now()
			err := o.Terminate()
			exits <- exit{o.Addr(), time.Since(began), err}
		}()
	}
	delay := mustDuration(t, shutdownArgs, "--shutdown-delay=")
	for range old {
		e := <-exits
		load.mark(fmt.Sprintf("old replica %s exited after %s: %v", e.addr, e.took.Round(10*time.Millisecond), e.err))
		if e.err != nil {
			t.Errorf("old replica %s exited with %v after SIGTERM, want status 0", e.addr, e.err)
		}
		if e.took < delay {
			t.Errorf("old replica %s exited %s after SIGTERM, before the %s shutdown delay", e.addr, e.took, delay)
		}
	}
	rollout := time.Since(rolloutStart)
	time.Sleep(2 * time.Second)
	load.stop()

	t.Logf("rolling restart of 2 replicas took %s (shutdown args %v); during %s of load: %d pods created, %d refused; %d handshakes, %d failed",
		rollout.Round(100*time.Millisecond), shutdownArgs, load.ran().Round(100*time.Millisecond),
		load.admitted.Load(), load.refused.Load(), load.handshakes.Load(), load.failedHandshakes.Load())
	for _, line := range load.timeline() {
		t.Log(line)
	}
	if n := load.refused.Load(); n != 0 {
		t.Errorf("%d pod creates refused during the rolling restart", n)
	}
	if n := load.failedHandshakes.Load(); n != 0 {
		t.Errorf("%d TLS handshakes through the Service address failed during the rolling restart", n)
	}
	if load.admitted.Load() < 50 || load.handshakes.Load() < 100 {
		t.Errorf("only %d pods created and %d handshakes: the load did not run", load.admitted.Load(), load.handshakes.Load())
	}
	b, _ := os.ReadFile(logPath)
	if n := strings.Count(string(b), "shutdown requested: readiness failing"); n != len(old) {
		t.Errorf("%d replicas logged the shutdown request, want %d", n, len(old))
	}
	// The creates counted went through these replicas: with the address
	// refusing connections, the API server refuses the pod (failurePolicy
	// Fail).
	lb.Refuse(true)
	if err := cluster.Client.Create(ctx, rolloutPod(member), client.DryRunAll); err == nil {
		t.Error("a pod was admitted with the replicas unreachable: the load did not go through them")
	}
}

// webhookProcess builds the webhook binary and writes a kubeconfig for the
// chart's ServiceAccount, so each replica runs as the Deployment's would.
func webhookProcess(t *testing.T, ctx context.Context) (binary, kubeconfig string) {
	t.Helper()
	dir := t.TempDir()
	binary, err := framework.BuildBinary(ctx, "peergroup-webhook", dir)
	if err != nil {
		t.Fatal(err)
	}
	admin := filepath.Join(dir, "admin.kubeconfig")
	if err := cluster.WriteKubeconfig(admin); err != nil {
		t.Fatal(err)
	}
	kubeconfig = filepath.Join(dir, "chart.kubeconfig")
	if err := cluster.WriteKubeconfigAs(admin, kubeconfig, releaseNamespace, "peergroup"); err != nil {
		t.Fatal(err)
	}
	return binary, kubeconfig
}

func mustDuration(t *testing.T, args []string, prefix string) time.Duration {
	t.Helper()
	var d time.Duration
	found := false
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, prefix); ok {
			var err error
			if d, err = time.ParseDuration(v); err != nil {
				t.Fatal(err)
			}
			found = true
		}
	}
	if !found {
		t.Fatalf("no %s in %v", prefix, args)
	}
	return d
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func rolloutPod(ns string) *corev1.Pod {
	pod := cassandraPod(ns, "")
	pod.GenerateName = "rollout-"
	return pod
}

// rolloutLoad creates pods through the API server continuously and makes
// TLS handshakes through the Service address with the registered caBundle,
// as the API server does, counting what fails and when.
type rolloutLoad struct {
	admitted, refused, handshakes, failedHandshakes atomic.Int64

	began  time.Time
	mu     sync.Mutex
	events []string
	ended  time.Duration
	workers
}

func startRolloutLoad(t *testing.T, ns, addr string, caBundle []byte) *rolloutLoad {
	l := &rolloutLoad{began: time.Now(), workers: newWorkers()}
	for range 3 {
		l.run(func() {
			if err := cluster.Client.Create(context.Background(), rolloutPod(ns)); err != nil {
				if l.refused.Add(1) <= 10 {
					l.mark("pod refused: " + err.Error())
				}
				return
			}
			l.admitted.Add(1)
		})
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caBundle)
	dialer := &tls.Dialer{Config: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}}
	l.run(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := dialer.DialContext(ctx, "tcp", addr)
		l.handshakes.Add(1)
		if err != nil {
			if l.failedHandshakes.Add(1) <= 10 {
				l.mark("handshake failed: " + err.Error())
			}
			return
		}
		conn.Close()
		time.Sleep(20 * time.Millisecond)
	})
	return l
}

func (l *rolloutLoad) mark(what string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, fmt.Sprintf("%7s %s", time.Since(l.began).Round(10*time.Millisecond), what))
}

func (l *rolloutLoad) timeline() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

func (l *rolloutLoad) stop() {
	l.workers.stop()
	l.ended = time.Since(l.began)
}

func (l *rolloutLoad) ran() time.Duration { return l.ended }
