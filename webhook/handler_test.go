package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"

	"github.com/peergroup/peergroup/webhook/admit"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/mutate")

const fixtureDir = "testdata/mutate"

type fixture struct {
	NamespaceLabels map[string]string `json:"namespaceLabels"`
	Pod             json.RawMessage   `json:"pod"`
}

// golden is what a fixture must produce: the pod after applying the patch
// (null when no patch), the Service that exists afterwards, the warnings.
type golden struct {
	Allowed  bool             `json:"allowed"`
	Message  string           `json:"message,omitempty"`
	Warnings []string         `json:"warnings,omitempty"`
	Pod      *corev1.Pod      `json:"pod"`
	Services []corev1.Service `json:"services"`
}

func newFakeClient(objs ...client.Object) client.WithWatch {
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	return fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).Build()
}

func testHandler(ns admit.NamespaceLabels, c client.Client) *Handler {
	cfg := admit.DefaultConfig()
	cfg.Version = "0.1.0"
	cfg.SeedDiscoveryImage = "ghcr.io/peergroup/peergroup:0.1.0"
	return &Handler{Decider: admit.Decider{Config: cfg, Namespaces: ns, Services: &ClusterServiceEnsurer{Cache: c, Live: c, Writer: c}, InitContainers: &admit.InitContainerCache{}}}
}

// handle goes through admission.Webhook as the server does, so responses
// are completed (UID, result code) exactly as the API server sees them.
func handle(h *Handler, req admission.Request) admission.Response {
	return (&admission.Webhook{Handler: h}).Handle(context.Background(), req)
}

func podRequest(raw []byte, op admissionv1.Operation, dryRun bool) admission.Request {
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:       "uid-1",
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: "db",
		Operation: op,
		DryRun:    ptr.To(dryRun),
		Object:    runtime.RawExtension{Raw: raw},
	}}
}

func applyPatch(t testing.TB, raw []byte, resp admission.Response) []byte {
	t.Helper()
	if len(resp.Patch) == 0 {
		return raw
	}
	patch, err := jsonpatch.DecodePatch(resp.Patch)
	if err != nil {
		t.Fatal(err)
	}
	out, err := patch.Apply(raw)
	if err != nil {
		t.Fatalf("patch does not apply: %v", err)
	}
	return out
}

// TestGoldenFixtures runs each fixture through the handler and compares,
// as objects, the patched pod and the Services with the golden file.
func TestGoldenFixtures(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join(fixtureDir, "*.yaml"))
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no fixtures in %s: %v", fixtureDir, err)
	}
	for _, in := range inputs {
		if strings.HasSuffix(in, ".golden.yaml") {
			continue
		}
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			var fx fixture
			if err := yaml.Unmarshal(data, &fx); err != nil {
				t.Fatal(err)
			}
			raw := []byte(fx.Pod)
			c := newFakeClient()
			resp := handle(testHandler(staticNamespaces(fx.NamespaceLabels), c), podRequest(raw, admissionv1.Create, false))
			got := golden{Allowed: resp.Allowed, Warnings: resp.Warnings}
			if resp.Result != nil {
				got.Message = resp.Result.Message
			}
			if len(resp.Patch) > 0 {
				got.Pod = &corev1.Pod{}
				if err := json.Unmarshal(applyPatch(t, raw, resp), got.Pod); err != nil {
					t.Fatal(err)
				}
			}
			list := &corev1.ServiceList{}
			if err := c.List(context.Background(), list); err != nil {
				t.Fatal(err)
			}
			for _, s := range list.Items {
				s.ResourceVersion = ""
				got.Services = append(got.Services, s)
			}

			goldenPath := filepath.Join(fixtureDir, name+".golden.yaml")
			if *update {
				out, _ := yaml.Marshal(got)
				if err := os.WriteFile(goldenPath, out, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			wantData, err := os.ReadFile(goldenPath)
			if err != nil {
				t.Fatalf("read golden (run with -update to create it): %v", err)
			}
			var want golden
			if err := yaml.Unmarshal(wantData, &want); err != nil {
				t.Fatal(err)
			}
			if !equality.Semantic.DeepEqual(got, want) {
				gotYAML, _ := yaml.Marshal(got)
				t.Errorf("result differs from %s; got:\n%s", goldenPath, gotYAML)
			}
		})
	}
}

