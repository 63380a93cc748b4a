package faults

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/test/framework"
	"github.com/peergroup/peergroup/webhook"
)

// requireDenied: the create failed with every one of the words, and no pod
// and no Service exist afterwards in ns.
func requireDenied(t *testing.T, err error, ns string, words ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("pod admitted, want it denied")
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("denial %q does not say %q", err, w)
		}
	}
	if n := len(pods(t, ns)); n != 0 {
		t.Errorf("%d pods exist after the denial", n)
	}
	if s := services(t, ns); len(s) != 0 {
		t.Errorf("Services %v exist after the denial", serviceNames(s))
	}
}

// 3a. RBAC removed: the webhook may read Services but not create them.
func TestServiceCreateForbidden(t *testing.T) {
	ctx := testContext(t)
	sa := &corev1.ServiceAccount{}
	sa.Namespace, sa.Name = releaseNamespace, "no-create"
	role := &rbacv1.ClusterRole{Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"limitranges"}, Verbs: []string{"list", "watch"}},
	}}
	role.Name = "peergroup-no-create"
	binding := &rbacv1.ClusterRoleBinding{
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: sa.Namespace, Name: sa.Name}},
	}
	binding.Name = role.Name
	for _, obj := range []client.Object{sa, role, binding} {
		if err := cluster.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	hook := startHook(t, framework.ServiceAccountConfig(cluster.Config, sa.Namespace, sa.Name))
	register(t, "forbidden", hook.URL(), hook.CABundle, nil)
	ns := namespace(t, "forbidden", "alpha")

	err := cluster.Client.Create(ctx, memberPod(ns, "alpha-0", ""))
	requireDenied(t, err, ns, "cannot ensure headless Service "+ns+"/alpha", "forbidden", `cannot create resource "services"`)
}

// 3b. ResourceQuota on services exhausted.
func TestServiceQuotaExhausted(t *testing.T) {
	ctx := testContext(t)
	hook := startHook(t, chartIdentity())
	register(t, "quota", hook.URL(), hook.CABundle, nil)
	ns := namespace(t, "quota", "beta")
	quota := &corev1.ResourceQuota{}
	quota.Namespace, quota.Name = ns, "no-services"
	quota.Spec.Hard = corev1.ResourceList{corev1.ResourceServices: resource.MustParse("0")}
	if err := cluster.Client.Create(ctx, quota); err != nil {
		t.Fatal(err)
	}
	// No quota controller runs here: publish the usage it would compute.
	quota.Status.Hard = quota.Spec.Hard
	quota.Status.Used = corev1.ResourceList{corev1.ResourceServices: resource.MustParse("0")}
	if err := cluster.Client.Status().Update(ctx, quota); err != nil {
		t.Fatal(err)
	}

	err := cluster.Client.Create(ctx, memberPod(ns, "beta-0", ""))
	requireDenied(t, err, ns, "cannot ensure headless Service "+ns+"/beta", "exceeded quota: no-services")

	// Room for one Service: the next attempt goes through.
	quota.Spec.Hard[corev1.ResourceServices] = resource.MustParse("1")
	if err := cluster.Client.Update(ctx, quota); err != nil {
		t.Fatal(err)
	}
	quota.Status.Hard = quota.Spec.Hard
	if err := cluster.Client.Status().Update(ctx, quota); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, memberPod(ns, "beta-1", "")); err != nil {
		t.Fatalf("with quota for one Service: %v", err)
	}
	if got := serviceNames(services(t, ns)); len(got) != 1 || got[0] != "beta" {
		t.Errorf("Services %v, want beta", got)
	}
	requireNothingUninjected(t, ns)
}

