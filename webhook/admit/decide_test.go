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
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/contract"
)

// A request without a pod is a bad request (400); a DELETE is never
// looked at, a subresource is refused.
func TestDecideRequestChecks(t *testing.T) {
	d := &Decider{Config: DefaultConfig(), Namespaces: staticNamespaces(nil), Services: &staticServices{}}
	kind := metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	if got := d.Decide(context.Background(), Request{Kind: kind, Namespace: "db", Operation: admissionv1.Create, DryRun: true}); got.Verdict != VerdictErrored ||
		got.Reason != ReasonBadRequest || got.Code != 400 || got.Allowed() || !strings.Contains(got.Message, "admission request has no object") {
		t.Errorf("no pod: %s (code %d)", summary(got), got.Code)
	}
	if got := d.Decide(context.Background(), Request{Kind: kind, Operation: admissionv1.Delete}); got.Verdict != VerdictSkipped || got.Reason != ReasonNotCreate || !got.Allowed() {
		t.Errorf("DELETE: %s", summary(got))
	}
	if got := d.Decide(context.Background(), Request{Kind: kind, SubResource: "status", Operation: admissionv1.Create}); got.Reason != ReasonBadRequest {
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

// recordingServices is a cluster of Services that records what is
// created.
type recordingServices struct {
	existing map[client.ObjectKey]*corev1.Service
	created  []*corev1.Service
}

func (r *recordingServices) Ensure(_ context.Context, key client.ObjectKey, desired func() *corev1.Service, usable func(*corev1.Service) error, dryRun bool) (ServiceState, error) {
	if have, ok := r.existing[key]; ok {
		return ServiceExists, usable(have)
	}
	if dryRun {
		return ServiceMissing, nil
	}
	svc := desired()
	r.created = append(r.created, svc)
	if r.existing == nil {
		r.existing = map[client.ObjectKey]*corev1.Service{}
	}
	r.existing[key] = svc
	return ServiceCreated, nil
}

type phase bool

func (p phase) InForce() bool { return bool(p) }

func podRequest(pod *corev1.Pod, dryRun bool) Request {
	return Request{Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: "db", Operation: admissionv1.Create, DryRun: dryRun, Pod: pod}
}

// The mutating phase creates a missing Service only while no validating
// phase is in force; then it leaves it to Validate and still injects the
// pod. A dry run never creates, and an existing Service is checked in
// either case.
func TestMutatingPhaseLeavesTheServiceToValidation(t *testing.T) {
	for _, tc := range []struct {
		name        string
		validation  ValidationPhase
		dryRun      bool
		wantState   ServiceState
		wantCreated int
	}{
		{"no validating phase", nil, false, ServiceCreated, 1},
		{"validating phase not in force", phase(false), false, ServiceCreated, 1},
		{"validating phase in force", phase(true), false, ServiceDeferred, 0},
		{"dry run, validating phase in force", phase(true), true, ServiceMissing, 0},
		{"dry run, no validating phase", nil, true, ServiceMissing, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svcs := &recordingServices{}
			d := &Decider{Config: DefaultConfig(), Namespaces: staticNamespaces(nil), Services: svcs, Validation: tc.validation}
			got := d.Decide(context.Background(), podRequest(memberPod(), tc.dryRun))
			if got.Verdict != VerdictInjected || got.Service != tc.wantState || len(svcs.created) != tc.wantCreated {
				t.Errorf("%s; created %d, want %s and %d", summary(got), len(svcs.created), tc.wantState, tc.wantCreated)
			}
		})
	}
	// An existing Service that is not headless denies the pod in the
	// mutating phase already, whether or not the validating phase is in
	// force.
	notHeadless := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "cassandra", Namespace: "db"}, Spec: corev1.ServiceSpec{ClusterIP: "10.0.0.1"}}
	svcs := &recordingServices{existing: map[client.ObjectKey]*corev1.Service{{Namespace: "db", Name: "cassandra"}: notHeadless}}
	d := &Decider{Config: DefaultConfig(), Namespaces: staticNamespaces(nil), Services: svcs, Validation: phase(true)}
	if got := d.Decide(context.Background(), podRequest(memberPod(), false)); got.Verdict != VerdictDenied || got.Reason != ReasonServiceNotHeadless {
		t.Errorf("not headless, validating phase in force: %s", summary(got))
	}
}

