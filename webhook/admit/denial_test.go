package admit

import (
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/contract"
)

type failingNamespaces struct{}

func (failingNamespaces) Labels(context.Context, string) (map[string]string, error) {
	return nil, errors.New("API server unreachable")
}
func (f failingNamespaces) FreshLabels(ctx context.Context, ns string) (map[string]string, error) {
	return f.Labels(ctx, ns)
}

// Every reason a pod can be refused for has a decision that gives it, and
// the reason is the one the check made (a Denial), never a default: each
// Reason constant of decision.go is either listed here with a pod that
// produces it, or named as one that allows the pod.
func TestEveryRefusalReason(t *testing.T) {
	allowing := map[Reason]bool{ReasonNone: true, ReasonNotCreate: true, ReasonExcludedNamespace: true, ReasonNotMember: true,
		ReasonOptedOut: true, ReasonAlreadyInjected: true, ReasonCompleted: true}
	member := func(change func(*corev1.Pod)) *corev1.Pod {
		p := memberPod()
		if change != nil {
			change(p)
		}
		return p
	}
	notHeadless := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "cassandra"}, Spec: corev1.ServiceSpec{ClusterIP: "10.0.0.1"}}
	tiny := limitRangesFunc(func() []corev1.LimitRange {
		return []corev1.LimitRange{{ObjectMeta: metav1.ObjectMeta{Name: "tiny"}, Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
			Type: corev1.LimitTypeContainer, Max: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Mi")}}}}}}
	})
	rows := map[Reason]struct {
		decider func() *Decider
		req     Request
	}{
		ReasonInvalidName: {nil, podRequest(member(func(p *corev1.Pod) { p.Labels[contract.GroupLabel] = "Bad" }), true)},
		ReasonInvalidTuning: {nil, podRequest(member(func(p *corev1.Pod) {
			p.Annotations = map[string]string{contract.InitFirstAnnotation: "yes"}
		}), true)},
		ReasonCollision: {nil, podRequest(member(func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: contract.InitContainerName, Image: "x"}}
		}), true)},
		ReasonUnsupportedOS:  {nil, podRequest(member(func(p *corev1.Pod) { p.Spec.OS = &corev1.PodOS{Name: "windows"} }), true)},
		ReasonUnsupportedDNS: {nil, podRequest(member(func(p *corev1.Pod) { p.Spec.DNSPolicy = corev1.DNSDefault }), true)},
		ReasonInvalidPod: {nil, podRequest(member(func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{ContainerPort: 70000})
		}), true)},
		ReasonLimitRange: {func() *Decider {
			return &Decider{Config: DefaultConfig(), Namespaces: staticNamespaces(nil), Services: &recordingServices{}, LimitRanges: tiny}
		}, podRequest(member(nil), true)},
		ReasonServiceNotHeadless: {func() *Decider {
			return &Decider{Config: DefaultConfig(), Namespaces: staticNamespaces(nil),
				Services: &recordingServices{existing: map[client.ObjectKey]*corev1.Service{{Namespace: "db", Name: "cassandra"}: notHeadless}}}
		}, podRequest(member(nil), false)},
		ReasonServiceCreateFailed: {func() *Decider {
			return &Decider{Config: DefaultConfig(), Namespaces: staticNamespaces(nil), Services: failingServices{errors.New("quota")}}
		}, podRequest(member(nil), false)},
		ReasonNamespaceLookup: {func() *Decider {
			return &Decider{Config: DefaultConfig(), Namespaces: failingNamespaces{}, Services: &recordingServices{}}
		}, podRequest(member(func(p *corev1.Pod) { delete(p.Labels, contract.GroupLabel) }), true)},
		ReasonBadRequest: {nil, Request{Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Secret"}, Operation: admissionv1.Create}},
	}
	for _, name := range reasonConstants(t) {
		reason := Reason(name)
		row, listed := rows[reason]
		if allowing[reason] {
			continue
		}
		if !listed {
			t.Errorf("reason %q has no row: add a pod that is refused for it", reason)
			continue
		}
		d := &Decider{Config: DefaultConfig(), Namespaces: staticNamespaces(nil), Services: &recordingServices{}}
		if row.decider != nil {
			d = row.decider()
		}
		got := d.Decide(context.Background(), row.req)
		if got.Allowed() || got.Reason != reason {
			t.Errorf("%s: %s", reason, summary(got))
		}
	}
}

// reasonConstants are the values of the Reason constants in decision.go.
func reasonConstants(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "decision.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		spec, ok := n.(*ast.ValueSpec)
		if !ok || spec.Type == nil || len(spec.Values) != 1 {
			return true
		}
		if id, ok := spec.Type.(*ast.Ident); ok && id.Name == "Reason" {
			if lit, ok := spec.Values[0].(*ast.BasicLit); ok {
				v, _ := strconv.Unquote(lit.Value)
				out = append(out, v)
			}
		}
		return true
	})
	if len(out) < 15 {
		t.Fatalf("found %d Reason constants in decision.go; the parse is wrong", len(out))
	}
	return out
}

// limitRangesFunc is a LimitRanges for tests.
type limitRangesFunc func() []corev1.LimitRange

func (f limitRangesFunc) LimitRanges(context.Context, string) ([]corev1.LimitRange, error) {
	return f(), nil
}