func TestHandlerIsIdempotent(t *testing.T) {
	raw := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"peergroup.dev/group":"cassandra"}},"spec":{"containers":[{"name":"c","image":"x","ports":[{"containerPort":9042}]}]}}`)
	c := newFakeClient()
	h := testHandler(staticNamespaces(nil), c)
	first := handle(h, podRequest(raw, admissionv1.Create, false))
	if !first.Allowed || len(first.Patch) == 0 {
		t.Fatalf("first pass: %+v", first)
	}
	second := handle(h, podRequest(applyPatch(t, raw, first), admissionv1.Create, false))
	if !second.Allowed || len(second.Patch) != 0 {
		t.Fatalf("reinvocation must allow with an empty patch, got %+v", second)
	}
}

func TestHandlerDryRunCreatesNothing(t *testing.T) {
	raw := []byte(`{"metadata":{"name":"p","labels":{"peergroup.dev/group":"cassandra"}},"spec":{"containers":[{"name":"c","image":"x"}]}}`)
	c := newFakeClient()
	resp := handle(testHandler(staticNamespaces(nil), c), podRequest(raw, admissionv1.Create, true))
	if !resp.Allowed || len(resp.Patch) == 0 {
		t.Fatalf("dry-run must still mutate: %+v", resp)
	}
	list := &corev1.ServiceList{}
	_ = c.List(context.Background(), list)
	if len(list.Items) != 0 {
		t.Errorf("dry-run created %d Services", len(list.Items))
	}
}

func TestHandlerOutcomes(t *testing.T) {
	member := []byte(`{"metadata":{"name":"p","labels":{"peergroup.dev/group":"cassandra"}},"spec":{"containers":[{"name":"c","image":"x"}]}}`)
	nonHeadless := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "cassandra"}, Spec: corev1.ServiceSpec{ClusterIP: "10.0.0.7"}}
	cases := []struct {
		name      string
		req       admission.Request
		ns        admit.NamespaceLabels
		client    client.Client
		allowed   bool
		code      int32
		message   string
		patched   bool
		namespace string
	}{
		{name: "update is ignored", req: podRequest(member, admissionv1.Update, false), allowed: true, code: 200},
		{name: "delete is ignored", req: podRequest(nil, admissionv1.Delete, false), allowed: true, code: 200},
		{name: "non-headless Service denies", req: podRequest(member, admissionv1.Create, false), client: newFakeClient(nonHeadless), code: http.StatusForbidden, message: "is not headless"},
		{name: "create failure is an error with the cause", req: podRequest(member, admissionv1.Create, false), client: failingCreates(apierrors.NewForbidden(schema.GroupResource{Resource: "services"}, "cassandra", errors.New("RBAC says no"))), code: 500, message: "RBAC says no"},
		{name: "quota exhausted", req: podRequest(member, admissionv1.Create, false), client: failingCreates(apierrors.NewForbidden(schema.GroupResource{Resource: "services"}, "cassandra", errors.New("exceeded quota: services"))), code: 500, message: "exceeded quota"},
		{name: "namespace lookup failure", req: podRequest([]byte(`{"metadata":{"name":"p"},"spec":{}}`), admissionv1.Create, false), ns: failingNamespaces{}, code: 500, message: "api server down"},
		{name: "excluded namespace", req: func() admission.Request {
			r := podRequest(member, admissionv1.Create, false)
			r.Namespace = "kube-system"
			return r
		}(), allowed: true, code: 200},
		{name: "subresource", req: func() admission.Request {
			r := podRequest(member, admissionv1.Create, false)
			r.SubResource = "binding"
			return r
		}(), code: 400, message: "only v1 Pod"},
		{name: "already exists race resolves to headless", req: podRequest(member, admissionv1.Create, false), client: racingCreate(), allowed: true, code: 200, patched: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.client
			if c == nil {
				c = newFakeClient()
			}
			ns := tc.ns
			if ns == nil {
				ns = staticNamespaces(nil)
			}
			resp := handle(testHandler(ns, c), tc.req)
			if resp.Allowed != tc.allowed || resp.Result.Code != tc.code || !strings.Contains(resp.Result.Message, tc.message) || (len(resp.Patch) > 0) != tc.patched {
				t.Errorf("got allowed=%v code=%d message=%q patches=%d", resp.Allowed, resp.Result.Code, resp.Result.Message, len(resp.Patch))
			}
		})
	}
}

type failingNamespaces struct{}

func (failingNamespaces) Labels(context.Context, string) (map[string]string, error) {
	return nil, errors.New("api server down")
}

func (f failingNamespaces) FreshLabels(ctx context.Context, ns string) (map[string]string, error) {
	return f.Labels(ctx, ns)
}

func failingCreates(err error) client.Client {
	return interceptor.NewClient(newFakeClient(), interceptor.Funcs{
		Create: func(context.Context, client.WithWatch, client.Object, ...client.CreateOption) error { return err },
	})
}

// racingCreate simulates another replica creating the Service between our
// cache miss and our create.
func racingCreate() client.Client {
	inner := newFakeClient()
	return interceptor.NewClient(inner, interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			svc := obj.(*corev1.Service).DeepCopy()
			if err := c.Create(ctx, svc); err != nil {
				return err
			}
			return apierrors.NewAlreadyExists(schema.GroupResource{Resource: "services"}, svc.Name)
		},
	})
}

// staticNamespaces gives every namespace the same labels.
type staticNamespaces map[string]string

func (s staticNamespaces) Labels(context.Context, string) (map[string]string, error) { return s, nil }

func (s staticNamespaces) FreshLabels(ctx context.Context, ns string) (map[string]string, error) {
	return s.Labels(ctx, ns)
}
