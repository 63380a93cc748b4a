package admit

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/peergroup/peergroup/contract"
)

// Under a LimitRange the injected init container would break, the pod is
// denied naming the LimitRange and the chart value, before its Service is
// created; one it fits admits the pod.
func TestLimitRanges(t *testing.T) {
	q := resource.MustParse
	limitRange := func(item corev1.LimitRangeItem) corev1.LimitRange {
		item.Type = corev1.LimitTypeContainer
		return corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "small"}, Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{item}}}
	}
	// With init-first, the user's init container (this CPU limit) is last.
	userCPU := map[string]string{
		"init-first: max cpu below seed-discovery's limit, the user's container fits":        "50m",
		"init-first: seed-discovery fits, the user's container does not (not ours to judge)": "1",
	}
	cases := []struct {
		name string
		item corev1.LimitRangeItem
		want string // "" admits
	}{
		{"init-first: max cpu below seed-discovery's limit, the user's container fits", corev1.LimitRangeItem{Max: corev1.ResourceList{corev1.ResourceCPU: q("50m")}}, "cpu limit must be at most 50m (limit 100m)"},
		{"init-first: seed-discovery fits, the user's container does not (not ours to judge)", corev1.LimitRangeItem{Max: corev1.ResourceList{corev1.ResourceCPU: q("200m")}}, ""},
		{"max cpu below the init container's limit", corev1.LimitRangeItem{Max: corev1.ResourceList{corev1.ResourceCPU: q("50m")}}, "cpu limit must be at most 50m (limit 100m)"},
		{"min memory above its request", corev1.LimitRangeItem{Min: corev1.ResourceList{corev1.ResourceMemory: q("64Mi")}}, "memory must be at least 64Mi (request 16Mi)"},
		{"limit/request ratio", corev1.LimitRangeItem{MaxLimitRequestRatio: corev1.ResourceList{corev1.ResourceCPU: q("4")}}, "cpu limit/request ratio must be at most 4 (100m/10m)"},
		{"a resource the container does not set, with no default", corev1.LimitRangeItem{Min: corev1.ResourceList{corev1.ResourceEphemeralStorage: q("1Mi")}}, "ephemeral-storage must be at least 1Mi (no request)"},
		// As stored by the API server, which defaults defaultRequest from
		// min and default from max: LimitRanger fills the container's
		// missing values from them, and the pod is admitted.
		{"a resource the container does not set, defaulted", corev1.LimitRangeItem{
			Min: corev1.ResourceList{corev1.ResourceEphemeralStorage: q("1Mi")}, Max: corev1.ResourceList{corev1.ResourceEphemeralStorage: q("1Gi")},
			DefaultRequest: corev1.ResourceList{corev1.ResourceEphemeralStorage: q("1Mi")}, Default: corev1.ResourceList{corev1.ResourceEphemeralStorage: q("1Gi")},
		}, ""},
		{"max at sub-milli precision rounds as LimitRanger does", corev1.LimitRangeItem{Max: corev1.ResourceList{corev1.ResourceCPU: q("99.9999m")}}, ""},
		{"a max too large for milli-units compares in units", corev1.LimitRangeItem{Max: corev1.ResourceList{corev1.ResourceMemory: q("10Pi")}}, ""},
		{"fits", corev1.LimitRangeItem{Max: corev1.ResourceList{corev1.ResourceCPU: q("1"), corev1.ResourceMemory: q("1Gi")}, Min: corev1.ResourceList{corev1.ResourceCPU: q("10m")}, MaxLimitRequestRatio: corev1.ResourceList{corev1.ResourceCPU: q("10")}}, ""},
		{"a Pod item the pod breaks without the injection is not ours to judge", corev1.LimitRangeItem{Type: corev1.LimitTypePod}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lr := limitRange(tc.item)
			if tc.item.Type == corev1.LimitTypePod {
				lr.Spec.Limits[0].Type = corev1.LimitTypePod
				lr.Spec.Limits[0].Max = corev1.ResourceList{corev1.ResourceCPU: q("1m")}
			}
			pod := twoContainerPod()
			pod.Labels = map[string]string{contract.GroupLabel: "cassandra"}
			if cpu, ok := userCPU[tc.name]; ok {
				// seed-discovery first: the check is of it, not of the
				// user's init container now last.
				pod.Annotations = map[string]string{contract.InitFirstAnnotation: "true"}
				pod.Spec.InitContainers = []corev1.Container{{Name: "migrate", Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: q(cpu)}}}}
			}
			services := &staticServices{Known: true}
			d := (&Decider{Config: DefaultConfig(), Namespaces: staticNamespaces(nil), Services: services, LimitRanges: staticLimitRanges{lr}}).Decide(context.Background(), Request{
				Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: "db", Operation: "CREATE", DryRun: true, Pod: pod,
			})
			if tc.want == "" {
				if d.Verdict != VerdictInjected {
					t.Fatalf("%s, want injected", summary(d))
				}
				return
			}
			if d.Verdict != VerdictDenied || d.Reason != ReasonLimitRange || !strings.Contains(d.Message, tc.want) ||
				!strings.Contains(d.Message, "LimitRange db/small would reject the injected seed-discovery init container") || !strings.Contains(d.Message, "seedDiscovery.resources") {
				t.Errorf("%s, want denied naming the LimitRange, %q and the chart value", summary(d), tc.want)
			}
			if services.Desired != nil || d.Service != ServiceNotReached {
				t.Error("the Service was reached for a pod the LimitRange rejects")
			}
		})
	}
}