// 3c. The API server unreachable from the webhook, then cut mid-request:
// an existing group keeps working from the cache; a new group is denied
// with the cause; nothing is left half-made; service resumes.
func TestAPIServerUnreachable(t *testing.T) {
	ctx := testContext(t)
	proxy := startProxy(t, apiServerAddr())
	hook := startHook(t, throughProxy(chartIdentity(), proxy))
	register(t, "unreachable", hook.URL(), hook.CABundle, nil)
	ns := namespace(t, "unreachable", "")
	if err := cluster.Client.Create(ctx, memberPod(ns, "steady-0", "steady")); err != nil {
		t.Fatal(err)
	}

	proxy.Refuse(true)
	if err := cluster.Client.Create(ctx, memberPod(ns, "steady-1", "steady")); err != nil {
		t.Errorf("existing group while the API server is unreachable: %v (the cache must answer)", err)
	}
	err := cluster.Client.Create(ctx, memberPod(ns, "fresh-0", "fresh"))
	if err == nil || !strings.Contains(err.Error(), "cannot ensure headless Service "+ns+"/fresh") {
		t.Errorf("new group while the API server is unreachable: %v, want a denial naming the Service", err)
	}

	// Restarted mid-request: the Service create is on the wire when every
	// connection drops.
	proxy.Refuse(false)
	proxy.SetDelay(1500 * time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- cluster.Client.Create(ctx, memberPod(ns, "midway-0", "midway")) }()
	time.Sleep(700 * time.Millisecond)
	proxy.Cut()
	proxy.SetDelay(0)
	if err := <-done; err != nil && !strings.Contains(err.Error(), "peergroup") {
		t.Errorf("cut mid-request: %v, want the webhook's own denial naming the cause", err)
	}

	// Back: both new groups go through, with one Service each.
	eventuallyCreated(t, memberPod(ns, "fresh-1", "fresh"))
	eventuallyCreated(t, memberPod(ns, "midway-1", "midway"))
	if got := serviceNames(services(t, ns)); len(got) != 3 {
		t.Errorf("Services %v, want steady, fresh and midway once each", got)
	}
	requireNothingUninjected(t, ns)
}

func eventuallyCreated(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := cluster.Client.Create(context.Background(), pod.DeepCopy())
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s never admitted: %v", pod.Name, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// 3d. A slow API server: the webhook answers within its timeoutSeconds,
// with its own message, instead of letting the API server time out on it.
func TestSlowAPIServerAnswersWithinTimeout(t *testing.T) {
	ctx := testContext(t)
	proxy := startProxy(t, apiServerAddr())
	hook := startHook(t, throughProxy(chartIdentity(), proxy))
	const timeoutSeconds = 3
	register(t, "slow", hook.URL(), hook.CABundle, func(w *admissionregistrationv1.MutatingWebhook) {
		w.TimeoutSeconds = ptr.To[int32](timeoutSeconds)
	})
	ns := namespace(t, "slow", "")

	proxy.SetDelay(6 * time.Second)
	start := time.Now()
	err := cluster.Client.Create(ctx, memberPod(ns, "slow-0", "slow"))
	took := time.Since(start)
	proxy.SetDelay(0)
	proxy.Cut()
	if err == nil {
		t.Fatal("admitted although the Service could not be created")
	}
	if took > timeoutSeconds*time.Second {
		t.Errorf("answered after %s, beyond timeoutSeconds %d", took, timeoutSeconds)
	}
	if !strings.Contains(err.Error(), "within the webhook's budget") || strings.Contains(err.Error(), "failed calling webhook") {
		t.Errorf("denial %q: want the webhook's own answer naming the budget, not the API server giving up on the webhook", err)
	}
	t.Logf("answered in %s: %v", took.Round(time.Millisecond), err)
}

// 3e. The webhook killed (SIGKILL) and restarted under continuous creates,
// failurePolicy Fail: pods are refused while it is down, none is admitted
// without the injection, and creates succeed again after the restart.
func TestWebhookKilledUnderLoad(t *testing.T) {
	ctx := testContext(t)
	logs := &strings.Builder{}
	var logMu sync.Mutex
	hook, err := framework.StartWebhook(ctx, cluster, rendered, releaseNamespace, framework.Process(webhookBinary, chartKubeconfig, lockedWriter{logs, &logMu}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(hook.Stop)
	register(t, "killed", hook.URL(), hook.CABundle, nil)
	ns := namespace(t, "killed", "gamma")

	var admitted, refused, afterRestart atomic.Int32
	var restarted atomic.Bool
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				err := cluster.Client.Create(ctx, memberPod(ns, fmt.Sprintf("load-%d-%d", w, i), ""))
				switch {
				case err == nil:
					admitted.Add(1)
					if restarted.Load() {
						afterRestart.Add(1)
					}
				case strings.Contains(err.Error(), "failed calling webhook"):
					refused.Add(1)
				default:
					t.Errorf("unexpected error: %v", err)
				}
			}
		}()
	}
	time.Sleep(2 * time.Second)
	if err := hook.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := hook.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	restarted.Store(true)
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()

	n := requireNothingUninjected(t, ns)
	t.Logf("%d admitted (%d after the restart), %d refused while down; %d pods exist, all injected", admitted.Load(), afterRestart.Load(), refused.Load(), n)
	if refused.Load() == 0 {
		t.Error("no create was refused: the kill did not take effect")
	}
	if afterRestart.Load() == 0 {
		t.Error("nothing admitted after the restart")
	}
	if int(admitted.Load()) != n {
		t.Errorf("%d creates succeeded but %d pods exist", admitted.Load(), n)
	}
}

