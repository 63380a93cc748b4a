package webhook

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"

	"github.com/peergroup/peergroup/webhook/admit"
)

type recordedEvent struct {
	regarding          *corev1.ObjectReference
	kind, reason, note string
}

type fakeRecorder struct {
	mu     sync.Mutex
	events []recordedEvent
}

func (f *fakeRecorder) Eventf(regarding runtime.Object, _ runtime.Object, eventtype, reason, _, note string, args ...interface{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, recordedEvent{regarding.(*corev1.ObjectReference), eventtype, reason, fmt.Sprintf(note, args...)})
}

// Every denial and every created Service is an Event on the pod's
// controller (or its namespace for a bare pod), never for dry-run; the
// metrics count each outcome per group and reason.
func TestEventsAndMetricsPerGroup(t *testing.T) {
	owned := func(group string, extra string) []byte {
		return []byte(fmt.Sprintf(`{"metadata":{"generateName":"cassandra-","labels":{"peergroup.dev/group":%q},%s"ownerReferences":[{"apiVersion":"apps/v1","kind":"StatefulSet","name":"cassandra","uid":"sts-uid","controller":true}]},"spec":{"containers":[{"name":"c","image":"x"}]}}`, group, extra))
	}
	bare := []byte(`{"metadata":{"name":"lonely","labels":{"peergroup.dev/group":"Bad"}},"spec":{"containers":[{"name":"c","image":"x"}]}}`)
	nonHeadless := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "web"}, Spec: corev1.ServiceSpec{ClusterIP: "10.0.0.7"}}

	rec := &fakeRecorder{}
	reg := prometheus.NewRegistry()
	h := testHandler(staticNamespaces(nil), newFakeClient(nonHeadless))
	h.Metrics = NewMetrics(reg)
	h.Events = &Events{Recorder: rec}

	steps := []struct {
		raw    []byte
		dryRun bool
	}{
		{owned("cassandra", ""), true},  // dry-run: injected, no Service, no event
		{owned("cassandra", ""), false}, // creates the Service: event
		{owned("cassandra", ""), false}, // cache hit: no event
		{owned("web", ""), false},       // non-headless: denied, event
		{owned("cassandra", `"annotations":{"peergroup.dev/seed-count":"0"},`), false}, // bad tuning: denied, event
		{bare, false}, // invalid name on a bare pod: event on the namespace
		{[]byte(`{"metadata":{"name":"plain"},"spec":{"containers":[{"name":"c","image":"x"}]}}`), false}, // not a member
	}
	for _, s := range steps {
		handle(h, podRequest(s.raw, admissionv1.Create, s.dryRun))
	}

	want := []struct{ kind, name, reason, note string }{
		{"StatefulSet", "cassandra", EventServiceCreated, "created headless Service db/cassandra for peer group cassandra, before admitting pod cassandra-<generated>"},
		{"StatefulSet", "cassandra", EventPodDenied, "Service db/web exists and is not headless"},
		{"StatefulSet", "cassandra", EventPodDenied, `annotation peergroup.dev/seed-count value "0" is invalid`},
		{"Namespace", "db", EventPodDenied, `pod lonely denied: peergroup: pod label peergroup.dev/group value "Bad" is invalid`},
	}
	if len(rec.events) != len(want) {
		t.Fatalf("%d events, want %d: %+v", len(rec.events), len(want), rec.events)
	}
	for i, w := range want {
		e := rec.events[i]
		if e.regarding.Kind != w.kind || e.regarding.Name != w.name || e.reason != w.reason || !strings.Contains(e.note, w.note) {
			t.Errorf("event %d: %s %s %s %q, want %s %s %s containing %q", i, e.regarding.Kind, e.regarding.Name, e.reason, e.note, w.kind, w.name, w.reason, w.note)
		}
		if w.kind == "StatefulSet" && (e.regarding.UID != "sts-uid" || e.regarding.Namespace != "db") {
			t.Errorf("event %d regarding %+v: want the controller's UID in the pod's namespace", i, e.regarding)
		}
	}

	counters := []struct {
		c    prometheus.Collector
		want float64
	}{
		// The create and the cache hit of an identical pod; the dry-run
		// came before the group had a Service, so it counts under the
		// fixed bucket (no namespace, no group), as do the denials that
		// never reached the Service.
		{h.Metrics.injected.WithLabelValues("db", "cassandra"), 2},
		{h.Metrics.injected.WithLabelValues("", ""), 1},
		{h.Metrics.skipped.WithLabelValues("", "", string(admit.ReasonNotMember)), 1},
		{h.Metrics.denied.WithLabelValues("db", "web", string(admit.ReasonServiceNotHeadless)), 1},
		{h.Metrics.denied.WithLabelValues("", "", string(admit.ReasonInvalidTuning)), 1},
		{h.Metrics.denied.WithLabelValues("", "", string(admit.ReasonInvalidName)), 1},
		{h.Metrics.servicesCreated.WithLabelValues("db", "cassandra"), 1},
	}
	for i, c := range counters {
		if got := testutil.ToFloat64(c.c); got != c.want {
			t.Errorf("counter %d = %v, want %v", i, got, c.want)
		}
	}
	for _, series := range []struct {
		c    prometheus.Collector
		want int
	}{{h.Metrics.injected, 2}, {h.Metrics.denied, 3}, {h.Metrics.skipped, 1}, {h.Metrics.servicesCreated, 1}} {
		if n := testutil.CollectAndCount(series.c); n != series.want {
			t.Errorf("%d series, want %d: no group becomes a label before its Service exists", n, series.want)
		}
	}
	if n := testutil.CollectAndCount(h.Metrics.duration); n != 3 {
		t.Errorf("duration histogram has %d series, want one per result seen (injected, denied, skipped)", n)
	}
}

// A failed Service create is reported as such, with the cause.
func TestEventOnServiceCreateFailure(t *testing.T) {
	rec := &fakeRecorder{}
	h := testHandler(staticNamespaces(nil), failingCreates(apierrors.NewForbidden(schema.GroupResource{Resource: "services"}, "cassandra", errors.New("exceeded quota: services=0"))))
	h.Events = &Events{Recorder: rec}
	raw := []byte(`{"metadata":{"name":"p","labels":{"peergroup.dev/group":"cassandra"}},"spec":{"containers":[{"name":"c","image":"x"}]}}`)
	req := podRequest(raw, admissionv1.Create, false)
	req.DryRun = ptr.To(false)
	handle(h, req)
	if len(rec.events) != 1 || rec.events[0].reason != EventServiceCreateFailed || rec.events[0].kind != corev1.EventTypeWarning || !strings.Contains(rec.events[0].note, "exceeded quota") {
		t.Errorf("events %+v", rec.events)
	}
}

// An Event's note stays within the API's 1024 bytes whatever the pod's
// name and the message, and ends on a character boundary.
func TestEventNoteBounded(t *testing.T) {
	rec := &fakeRecorder{}
	e := &Events{Recorder: rec}
	pod := &corev1.Pod{}
	pod.Name = strings.Repeat("n", 253)
	e.record(context.Background(), "db", admit.Decision{Verdict: admit.VerdictDenied, Message: strings.Repeat("é", 2000), Pod: pod})
	if len(rec.events) != 1 {
		t.Fatalf("%d events", len(rec.events))
	}
	if note := rec.events[0].note; len(note) > 1024 || !utf8.ValidString(note) {
		t.Errorf("%d-byte note (valid UTF-8: %v)", len(note), utf8.ValidString(note))
	}
}
