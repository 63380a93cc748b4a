package e2e

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/test/framework"
)

// A member pod that starts terminating leaves its group's Service at once:
// the webhook (running with the chart's RBAC) sets its peer label to
// "terminating", which the Service's selector no longer matches, while the
// pod runs out its grace period. A non-member terminating beside it, and a
// running member, keep their labels. The API server's behaviour matters
// here: the label change of a terminating pod, the JSON patch's test
// operation, RBAC.
func TestTerminatingPeerLeavesItsService(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, map[string]string{contract.GroupLabel: "retire"})
	// The finalizer holds the deleted pods, as a grace period does on a
	// node (no kubelet here).
	const hold = "peergroup.dev/test-hold"
	mk := func(name string, labels map[string]string) *corev1.Pod {
		p := plainPod(ns, name, labels)
		p.Finalizers = []string{hold}
		if err := cluster.Client.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { release(t, p, hold) })
		return p
	}
	leaving := mk("leaving", nil)
	staying := mk("staying", nil)
	outsider := mk("outsider", map[string]string{contract.InjectLabel: "false"})
	for _, p := range []*corev1.Pod{leaving, staying} {
		if p.Labels[contract.PeerLabel] != contract.PeerValue {
			t.Fatalf("%s admitted without %s=%s: %v", p.Name, contract.PeerLabel, contract.PeerValue, p.Labels)
		}
	}
	for _, p := range []*corev1.Pod{leaving, outsider} {
		if err := cluster.Client.Delete(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	labelOf := func(name string) string {
		p := &corev1.Pod{}
		if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, p); err != nil {
			t.Fatal(err)
		}
		return p.Labels[contract.PeerLabel]
	}
	eventually(t, 10*time.Second, "the terminating member relabelled", func() bool {
		return labelOf("leaving") == contract.PeerTerminatingValue
	})
	// The controller acts within milliseconds; a second's wait shows it
	// leaves the others alone rather than reaching them late.
	time.Sleep(time.Second)
	if got := labelOf("staying"); got != contract.PeerValue {
		t.Errorf("running member's peer label = %q, want %q", got, contract.PeerValue)
	}
	if got := labelOf("outsider"); got != "" {
		t.Errorf("terminating non-member got peer label %q", got)
	}
}

// release removes the test's finalizer, so a held pod can go.
func release(t *testing.T, p *corev1.Pod, finalizer string) {
	t.Helper()
	ctx := testContext(t)
	cur := &corev1.Pod{}
	if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(p), cur); err != nil {
		return
	}
	patch := client.MergeFrom(cur.DeepCopy())
	cur.Finalizers = nil
	if err := cluster.Client.Patch(ctx, cur, patch); err != nil {
		t.Logf("release %s: %v", p.Name, err)
	}
	_ = cluster.Client.Delete(ctx, cur)
}

// The group's Service, created while its port was unnamed, is read from
// the webhook's cache with its port names: a later pod naming the port in
// peergroup.dev/port-name is denied with the Service's names; one naming a
// port the Service has is admitted. And a user's explicit port name is
// never taken by a derived one.
func TestPortNameCheckedAgainstTheGroupsService(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, map[string]string{contract.GroupLabel: "gossip"})
	first := plainPod(ns, "first", nil)
	first.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 7000}, {Name: "tcp-7000", ContainerPort: 7001}}
	if err := cluster.Client.Create(ctx, first); err != nil {
		t.Fatal(err)
	}
	svcs := services(t, ns)
	if len(svcs) != 1 {
		t.Fatalf("Services %v, want the group's", svcs)
	}
	got := map[string]int32{}
	for _, p := range svcs[0].Spec.Ports {
		got[p.Name] = p.Port
	}
	if got["tcp-7000"] != 7001 || got["tcp-7000-2"] != 7000 {
		t.Fatalf("Service ports %v: the user's name tcp-7000 must stay on 7001", got)
	}
	named := func(name, portName string) *corev1.Pod {
		p := plainPod(ns, name, nil)
		p.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "gossip", ContainerPort: 7000}, {Name: "tcp-7000", ContainerPort: 7001}}
		p.Annotations = map[string]string{contract.PortName.Annotation: portName}
		return p
	}
	// The cache may be a moment behind the create above.
	eventually(t, 10*time.Second, "the Service's port names in the webhook's cache", func() bool {
		err := cluster.Client.Create(ctx, named("renamed", "gossip"), client.DryRunAll)
		return err != nil && strings.Contains(err.Error(), "has no port of that name (its ports: tcp-7000-2 (7000/TCP), tcp-7000 (7001/TCP))")
	})
	if err := cluster.Client.Create(ctx, named("kept", "tcp-7000")); err != nil {
		t.Fatalf("a port-name the Service carries: %v", err)
	}
}

