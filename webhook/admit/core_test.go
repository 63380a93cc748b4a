package admit

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/contract"
)

// Requests that reach Decide without a decoded pod: the raw object is
// decoded, and a missing or broken one is a bad request (400).
func TestDecideDecodesRaw(t *testing.T) {
	d := &Decider{Config: DefaultConfig(), Namespaces: staticNamespaces(nil), Services: &staticServices{}}
	req := func(raw string) Request {
		return Request{Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: "db", Operation: admissionv1.Create, DryRun: true, Raw: []byte(raw)}
	}
	if got := d.Decide(context.Background(), req(`{"metadata":{"labels":{"peergroup.dev/group":"g"}},"spec":{"containers":[{"name":"c"}]}}`)); got.Verdict != VerdictInjected || !got.Allowed() {
		t.Errorf("raw pod: %s", summary(got))
	}
	for raw, want := range map[string]string{"": "admission request has no object", "{": "decode pod"} {
		got := d.Decide(context.Background(), req(raw))
		if got.Verdict != VerdictErrored || got.Reason != ReasonBadRequest || got.Code != 400 || got.Allowed() || !strings.Contains(got.Message, want) {
			t.Errorf("raw %q: %s (code %d)", raw, summary(got), got.Code)
		}
	}
	if got := d.Decide(context.Background(), Request{Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Operation: admissionv1.Delete}); got.Verdict != VerdictSkipped || got.Reason != ReasonNotCreate || !got.Allowed() {
		t.Errorf("DELETE: %s", summary(got))
	}
	if got := d.Decide(context.Background(), Request{Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, SubResource: "status", Operation: admissionv1.Create}); got.Reason != ReasonBadRequest {
		t.Errorf("subresource: %s", summary(got))
	}
}

type failingServices struct{ err error }

func (f failingServices) Ensure(context.Context, client.ObjectKey, func() *corev1.Service, func(*corev1.Service) error, bool) (ServiceState, error) {
	return ServiceFailed, f.err
}

// A Service that cannot be ensured refuses the pod with the cause; a
// deadline says it was the webhook's budget.
func TestServiceFailures(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{context.DeadlineExceeded, "within the webhook's budget"},
		{fmt.Errorf("quota exceeded"), "cannot ensure headless Service db/g for group g: quota exceeded"},
	} {
		d := (&Decider{Config: DefaultConfig(), Namespaces: staticNamespaces(nil), Services: failingServices{tc.err}}).Decide(context.Background(), Request{
			Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: "db", Operation: admissionv1.Create,
			Pod: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{contract.GroupLabel: "g"}}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c"}}}},
		})
		if d.Verdict != VerdictErrored || d.Reason != ReasonServiceCreateFailed || d.Code != 500 || d.Service != ServiceFailed || !strings.Contains(d.Message, tc.want) || d.GroupInCluster() {
			t.Errorf("%v: %s", tc.err, summary(d))
		}
	}
}

// The cache holds at most maxInitContainerEntries encodings, tracks the
// largest, and keys on everything that varies, fieldRefs included.
func TestInitContainerCacheBounds(t *testing.T) {
	var nilCache *InitContainerCache
	if nilCache.Len() != 0 || nilCache.largest() != 0 {
		t.Error("a nil cache holds something")
	}
	cache := &InitContainerCache{}
	longest := 0
	for i := range maxInitContainerEntries + 10 {
		ic := corev1.Container{Name: contract.InitContainerName, Image: "x" + strings.Repeat("y", i%50) + fmt.Sprint(i)}
		b := &bytes.Buffer{}
		if err := cache.write(b, ic); err != nil {
			t.Fatal(err)
		}
		if i < maxInitContainerEntries {
			longest = max(longest, b.Len())
		}
	}
	if cache.Len() != maxInitContainerEntries || cache.largest() != longest {
		t.Errorf("%d entries (max %d), largest %d (want %d)", cache.Len(), maxInitContainerEntries, cache.largest(), longest)
	}
	withRef := func(path string) *corev1.Container {
		return &corev1.Container{Name: contract.InitContainerName, Env: []corev1.EnvVar{{Name: "A", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}}}
	}
	if initContainerKey(withRef("metadata.name")) == initContainerKey(withRef("metadata.namespace")) {
		t.Error("fieldRef paths are not part of the key")
	}
	if initContainerKey(withRef("metadata.name")) == initContainerKey(&corev1.Container{Name: contract.InitContainerName, Env: []corev1.EnvVar{{Name: "A"}}}) {
		t.Error("a fieldRef and an empty value share a key")
	}
}

