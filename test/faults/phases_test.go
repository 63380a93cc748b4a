package faults

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/test/framework"
)

// Issue 22 item 2: a member pod the API server refuses after admission —
// its own validation (a label value too long, no image) or LimitRanger —
// leaves no Service behind, because the Service is created in the
// validating phase, which the API server calls only after both. A pod it
// accepts still finds its Service created before it exists.
func TestRefusedPodLeavesNoService(t *testing.T) {
	ctx := testContext(t)
	const id = "refused"
	// The cluster's admin identity: the chart's RBAC reads only the
	// release's own configuration name, and this one has the test's.
	hook := startHook(t, cluster.Config, "--webhook-config-name="+configName(t, id), "--validation-settle=0s")
	register(t, id, hook.URL(), hook.CABundle, nil)
	ns := namespace(t, id, "")
	limits := &corev1.LimitRange{}
	limits.Namespace, limits.Name = ns, "small"
	limits.Spec.Limits = []corev1.LimitRangeItem{{Type: corev1.LimitTypeContainer,
		Max:     corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
		Default: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")}}}
	if err := cluster.Client.Create(ctx, limits); err != nil {
		t.Fatal(err)
	}
	tooLong := strings.Repeat("x", 64)
	refused := func(group string, spoil func(*corev1.Pod)) error {
		p := memberPod(ns, group+"-0", group)
		spoil(p)
		return cluster.Client.Create(ctx, p)
	}
	labelTooLong := func(p *corev1.Pod) { p.Labels["app"] = tooLong }
	hasService := func(name string) bool {
		err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &corev1.Service{})
		return err == nil
	}
	// The webhook relies on the validating phase once it has seen its
	// configuration and a call through it; until then it creates Services
	// in the mutating phase, as before.
	inForce := false
	for i := 0; i < 40 && !inForce; i++ {
		group := "warmup-" + string(rune('a'+i%26)) + strings.Repeat("w", i/26)
		if err := refused(group, labelTooLong); err == nil {
			t.Fatal("a pod with a 64-character label value was admitted")
		}
		inForce = !hasService(group)
		if !inForce {
			time.Sleep(250 * time.Millisecond)
		}
	}
	if !inForce {
		t.Fatal("after 10 s, refused pods still leave Services: the validating phase never came into force")
	}
	for _, tc := range []struct {
		name, group, want string
		spoil             func(*corev1.Pod)
	}{
		{"a 64-character label value", "long-label", "must be no more than 63", labelTooLong},
		{"an empty image", "no-image", "image: Required value", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "" }},
		{"over the LimitRange", "too-big", "maximum memory usage per Container is 1Gi", func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("2Gi")}
		}},
	} {
		err := refused(tc.group, tc.spoil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want the API server's refusal saying %q", tc.name, err, tc.want)
		}
		if hasService(tc.group) {
			t.Errorf("%s: the refused pod left Service %s/%s behind", tc.name, ns, tc.group)
		}
	}
	// An accepted pod: the Service exists, and the pod is injected.
	ok := memberPod(ns, "kept-0", "kept")
	if err := cluster.Client.Create(ctx, ok); err != nil {
		t.Fatal(err)
	}
	if !hasService("kept") {
		t.Error("an accepted member pod exists without its group's Service")
	}
	requireNothingUninjected(t, ns)
	if got := ok.Labels[contract.PeerLabel]; got != contract.PeerValue {
		t.Errorf("accepted pod not injected: peer label %q", got)
	}
}

// A webhook registered for the mutating phase only (DESIGN.md's
// /mutate-v1-pod, an installation older than the validating phase, or
// one that removed it) creates the Service in the mutating phase, as it
// always did: the pod is never admitted without it.
func TestMutatingOnlyRegistrationStillCreatesTheService(t *testing.T) {
	ctx := testContext(t)
	const id = "mutating-only"
	hook := startHook(t, cluster.Config, "--webhook-config-name="+configName(t, id), "--validation-settle=0s")
	register(t, id, hook.URL(), hook.CABundle, nil, framework.MutatingOnly())
	ns := namespace(t, id, "")
	pod := memberPod(ns, "solo-0", "solo")
	if err := cluster.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if got := serviceNames(services(t, ns)); len(got) != 1 || got[0] != "solo" {
		t.Errorf("Services %v, want solo", got)
	}
	requireNothingUninjected(t, ns)
}

// configName is the name register gives test id's configurations.
func configName(t *testing.T, id string) string {
	t.Helper()
	mwc, err := framework.RenderedWebhookConfig(rendered)
	if err != nil {
		t.Fatal(err)
	}
	return mwc.Name + "-" + id
}