// LimitRanger fills the defaults of every LimitRange before it checks any,
// and the API server sets a missing request from the limit first: the
// order of the LimitRanges, and a request left unset, change nothing.
func TestLimitRangeDefaultsBeforeChecks(t *testing.T) {
	q := resource.MustParse
	ratio := corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "a"}, Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
		Type: corev1.LimitTypeContainer, MaxLimitRequestRatio: corev1.ResourceList{corev1.ResourceEphemeralStorage: q("2")},
	}}}}
	defaults := corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "b"}, Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
		Type: corev1.LimitTypeContainer, Default: corev1.ResourceList{corev1.ResourceEphemeralStorage: q("1Gi")}, DefaultRequest: corev1.ResourceList{corev1.ResourceEphemeralStorage: q("1Gi")},
	}}}}
	ic := &corev1.Container{Resources: DefaultConfig().Resources}
	for _, order := range [][]corev1.LimitRange{{ratio, defaults}, {defaults, ratio}} {
		if err := checkLimitRanges(ic, order); err != nil {
			t.Errorf("order %s, %s: %v", order[0].Name, order[1].Name, err)
		}
	}
	limitOnly := &corev1.Container{Resources: corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: q("10m")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: q("100m"), corev1.ResourceMemory: q("32Mi")},
	}}
	memRatio := corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "m"}, Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
		Type: corev1.LimitTypeContainer, MaxLimitRequestRatio: corev1.ResourceList{corev1.ResourceMemory: q("2")},
		Default: corev1.ResourceList{corev1.ResourceMemory: q("8Mi")}, DefaultRequest: corev1.ResourceList{corev1.ResourceMemory: q("8Mi")},
	}}}}
	if err := checkLimitRanges(limitOnly, []corev1.LimitRange{memRatio}); err != nil {
		t.Errorf("a request taken from the limit: %v", err)
	}
}

// Pod-type LimitRanges judge the pod's total, where the refreshing
// sidecar adds to the app containers and a plain init container counts at
// its peak: the case (max memory 256Mi per pod, an app at 256Mi)
// is denied naming the LimitRange with refresh, and admitted without it;
// a pod over the max before injection is the API server's to refuse.
func TestPodLimitRanges(t *testing.T) {
	q := resource.MustParse
	lr := corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "per-pod"}, Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
		Type: corev1.LimitTypePod, Max: corev1.ResourceList{corev1.ResourceCPU: q("1"), corev1.ResourceMemory: q("256Mi")},
	}}}}
	ratio := corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "ratio"}, Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
		Type: corev1.LimitTypePod, MaxLimitRequestRatio: corev1.ResourceList{corev1.ResourceCPU: q("1.5")},
	}}}}
	app := func(cpu, memory string, refresh bool) *corev1.Pod {
		p := memberPod()
		p.Spec.Containers[0].Resources = corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: q(cpu), corev1.ResourceMemory: q(memory)},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: q(cpu), corev1.ResourceMemory: q(memory)},
		}
		if refresh {
			p.Annotations = map[string]string{contract.Refresh.Annotation: "30s"}
		}
		return p
	}
	for _, tc := range []struct {
		name   string
		pod    *corev1.Pod
		ranges []corev1.LimitRange
		want   string // "" admits
	}{
		{"the sidecar adds to the app: over the pod's max", app("500m", "256Mi", true), []corev1.LimitRange{lr},
			"LimitRange db/per-pod (type Pod) would reject the pod once the injected seed-discovery container is added: memory limit must be at most 256Mi (limit 288Mi)"},
		{"an init container counts at its peak: fits", app("500m", "256Mi", false), []corev1.LimitRange{lr}, ""},
		{"over the max before injection: the API server's to refuse", app("2", "1Gi", true), []corev1.LimitRange{lr}, ""},
		// 1 + 0.1 limit over 1 + 0.01 request stays under 1.5 without the
		// sidecar; the sidecar's 100m/10m brings the ratio to 1.089: fits.
		{"a ratio the sidecar keeps", app("1", "64Mi", true), []corev1.LimitRange{ratio}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := (&Decider{Config: DefaultConfig(), Namespaces: staticNamespaces(nil), Services: &staticServices{Known: true}, LimitRanges: staticLimitRanges(tc.ranges)}).Decide(context.Background(), Request{
				Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: "db", Operation: "CREATE", DryRun: true, Pod: tc.pod,
			})
			if tc.want == "" {
				if d.Verdict != VerdictInjected {
					t.Fatalf("%s, want injected", summary(d))
				}
				return
			}
			if d.Verdict != VerdictDenied || d.Reason != ReasonLimitRange || !strings.Contains(d.Message, tc.want) || !strings.Contains(d.Message, "seedDiscovery.resources") {
				t.Errorf("%s, want denied %q", summary(d), tc.want)
			}
		})
	}
}

// maxLimitRequestRatio compares at milli precision, as LimitRanger does: a
// ratio of 1.5 refuses 1.8 (rounding the bound to units would let 2 pass).
func TestLimitRequestRatioBelowTwo(t *testing.T) {
	q := resource.MustParse
	lr := corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "r"}, Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
		Type: corev1.LimitTypeContainer, MaxLimitRequestRatio: corev1.ResourceList{corev1.ResourceCPU: q("1.5")},
	}}}}
	for limit, want := range map[string]string{"180m": "cpu limit/request ratio must be at most 1500m (180m/100m)", "150m": ""} {
		ic := &corev1.Container{Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: q("100m")}, Limits: corev1.ResourceList{corev1.ResourceCPU: q(limit)},
		}}
		err := checkLimitRanges(ic, []corev1.LimitRange{lr})
		if (want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), want) {
			t.Errorf("limit %s: %v, want %q", limit, err, want)
		}
	}
}