// LimitRanger's other branches: a request above max, a limit below min,
// a ratio with no limit.
func TestLimitRangeBranches(t *testing.T) {
	q := resource.MustParse
	r := corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: q("200m")}, Limits: corev1.ResourceList{corev1.ResourceCPU: q("100m"), corev1.ResourceMemory: q("8Mi")}}
	for want, item := range map[string]corev1.LimitRangeItem{
		"cpu request must be at most 150m (request 200m)":                                   {Max: corev1.ResourceList{corev1.ResourceCPU: q("150m")}},
		"memory must be at least 16Mi (no request)":                                         {Min: corev1.ResourceList{corev1.ResourceMemory: q("16Mi")}},
		"cpu must be at least 150m (limit 100m)":                                            {Min: corev1.ResourceList{corev1.ResourceCPU: q("150m")}},
		"memory limit/request ratio must be at most 2 (request and limit must both be set)": {MaxLimitRequestRatio: corev1.ResourceList{corev1.ResourceMemory: q("2")}},
		"ephemeral-storage limit must be at most 1Gi (no limit)":                            {Max: corev1.ResourceList{corev1.ResourceEphemeralStorage: q("1Gi")}},
	} {
		if got := limitRangeProblem(&r, item); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	if got := limitRangeProblem(&r, corev1.LimitRangeItem{Max: corev1.ResourceList{corev1.ResourceCPU: q("200m")}, MaxLimitRequestRatio: corev1.ResourceList{corev1.ResourceCPU: q("1")}}); got != "" {
		t.Errorf("within bounds: %q", got)
	}
}

// The injection flags: defaults, parsing, last wins, validation.
func TestConfigFlags(t *testing.T) {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	finish := RegisterFlags(fs, &cfg)
	if err := fs.Parse([]string{"--seed-discovery-command=/bin/sd  --x", "--excluded-namespaces= a, ,b ", "--seed-discovery-limits=cpu=1,memory=2Mi", "--seed-discovery-image-pull-policy=Always"}); err != nil {
		t.Fatal(err)
	}
	finish()
	if fmt.Sprint(cfg.SeedDiscoveryCommand) != "[/bin/sd --x]" || fmt.Sprint(cfg.ExcludedNamespaces) != "[a b]" || cfg.ImagePullPolicy != corev1.PullAlways || cfg.Resources.Limits.Memory().String() != "2Mi" {
		t.Errorf("%+v", cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
	if got := (*resourceListFlag)(&cfg.Resources.Limits).String(); got != "cpu=1,memory=2Mi" {
		t.Errorf("flag value %q", got)
	}
	bad := Config{ImagePullPolicy: "Sometimes", ClusterDomain: "cluster..local"}
	err := bad.Validate()
	for _, want := range []string{"--seed-discovery-image must not be empty", "--seed-discovery-command must not be empty", `"Sometimes" must be Always`, "--cluster-domain"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v, want %q", err, want)
		}
	}
	if !cfg.Excluded("b") || cfg.Excluded("c") {
		t.Error("Excluded")
	}
}

// GroupInCluster: a Service this admission created makes the group real;
// an existing one only when it bears the group's own name, not one any
// pod may name with peergroup.dev/service (which would let any number of
// made-up group names through one Service).
func TestGroupInCluster(t *testing.T) {
	for _, tc := range []struct {
		state   ServiceState
		service string
		want    bool
	}{
		{ServiceCreated, "cassandra", true},
		{ServiceCreated, "other", true},
		{ServiceExists, "cassandra", true},
		{ServiceExists, "shared", false},
		{ServiceNotHeadless, "cassandra", true},
		{ServiceNotHeadless, "shared", false},
		{ServiceMissing, "cassandra", false},
		{ServiceFailed, "cassandra", false},
		{ServiceUnknown, "cassandra", false},
		{ServiceNotReached, "cassandra", false},
	} {
		d := Decision{Group: "cassandra", ServiceName: tc.service, Service: tc.state}
		if got := d.GroupInCluster(); got != tc.want {
			t.Errorf("Service %s named %s: GroupInCluster = %v, want %v", tc.state, tc.service, got, tc.want)
		}
	}
}
