package webhook

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/peergroup/peergroup/webhook/admit"
)

func validatingConfig(entries map[string]admissionregistrationv1.WebhookClientConfig) *admissionregistrationv1.ValidatingWebhookConfiguration {
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "peergroup"}}
	for name, cc := range entries {
		vwc.Webhooks = append(vwc.Webhooks, admissionregistrationv1.ValidatingWebhook{Name: name, ClientConfig: cc})
	}
	return vwc
}

func usableConfig() *admissionregistrationv1.ValidatingWebhookConfiguration {
	return validatingConfig(map[string]admissionregistrationv1.WebhookClientConfig{
		EntryPodLabel: byService(ptr.To(ValidatePath)), EntryNamespaceLabel: byService(ptr.To(ValidatePath))})
}

func withEntry(vwc *admissionregistrationv1.ValidatingWebhookConfiguration, name string, change func(*admissionregistrationv1.ValidatingWebhook)) *admissionregistrationv1.ValidatingWebhookConfiguration {
	for i := range vwc.Webhooks {
		if vwc.Webhooks[i].Name == name {
			change(&vwc.Webhooks[i])
		}
	}
	return vwc
}

func byService(path *string) admissionregistrationv1.WebhookClientConfig {
	return admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Namespace: "sys", Name: "peergroup", Path: path}}
}

func byURL(url string) admissionregistrationv1.WebhookClientConfig {
	return admissionregistrationv1.WebhookClientConfig{URL: &url}
}