// A Pod-type LimitRange the refreshing sidecar would push the pod over:
// denied by peergroup with the LimitRange's name and the chart value
// (before, the API server refused it with a total the user never wrote,
// and the group's Service was left behind); the same pod with a plain
// init container fits, and is admitted.
func TestPodLimitRangeNamedInDenial(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, map[string]string{contract.GroupLabel: "per-pod"})
	lr := &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "per-pod"}, Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
		Type: corev1.LimitTypePod, Max: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("256Mi")},
	}}}}
	if err := cluster.Client.Create(ctx, lr); err != nil {
		t.Fatal(err)
	}
	pod := func(name string, refresh bool) *corev1.Pod {
		p := plainPod(ns, name, nil)
		r := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("256Mi")}
		p.Spec.Containers[0].Resources = corev1.ResourceRequirements{Requests: r, Limits: r}
		if refresh {
			p.Annotations = map[string]string{contract.Refresh.Annotation: "30s"}
		}
		return p
	}
	want := "LimitRange " + ns + "/per-pod (type Pod) would reject the pod once the injected seed-discovery container is added: memory limit must be at most 256Mi (limit 288Mi)"
	eventually(t, 10*time.Second, "the LimitRange in the webhook's cache", func() bool {
		err := cluster.Client.Create(ctx, pod("probe", true), client.DryRunAll)
		return err != nil && strings.Contains(err.Error(), want)
	})
	if err := cluster.Client.Create(ctx, pod("sidecar", true)); err == nil || !strings.Contains(err.Error(), "seedDiscovery.resources") {
		t.Fatalf("with the sidecar: %v, want %q and the chart value", err, want)
	}
	if got := services(t, ns); len(got) != 0 {
		t.Fatalf("a denied pod left Services: %v", got)
	}
	plain := pod("init", false)
	if err := cluster.Client.Create(ctx, plain); err != nil {
		t.Fatalf("with the init container: %v", err)
	}
	requireInjected(t, plain)
}

// The webhook's ServiceAccount may patch pods only to take a terminating
// peer out of DNS: the chart's ValidatingAdmissionPolicy refuses it every
// other pod update (a stolen token cannot change running pods), and lets
// the relabel through (TestTerminatingPeerLeavesItsService runs the
// webhook under the same policy).
func TestWebhookPodUpdatesNarrowed(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, map[string]string{contract.GroupLabel: "guarded"})
	asWebhook, err := client.New(framework.ServiceAccountConfig(cluster.Config, releaseNamespace, "peergroup"), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const hold = "peergroup.dev/test-hold"
	running := plainPod(ns, "running", nil)
	leaving := plainPod(ns, "leaving", nil)
	for _, p := range []*corev1.Pod{running, leaving} {
		p.Finalizers = []string{hold}
		if err := cluster.Client.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { release(t, p, hold) })
	}
	patch := func(name, jsonPatch string) error {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		return asWebhook.Patch(ctx, p, client.RawPatch(types.JSONPatchType, []byte(jsonPatch)))
	}
	// The API server takes a moment to load a policy created at start.
	eventually(t, 15*time.Second, "the chart's pod-update policy loaded", func() bool {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "running"}}
		err := asWebhook.Patch(ctx, p, client.RawPatch(types.JSONPatchType, []byte(`[{"op":"replace","path":"/spec/containers/0/image","value":"evil:1"}]`)), client.DryRunAll)
		return err != nil && strings.Contains(err.Error(), "peergroup's webhook")
	})
	refused := []struct{ pod, patch, why string }{
		{"running", `[{"op":"replace","path":"/metadata/labels/peergroup.dev~1peer","value":"terminating"}]`, "relabels only pods that are terminating"},
		{"running", `[{"op":"replace","path":"/spec/containers/0/image","value":"evil:1"}]`, "relabels only pods that are terminating"},
	}
	for _, r := range refused {
		if err := patch(r.pod, r.patch); err == nil || !strings.Contains(err.Error(), r.why) {
			t.Errorf("%s %s: %v, want refused: %q", r.pod, r.patch, err, r.why)
		}
	}
	if err := cluster.Client.Delete(ctx, leaving); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct{ patch, why string }{
		{`[{"op":"replace","path":"/spec/containers/0/image","value":"evil:1"}]`, "sets peergroup.dev/peer from"},
		{`[{"op":"add","path":"/metadata/labels/app","value":"x"},{"op":"replace","path":"/metadata/labels/peergroup.dev~1peer","value":"terminating"}]`, "changes no other label"},
		{`[{"op":"add","path":"/metadata/annotations","value":{"a":"b"}},{"op":"replace","path":"/metadata/labels/peergroup.dev~1peer","value":"terminating"}]`, "changes no annotation"},
	} {
		// The controller may have relabelled it already: then every one
		// of these is refused for its label too.
		if err := patch("leaving", r.patch); err == nil || !strings.Contains(err.Error(), "peergroup's webhook") {
			t.Errorf("leaving %s: %v, want refused (%q)", r.patch, err, r.why)
		}
	}
	eventually(t, 10*time.Second, "the terminating peer relabelled through the policy", func() bool {
		p := &corev1.Pod{}
		return cluster.Client.Get(ctx, client.ObjectKeyFromObject(leaving), p) == nil && p.Labels[contract.PeerLabel] == contract.PeerTerminatingValue
	})
}
