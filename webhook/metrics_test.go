package webhook

import (
	"context"
	"fmt"
	goruntime "runtime"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/peergroup/peergroup/contract"
)

// noServices is a Service cache that holds nothing.
type noServices struct{}

func (noServices) Get(_ context.Context, key client.ObjectKey, _ client.Object, _ ...client.GetOption) error {
	return apierrors.NewNotFound(corev1.Resource("services"), key.Name)
}

func (noServices) List(context.Context, client.ObjectList, ...client.ListOption) error { return nil }

// Any user who may create pods can send dry-run pods with any group label:
// 50,000 distinct invalid and 50,000 distinct valid groups must leave the
// number of metric series and the heap where they were, and no answer
// may repeat a huge value.
func TestDistinctGroupsDoNotGrowMetrics(t *testing.T) {
	// A logger of its own: controller-runtime's default one keeps every
	// derived logger until a real one is set, which the server does first.
	ctx := logf.IntoContext(context.Background(), logr.Discard())
	reg := prometheus.NewRegistry()
	h := testHandler(staticNamespaces(nil), nil)
	h.Decider.Services = &ClusterServiceEnsurer{Cache: noServices{}, Live: noServices{}}
	h.Metrics = NewMetrics(reg)
	admitGroup := func(group string) admission.Response {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Labels: map[string]string{contract.GroupLabel: group}}}
		pod.Spec.Containers = []corev1.Container{{Name: "c", Image: "x"}}
		return h.Handle(ctx, admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			UID: "u", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: "db",
			Operation: admissionv1.Create, DryRun: ptr.To(true), Object: runtime.RawExtension{Object: pod},
		}})
	}
	// Warm up: the first admissions of each kind create the fixed series.
	admitGroup("Warm-up")
	admitGroup("warm-up")
	series := func() int {
		return testutil.CollectAndCount(h.Metrics.injected) + testutil.CollectAndCount(h.Metrics.denied) +
			testutil.CollectAndCount(h.Metrics.skipped) + testutil.CollectAndCount(h.Metrics.admissions)
	}
	before, heapBefore := series(), heap()
	// A request that did not come through the API server may name any
	// namespace: neither is that a label value.
	for i := range 500 {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Labels: map[string]string{contract.GroupLabel: "g"}}}
		pod.Spec.Containers = []corev1.Container{{Name: "c", Image: "x"}}
		h.Handle(ctx, admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			UID: "u", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: fmt.Sprintf("forged-%d", i),
			Operation: admissionv1.Create, DryRun: ptr.To(true), Object: runtime.RawExtension{Object: pod},
		}})
	}
	const n = 50000
	for i := range n {
		if resp := admitGroup(fmt.Sprintf("Invalid-%055d", i)); resp.Allowed {
			t.Fatal("an invalid group was admitted")
		}
		if resp := admitGroup(fmt.Sprintf("valid-%056d", i)); !resp.Allowed {
			t.Fatalf("a valid group was refused: %v", resp.Result)
		}
	}
	if after := series(); after != before {
		t.Errorf("%d metric series after %d distinct groups, %d before: a group may become a label only once its Service exists", after, 2*n, before)
	}
	if cached := h.Decider.InitContainers.Len(); cached != 0 {
		t.Errorf("%d init containers cached for groups that have no Service", cached)
	}
	if grown := heap() - heapBefore; grown > 8<<20 {
		t.Errorf("heap grew by %d MiB over %d distinct groups", grown>>20, 2*n)
	}

	huge := "X" + strings.Repeat("a", 100<<10)
	resp := admitGroup(huge)
	if resp.Allowed || len(resp.Result.Message) > 1024 || !strings.Contains(resp.Result.Message, "(102401 bytes)") {
		t.Errorf("denial of a 100 KiB group: allowed=%v, %d-byte message: %.300s", resp.Allowed, len(resp.Result.Message), resp.Result.Message)
	}
}

func heap() int64 {
	goruntime.GC()
	var m goruntime.MemStats
	goruntime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// The service annotation may name any existing Service: distinct group
// names through one existing Service are not label values either.
func TestGroupsThroughOneServiceDoNotGrowMetrics(t *testing.T) {
	ctx := logf.IntoContext(context.Background(), logr.Discard())
	existing := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "kubernetes"}, Spec: corev1.ServiceSpec{ClusterIP: "10.0.0.1"}}
	c := newFakeClient(existing)
	h := testHandler(staticNamespaces(nil), c)
	h.Metrics = NewMetrics(prometheus.NewRegistry())
	for i := range 200 {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Labels: map[string]string{contract.GroupLabel: fmt.Sprintf("g%d", i)}, Annotations: map[string]string{contract.ServiceAnnotation: "kubernetes"}}}
		pod.Spec.Containers = []corev1.Container{{Name: "c", Image: "x"}}
		h.Handle(ctx, admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			UID: "u", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: "db",
			Operation: admissionv1.Create, DryRun: ptr.To(true), Object: runtime.RawExtension{Object: pod},
		}})
	}
	if n := testutil.CollectAndCount(h.Metrics.denied); n != 1 {
		t.Errorf("%d denied series after 200 group names through one Service, want 1", n)
	}
}
