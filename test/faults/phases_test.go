package faults

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/test/framework"
	"github.com/peergroup/peergroup/webhook"
)

// A member pod the API server refuses after admission —
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
	// configuration and a call through it since; until then it creates
	// Services in the mutating phase, as before. A refused pod never
	// reaches the validating phase, so each round first sends a valid
	// pod's server-side dry run, which does (and creates nothing).
	inForce := false
	for i := 0; i < 40 && !inForce; i++ {
		if err := cluster.Client.Create(ctx, memberPod(ns, "probe", "probe"), client.DryRunAll); err != nil {
			t.Fatal(err)
		}
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

// The webhook expects a validating call that the API server never makes —
// its configuration deleted or changed a moment before the webhook's watch
// saw it, or an API server of an HA control plane not having loaded it: the
// mutating phase left the Service to validation, and the pod is stored
// without it. The missing-services controller creates it within moments
// (seed-discovery waits for its own pod in DNS meanwhile). Staged here
// with a validating configuration the webhook recognises but that selects
// no namespace, and one validating call posted directly.
func TestStoredMemberWithoutServiceGetsIt(t *testing.T) {
	ctx := testContext(t)
	const id = "backstop"
	name := configName(t, id)
	hook := startHook(t, cluster.Config, "--webhook-config-name="+name, "--validation-settle=0s")
	reg := register(t, id, hook.URL(), hook.CABundle, nil, framework.MutatingOnly())
	decoy := framework.ValidatingFor(reg.Mutating, strings.TrimSuffix(hook.URL(), webhook.Path)+webhook.ValidatePath)
	for i := range decoy.Webhooks {
		decoy.Webhooks[i].NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{isolationLabel: "nothing-has-this"}}
	}
	if err := cluster.Client.Create(ctx, decoy); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Client.Delete(context.Background(), decoy) })
	ns := namespace(t, id, "")
	// One validating call, as the API server would make once it loaded the
	// configuration: a dry run, which creates nothing.
	review := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","kind":{"version":"v1","kind":"Pod"},` +
		`"resource":{"version":"v1","resource":"pods"},"namespace":"` + ns + `","operation":"CREATE","dryRun":true,` +
		`"object":{"metadata":{"name":"probe","labels":{"peergroup.dev/group":"probe"}},"spec":{"containers":[{"name":"c","image":"x"}]}}}}`
	validateURL := strings.TrimSuffix(hook.URL(), webhook.Path) + webhook.ValidatePath
	// Each attempt: one validating call, then a member pod of a new group
	// (with an owner, so the Events land in the namespace). The pod must
	// find its Service within 10 s whoever made it; the backstop's Event
	// says when the mutating phase had left it to validation.
	for i := range 20 {
		resp, err := hook.TLSClient().Post(validateURL, "application/json", bytes.NewBufferString(review))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("validating call: HTTP %d", resp.StatusCode)
		}
		group := fmt.Sprintf("lone-%d", i)
		p := memberPod(ns, group+"-0", group)
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: group, UID: types.UID(group + "-uid"), Controller: ptr.To(true)}}
		if err := cluster.Client.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		svc := &corev1.Service{}
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			if err = cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: group}, svc); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("pod %s stored without its Service, and the Service was not created within 10 s: %v", p.Name, err)
		}
		if svc.Spec.ClusterIP != corev1.ClusterIPNone || svc.Labels[contract.GroupLabel] != group {
			t.Fatalf("Service %s is not the group's headless Service: %+v", group, svc.Spec)
		}
		for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			list := &eventsv1.EventList{}
			if err := cluster.Client.List(ctx, list, client.InNamespace(ns)); err != nil {
				t.Fatal(err)
			}
			for _, e := range list.Items {
				if e.Regarding.Name == group && e.Reason == webhook.EventServiceCreated && strings.Contains(e.Note, "was stored without it") {
					return // created by the backstop: the case this test stages
				}
			}
		}
	}
	t.Fatal("in 20 attempts the mutating phase never left a Service to validation: the staging failed")
}