// The validating phase creates the missing Service of the pod as the API
// server is about to store it (mutated), the same Service the mutating
// phase would have created; a dry run creates nothing; what is not a
// member pod is allowed untouched.
func TestValidatingPhaseCreatesTheService(t *testing.T) {
	svcs := &recordingServices{}
	d := &Decider{Config: DefaultConfig(), Namespaces: staticNamespaces(nil), Services: svcs, Validation: phase(true)}
	mutated := d.Decide(context.Background(), podRequest(memberPod(), false))
	if mutated.Mutated == nil || len(svcs.created) != 0 {
		t.Fatalf("mutating phase: %s, created %d", summary(mutated), len(svcs.created))
	}
	if got := d.Validate(context.Background(), podRequest(mutated.Mutated, true)); !got.Allowed() || got.Service != ServiceMissing || len(svcs.created) != 0 {
		t.Errorf("dry run: %s, created %d", summary(got), len(svcs.created))
	}
	got := d.Validate(context.Background(), podRequest(mutated.Mutated, false))
	if !got.Allowed() || got.Service != ServiceCreated || got.Group != "cassandra" || len(svcs.created) != 1 || len(got.Patch) != 0 {
		t.Fatalf("validating phase: %s, created %d", summary(got), len(svcs.created))
	}
	if want := DesiredService(memberPod(), "db", mustResolve(t, memberPod())); !equality.Semantic.DeepEqual(svcs.created[0], want) {
		t.Errorf("Service created from the mutated pod differs from the one built from the pod as sent:\n got %+v\nwant %+v", svcs.created[0], want)
	}
	if got := d.Validate(context.Background(), podRequest(mutated.Mutated, false)); !got.Allowed() || got.Service != ServiceExists || len(svcs.created) != 1 {
		t.Errorf("second pod: %s, created %d", summary(got), len(svcs.created))
	}

	outsider := memberPod()
	delete(outsider.Labels, contract.GroupLabel)
	optedOut := memberPod()
	optedOut.Labels[contract.InjectLabel] = "false"
	excluded := podRequest(memberPod(), false)
	excluded.Namespace = "kube-system"
	for name, req := range map[string]Request{
		"not a member": podRequest(outsider, false),
		"opted out":    podRequest(optedOut, false),
		"excluded":     excluded,
		"not a CREATE": {Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: "db", Operation: admissionv1.Update, Pod: memberPod()},
	} {
		before := len(svcs.created)
		svcs.existing = nil
		if got := d.Validate(context.Background(), req); got.Verdict != VerdictSkipped || len(svcs.created) != before {
			t.Errorf("%s: %s, created %d", name, summary(got), len(svcs.created)-before)
		}
	}
}

// The validating phase refuses what would make a wrong or failed Service,
// as the mutating phase does, and what is not a pod.
func TestValidatingPhaseRefusals(t *testing.T) {
	notHeadless := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "cassandra", Namespace: "db"}, Spec: corev1.ServiceSpec{ClusterIP: "10.0.0.1"}}
	badPort := memberPod()
	badPort.Spec.Containers[0].Ports = append(badPort.Spec.Containers[0].Ports, corev1.ContainerPort{Name: "Not_A_Name", ContainerPort: 1})
	for _, tc := range []struct {
		name   string
		svcs   ServiceEnsurer
		req    Request
		reason Reason
		want   string
	}{
		{"not headless", &recordingServices{existing: map[client.ObjectKey]*corev1.Service{{Namespace: "db", Name: "cassandra"}: notHeadless}}, podRequest(memberPod(), false), ReasonServiceNotHeadless, "not headless"},
		{"create fails", failingServices{context.DeadlineExceeded}, podRequest(memberPod(), false), ReasonServiceCreateFailed, "within the webhook's budget"},
		{"invalid Service input", &recordingServices{}, podRequest(badPort, false), ReasonInvalidPod, "Not_A_Name"},
		{"not a pod", &recordingServices{}, Request{Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Service"}, Operation: admissionv1.Create}, ReasonBadRequest, "only v1 Pod"},
	} {
		d := &Decider{Config: DefaultConfig(), Namespaces: staticNamespaces(nil), Services: tc.svcs}
		got := d.Validate(context.Background(), tc.req)
		if got.Allowed() || got.Reason != tc.reason || !strings.Contains(got.Message, tc.want) {
			t.Errorf("%s: %s", tc.name, summary(got))
		}
	}
}

func mustResolve(t *testing.T, pod *corev1.Pod) Membership {
	t.Helper()
	m, err := ResolveGroup(pod, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
