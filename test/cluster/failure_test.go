package cluster

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/inspect"
	"github.com/peergroup/peergroup/test/framework"
	"github.com/peergroup/peergroup/webhook/admit"
)

// 4a. failurePolicy Fail (the default): while the webhook is down, member
// pods are refused; the controller creates them once it is back.
func TestWebhookDownFailPolicy(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, map[string]string{"peergroup.dev/group": "cassandra"})
	hook.Stop()
	restarted := false
	defer func() {
		if !restarted {
			_ = hook.Restart(context.Background())
		}
	}()
	rc := replicationController(ns, "cassandra", 2, podTemplate("cassandra", nil, nil))
	if err := lc.Client.Create(ctx, rc); err != nil {
		t.Fatal(err)
	}
	requireNoPods(t, ns, 4*time.Second)
	events := &corev1.EventList{}
	if err := lc.Client.List(ctx, events, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	refused := false
	for _, e := range events.Items {
		refused = refused || e.Reason == "FailedCreate"
	}
	if !refused {
		t.Error("no FailedCreate event from the ReplicationController while the webhook was down")
	}
	if err := hook.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	restarted = true
	pods := runningPods(t, ns, "cassandra", 2)
	requireInjected(t, pods, "CASSANDRA_SERVICE", "cassandra")
}

// 4b. failurePolicy Ignore: pods admitted while the webhook is down are not
// injected, and the audit check reports exactly them.
func TestWebhookDownIgnorePolicyIsReported(t *testing.T) {
	ctx := testContext(t)
	ignoring, err := framework.Render("peergroup", releaseNamespace, map[string]any{
		"certificates": map[string]any{"mode": "certManager"},
		"webhook":      map[string]any{"failurePolicy": "Ignore"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := framework.DeleteWebhook(ctx, lc.Cluster, "peergroup"); err != nil {
		t.Fatal(err)
	}
	ignore, err := framework.RegisterWebhook(ctx, lc.Cluster, ignoring, hook.URL(), hook.CABundle, framework.NameSuffix("-ignore"))
	if err != nil {
		t.Fatal(err)
	}
	hook.Stop()
	defer func() {
		_ = ignore.Delete(context.Background(), lc.Cluster)
		if err := hook.Restart(context.Background()); err != nil {
			t.Errorf("restart webhook: %v", err)
		}
		if _, err := framework.RegisterWebhook(context.Background(), lc.Cluster, rendered, hook.URL(), hook.CABundle); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Errorf("re-register: %v", err)
		}
		if err := framework.WaitForInjection(context.Background(), lc.Cluster, "default"); err != nil {
			t.Errorf("webhook not back: %v", err)
		}
	}()
	// Let the API server see the Ignore configuration before creating.
	time.Sleep(2 * time.Second)

	ns := newNamespace(t, map[string]string{"peergroup.dev/group": "cassandra"})
	rc := replicationController(ns, "cassandra", 2, podTemplate("cassandra", nil, nil))
	if err := lc.Client.Create(ctx, rc); err != nil {
		t.Fatal(err)
	}
	pods := runningPods(t, ns, "cassandra", 2)
	for _, p := range pods {
		if admit.IsInjected(&p) {
			t.Fatalf("pod %s injected while the webhook was down", p.Name)
		}
	}

	all := &corev1.PodList{}
	if err := lc.Client.List(ctx, all); err != nil {
		t.Fatal(err)
	}
	nsList := &corev1.NamespaceList{}
	if err := lc.Client.List(ctx, nsList); err != nil {
		t.Fatal(err)
	}
	labels := map[string]map[string]string{}
	for _, n := range nsList.Items {
		labels[n.Name] = n.Labels
	}
	findings := inspect.Uninjected(all.Items, inspect.AuditCluster{NamespaceLabels: labels}, admit.DefaultConfig())
	var here []inspect.Finding
	for _, f := range findings {
		if f.Namespace == ns {
			here = append(here, f)
		}
	}
	if len(here) != 2 || here[0].Group != "cassandra" {
		t.Errorf("audit found %+v in %s, want the 2 uninjected pods", here, ns)
	}
	for _, f := range findings {
		if f.Namespace != ns {
			t.Errorf("audit reports a pod outside the outage: %+v", f)
		}
	}
}

// 5. The chart's ClusterRole is enough (every test runs the webhook as the
// chart's ServiceAccount) and no broader.
func TestChartRBACIsNoBroader(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, map[string]string{"peergroup.dev/group": "cassandra"})
	svc := &corev1.Service{}
	svc.Namespace, svc.Name = ns, "existing"
	svc.Spec.ClusterIP = "None"
	if err := lc.Client.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	as, err := client.New(framework.ServiceAccountConfig(lc.Config, releaseNamespace, "peergroup"), client.Options{Scheme: lc.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	// Allowed: what the code does.
	if err := as.Get(ctx, client.ObjectKeyFromObject(svc), &corev1.Service{}); err != nil {
		t.Errorf("get service: %v", err)
	}
	// Listing pods is what the terminating-peers controller does.
	if err := as.List(ctx, &corev1.PodList{}); err != nil {
		t.Errorf("list pods: %v", err)
	}
	running := plainPod(ns)
	running.Name = "running"
	if err := lc.Client.Create(ctx, running); err != nil {
		t.Fatal(err)
	}
	// Refused: everything else a compromised webhook could abuse.
	svc.Labels = map[string]string{"changed": "yes"}
	denied := map[string]error{
		"update service": as.Update(ctx, svc.DeepCopy()),
		"delete service": as.Delete(ctx, svc.DeepCopy()),
		"create pod":     as.Create(ctx, plainPod(ns)),
		"delete pod":     as.Delete(ctx, running.DeepCopy()),
		"update pod":     as.Update(ctx, running.DeepCopy()),
		"list secrets":   as.List(ctx, &corev1.SecretList{}, client.InNamespace(ns)),
		"update namespace": func() error {
			n := &corev1.Namespace{}
			if err := lc.Client.Get(ctx, client.ObjectKey{Name: ns}, n); err != nil {
				return err
			}
			n.Labels["x"] = "y"
			return as.Update(ctx, n)
		}(),
	}
	for what, err := range denied {
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s as the chart's ServiceAccount: %v, want Forbidden", what, err)
		}
	}
	// Patch is granted (the relabel of a terminating peer); the chart's
	// policy refuses it anything else.
	// Dry runs: the API server takes a moment to load a new policy.
	image := client.RawPatch(types.JSONPatchType, []byte(`[{"op":"replace","path":"/spec/containers/0/image","value":"evil:1"}]`))
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if err = as.Patch(ctx, running.DeepCopy(), image, client.DryRunAll); err != nil && strings.Contains(err.Error(), "peergroup's webhook") {
			return
		}
	}
	t.Errorf("patch a running pod's image as the chart's ServiceAccount: %v, want refused by the chart's policy", err)
}

func plainPod(ns string) *corev1.Pod {
	p := &corev1.Pod{}
	p.Namespace, p.Name = ns, "sneaky"
	p.Spec.Containers = []corev1.Container{{Name: "c", Image: "busybox"}}
	return p
}