type lockedWriter struct {
	b  *strings.Builder
	mu *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// 4. Two replicas behind one address, many new groups created in parallel:
// exactly one Service per group and no denial.
func TestTwoReplicasManyNewGroups(t *testing.T) {
	ctx := testContext(t)
	a := startHook(t, chartIdentity())
	b := startHook(t, chartIdentity())
	lb := startProxy(t, a.Addr(), b.Addr())
	register(t, "replicas", "https://"+lb.Addr()+webhook.Path, append(append([]byte{}, a.CABundle...), b.CABundle...), nil)
	ns := namespace(t, "replicas", "")

	const groups, perGroup = 20, 4
	errs := make(chan error, groups*perGroup)
	var wg sync.WaitGroup
	for g := range groups {
		for i := range perGroup {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := cluster.Client.Create(ctx, memberPod(ns, fmt.Sprintf("g%d-%d", g, i), fmt.Sprintf("g%d", g))); err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("denied: %v", err)
	}
	count := map[string]int{}
	for _, s := range services(t, ns) {
		count[s.Name]++
	}
	for g := range groups {
		if c := count[fmt.Sprintf("g%d", g)]; c != 1 {
			t.Errorf("group g%d has %d Services, want 1", g, c)
		}
	}
	if len(count) != groups {
		t.Errorf("%d Services, want %d", len(count), groups)
	}
	if n := requireNothingUninjected(t, ns); n != groups*perGroup {
		t.Errorf("%d pods, want %d", n, groups*perGroup)
	}
}

// 3e. kube-apiserver really restarted (SIGTERM, then the same process
// again): the webhook stays up and ready throughout, an existing group is
// served from the cache, a new group gets its Service, and the informers
// have reconnected (a Service replaced after the restart is what the
// webhook judges).
func TestAPIServerRestart(t *testing.T) {
	ctx := testContext(t)
	hook := startHook(t, chartIdentity())
	register(t, "restart", hook.URL(), hook.CABundle, nil)
	ns := namespace(t, "restart", "")
	if err := cluster.Client.Create(ctx, memberPod(ns, "steady-0", "steady")); err != nil {
		t.Fatal(err)
	}

	unready := make(chan int)
	stop := make(chan struct{})
	go func() {
		failures := 0
		for {
			select {
			case <-stop:
				unready <- failures
				return
			case <-time.After(100 * time.Millisecond):
			}
			resp, err := http.Get("http://" + hook.ProbeAddr + "/readyz")
			if err != nil || resp.StatusCode != http.StatusOK {
				failures++
			}
			if err == nil {
				resp.Body.Close()
			}
		}
	}()
	logs, err := os.Create(filepath.Join(t.TempDir(), "kube-apiserver.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	began := time.Now()
	restartErr := cluster.RestartAPIServer(ctx, logs)
	close(stop)
	t.Logf("kube-apiserver stopped and ready again after %s", time.Since(began).Round(time.Millisecond))
	if n := <-unready; n > 0 {
		t.Errorf("webhook unready %d times (probed every 100ms) while the API server restarted", n)
	}
	if restartErr != nil {
		t.Fatal(restartErr)
	}

	// Admission resumes with the API server: retry while it settles.
	eventuallyCreated(t, memberPod(ns, "steady-1", "steady"))
	eventuallyCreated(t, memberPod(ns, "fresh-0", "fresh"))
	if got := serviceNames(services(t, ns)); len(got) != 2 {
		t.Errorf("Services %v, want steady and fresh once each", got)
	}
	// Replace the steady Service with one that is not headless: only a
	// webhook whose Service informer watches again sees it and denies.
	if err := cluster.Client.Delete(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "steady"}}); err != nil {
		t.Fatal(err)
	}
	clusterIP := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "steady"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "cql", Port: 9042}}},
	}
	if err := cluster.Client.Create(ctx, clusterIP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for i := 2; ; i++ {
		err := cluster.Client.Create(ctx, memberPod(ns, fmt.Sprintf("steady-%d", i), "steady"))
		if err != nil && strings.Contains(err.Error(), "is not headless") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a pod of group steady after its Service became non-headless: %v; the webhook's cache never saw the change", err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	requireNothingUninjected(t, ns)
}
