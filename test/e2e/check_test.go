package e2e

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/probe"
)

// `peergroup check` against the real API server: the chart's webhook is
// reachable; a webhook whose port is closed, and one that never answers,
// are reported unreachable with the API server's own message and the
// matching hints. The broken configurations select only their own group,
// so nothing else is refused meanwhile.
func TestCheckReachability(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, nil)
	check := func(group string) probe.Result {
		t.Helper()
		return probe.Run(ctx, cluster.Config, ns, group)
	}
	if r := check("reachable"); r.Outcome != probe.Reachable {
		t.Fatalf("the chart's webhook: %+v", r)
	}
	// A namespace that does not exist is the check's error, not "reachable".
	if r := probe.Run(ctx, cluster.Config, "no-such-namespace", "reachable"); r.Outcome != probe.Error || !strings.Contains(r.Detail, "namespace no-such-namespace does not exist") {
		t.Errorf("a missing namespace: %+v", r)
	}
	// A validating policy refuses the injected pod after peergroup
	// answered (validation runs after every mutating webhook): reachable,
	// told by peergroup's warning, which the API server returns with the
	// refusal. The refusal's wording names nothing of peergroup.
	refusing := newNamespace(t, map[string]string{"peergroup-check-test": "refuse"})
	refusePodsIn(t, ctx, "peergroup-check-refuse", "peergroup-check-test", "refuse")
	eventually(t, 10*time.Second, "the policy enforced", func() bool {
		err := cluster.Client.Create(ctx, plainPod(refusing, "x", nil), client.DryRunAll)
		return err != nil && strings.Contains(err.Error(), "refused by the test's policy")
	})
	if r := probe.Run(ctx, cluster.Config, refusing, "reachable"); r.Outcome != probe.Reachable || !strings.Contains(r.Detail, "refused by the test's policy") {
		t.Errorf("a policy refusing the injected pod: %+v", r)
	}

	closed := freeLoopbackPort(t)
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() { // accepts, never answers: the API server times out
		for {
			conn, err := silent.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	for _, tc := range []struct {
		group, addr, hint string
	}{
		{"closed-port", "127.0.0.1:" + strconv.Itoa(closed), "no webhook pod is ready"},
		{"no-answer", silent.Addr().String(), "GKE private clusters"},
	} {
		brokenWebhook(t, ctx, tc.group, tc.addr)
		r := check(tc.group)
		if r.Outcome != probe.Unreachable || !strings.Contains(r.Detail, "failed calling webhook") || !strings.Contains(strings.Join(r.Hints, "\n"), tc.hint) {
			t.Errorf("%s: %+v, want unreachable with a hint %q", tc.group, r, tc.hint)
		}
		t.Logf("%s: %s", tc.group, r.Detail)
	}
}

// refusePodsIn makes the API server refuse every pod created in the
// namespaces labelled key=value, in the validating phase.
func refusePodsIn(t *testing.T, ctx context.Context, name, key, value string) {
	t.Helper()
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}}
	policy.Spec.FailurePolicy = ptr.To(admissionregistrationv1.Fail)
	policy.Spec.MatchConstraints = &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
		RuleWithOperations: admissionregistrationv1.RuleWithOperations{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
			Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
		},
	}}}
	policy.Spec.Validations = []admissionregistrationv1.Validation{{Expression: "false", Message: "refused by the test's policy"}}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: name}}
	binding.Spec.PolicyName = name
	binding.Spec.ValidationActions = []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}
	binding.Spec.MatchResources = &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{key: value}}}
	for _, obj := range []client.Object{policy, binding} {
		if err := cluster.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cluster.Client.Delete(context.Background(), obj) })
	}
}

func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// brokenWebhook registers a webhook at addr (loopback) for pods of group
// only, failurePolicy Fail, removed at the end of the test.
func brokenWebhook(t *testing.T, ctx context.Context, group, addr string) {
	t.Helper()
	url := "https://" + addr + "/mutate-v1-pod"
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "broken-" + group},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    group + ".broken.peergroup.dev",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: hook.CABundle},
			Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create}, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			ObjectSelector:          &metav1.LabelSelector{MatchLabels: map[string]string{contract.GroupLabel: group}},
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          ptr.To[int32](2),
		}},
	}
	if err := cluster.Client.Create(ctx, mwc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Client.Delete(context.Background(), mwc) })
}