func TestCallsValidatePath(t *testing.T) {
	for _, tc := range []struct {
		name string
		vwc  *admissionregistrationv1.ValidatingWebhookConfiguration
		want bool
	}{
		{"nil", nil, false},
		{"both entries by Service", validatingConfig(map[string]admissionregistrationv1.WebhookClientConfig{
			EntryPodLabel: byService(ptr.To(ValidatePath)), EntryNamespaceLabel: byService(ptr.To(ValidatePath))}), true},
		{"both entries by URL", validatingConfig(map[string]admissionregistrationv1.WebhookClientConfig{
			EntryPodLabel: byURL("https://127.0.0.1:9443" + ValidatePath), EntryNamespaceLabel: byURL("https://127.0.0.1:9443" + ValidatePath)}), true},
		{"one entry missing", validatingConfig(map[string]admissionregistrationv1.WebhookClientConfig{
			EntryPodLabel: byService(ptr.To(ValidatePath))}), false},
		{"one entry on the mutating path", validatingConfig(map[string]admissionregistrationv1.WebhookClientConfig{
			EntryPodLabel: byService(ptr.To(ValidatePath)), EntryNamespaceLabel: byService(ptr.To(Path))}), false},
		{"a Service without a path", validatingConfig(map[string]admissionregistrationv1.WebhookClientConfig{
			EntryPodLabel: byService(ptr.To(ValidatePath)), EntryNamespaceLabel: byService(nil)}), false},
		{"an unparsable URL", validatingConfig(map[string]admissionregistrationv1.WebhookClientConfig{
			EntryPodLabel: byURL("https://[::1" + ValidatePath), EntryNamespaceLabel: byURL("https://127.0.0.1" + ValidatePath)}), false},
		{"no clientConfig", validatingConfig(map[string]admissionregistrationv1.WebhookClientConfig{
			EntryPodLabel: {}, EntryNamespaceLabel: byService(ptr.To(ValidatePath))}), false},
		{"failurePolicy Ignore", withEntry(usableConfig(), EntryNamespaceLabel, func(e *admissionregistrationv1.ValidatingWebhook) {
			e.FailurePolicy = ptr.To(admissionregistrationv1.Ignore)
		}), false},
		{"failurePolicy Fail", withEntry(usableConfig(), EntryNamespaceLabel, func(e *admissionregistrationv1.ValidatingWebhook) {
			e.FailurePolicy = ptr.To(admissionregistrationv1.Fail)
		}), true},
		{"a matchCondition", withEntry(usableConfig(), EntryPodLabel, func(e *admissionregistrationv1.ValidatingWebhook) {
			e.MatchConditions = []admissionregistrationv1.MatchCondition{{Name: "never", Expression: "false"}}
		}), false},
	} {
		if got := CallsValidatePath(tc.vwc); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// The mutating phase relies on the validating phase only once its
// configuration has been seen for Settle and the API server has called it
// since; at once not when the configuration goes or stops calling it.
func TestValidationWatchInForce(t *testing.T) {
	now := time.Unix(1000, 0)
	w := &ValidationWatch{Settle: 10 * time.Second, Now: func() time.Time { return now }}
	usable := validatingConfig(map[string]admissionregistrationv1.WebhookClientConfig{
		EntryPodLabel: byService(ptr.To(ValidatePath)), EntryNamespaceLabel: byService(ptr.To(ValidatePath))})
	broken := validatingConfig(map[string]admissionregistrationv1.WebhookClientConfig{EntryPodLabel: byService(ptr.To(ValidatePath))})
	step := func(what string, d time.Duration, act func(), want bool) {
		t.Helper()
		now = now.Add(d)
		if act != nil {
			act()
		}
		if got := w.InForce(); got != want {
			t.Errorf("%s: in force %v, want %v", what, got, want)
		}
	}
	if (*ValidationWatch)(nil).InForce() {
		t.Error("a nil watch is in force")
	}
	(*ValidationWatch)(nil).called() // a handler without a watch
	step("nothing seen", 0, nil, false)
	step("called before the configuration is seen", 0, w.called, false)
	step("seen", time.Second, func() { w.Observe(usable) }, false)
	step("still a call from before it was seen", 20*time.Second, nil, false)
	step("called, settled", 0, w.called, true)
	step("seen again (resync)", time.Second, func() { w.Observe(usable) }, true)
	step("changed to miss an entry", 0, func() { w.Observe(broken) }, false)
	step("fixed: seen anew", time.Second, func() { w.Observe(usable) }, false)
	step("called, not settled yet", 9*time.Second, w.called, false)
	step("settled", time.Second, nil, true)
	step("deleted", 0, w.Forget, false)
	step("recreated, called at once", 0, func() { w.Observe(usable); w.called() }, false)
	step("settled again", 10*time.Second, nil, true)
	// Deleted and created again while the watch was away: the informer
	// reports an update of an object with another UID.
	recreated := usable.DeepCopy()
	recreated.UID = "second"
	step("recreated unseen", 0, func() { w.Observe(recreated) }, false)
	step("called, settled", 10*time.Second, w.called, true)
}

// The validating handler creates the Service, answers without a patch,
// records the created Service as an Event and in the metrics, and tells
// the watch the API server calls it.
func TestValidatingHandler(t *testing.T) {
	c := newFakeClient()
	rec := &fakeRecorder{}
	reg := prometheus.NewRegistry()
	watch := &ValidationWatch{}
	base := testHandler(nil, c)
	h := &ValidatingHandler{Decider: base.Decider, Metrics: NewMetrics(reg), Events: &Events{Recorder: rec}, Phase: watch}
	h.Decider.Namespaces = staticNamespaces(nil)
	watch.Observe(validatingConfig(map[string]admissionregistrationv1.WebhookClientConfig{
		EntryPodLabel: byService(ptr.To(ValidatePath)), EntryNamespaceLabel: byService(ptr.To(ValidatePath))}))
	raw := []byte(`{"metadata":{"name":"db-0","labels":{"peergroup.dev/group":"db"}},"spec":{"containers":[{"name":"c","image":"x","ports":[{"name":"peer","containerPort":7000}]}]}}`)
	resp := (&admission.Webhook{Handler: h}).Handle(context.Background(), podRequest(raw, admissionv1.Create, false))
	if !resp.Allowed || len(resp.Patch) != 0 || resp.PatchType != nil {
		t.Fatalf("response %+v", resp.AdmissionResponse)
	}
	svc := &corev1.Service{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "db", Name: "db"}, svc); err != nil {
		t.Fatalf("Service not created: %v", err)
	}
	if len(rec.events) != 1 || rec.events[0].reason != EventServiceCreated {
		t.Errorf("events %+v", rec.events)
	}
	if got := testutil.ToFloat64(h.Metrics.servicesCreated.WithLabelValues("db", "db")); got != 1 {
		t.Errorf("services created %v", got)
	}
	if got := testutil.CollectAndCount(h.Metrics.admissions); got != 0 {
		t.Errorf("an allowed validation counted as an admission (%d series)", got)
	}
	if !watch.InForce() {
		t.Error("the call did not reach the watch")
	}
	// A refusal in this phase is the pod's answer: counted.
	bad := []byte(`{"metadata":{"name":"x","labels":{"peergroup.dev/group":"Bad"}},"spec":{"containers":[{"name":"c","image":"x"}]}}`)
	if resp := (&admission.Webhook{Handler: h}).Handle(context.Background(), podRequest(bad, admissionv1.Create, false)); resp.Allowed {
		t.Fatal("invalid group allowed")
	}
	if got := testutil.ToFloat64(h.Metrics.denied.WithLabelValues("", "", string(admit.ReasonInvalidName))); got != 1 {
		t.Errorf("denied %v", got)
	}
	if got := testutil.ToFloat64(h.Metrics.admissions.WithLabelValues(string(admit.VerdictDenied))); got != 1 {
		t.Errorf("admissions denied %v", got)
	}
}
