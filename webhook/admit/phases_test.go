package admit

import (
	"context"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/contract"
)

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
