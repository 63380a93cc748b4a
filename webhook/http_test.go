package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/peergroup/peergroup/webhook/admit"
)

// The HTTP edge's answer, applied to the pod as sent, yields the pod
// Mutate makes: the review decoded in one pass, the direct patch.
func TestHTTPHandlerPatchYieldsTheMutatedPod(t *testing.T) {
	raw, _ := json.Marshal(benchPod())
	areq := podRequest(raw, admissionv1.Create, false).AdmissionRequest
	body, _ := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"}, Request: &areq})
	h := testHandler(staticNamespaces(nil), newFakeClient())
	srv := &HTTPHandler{Webhook: &admission.Webhook{Handler: h}}
	req := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	out := admissionv1.AdmissionReview{}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || rec.Code != 200 || !out.Response.Allowed || out.Response.UID != "uid-1" {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	patch, err := jsonpatch.DecodePatch(out.Response.Patch)
	if err != nil {
		t.Fatal(err)
	}
	patched, err := patch.Apply(raw)
	if err != nil {
		t.Fatal(err)
	}
	got := &corev1.Pod{}
	_ = json.Unmarshal(patched, got)
	want, _, err := admit.Mutate(benchPod(), admit.Membership{Group: "cassandra", Service: "cassandra", Source: admit.SourcePod}, h.Decider.Config)
	if err != nil {
		t.Fatal(err)
	}
	if !admit.IsInjected(got) || !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("the patched pod is not the mutated pod")
	}
}

// An object that says it is not a v1 Pod is refused at the edge.
func TestHTTPHandlerRefusesOtherKinds(t *testing.T) {
	svc := []byte(`{"apiVersion":"v1","kind":"Service","metadata":{"name":"s","labels":{"peergroup.dev/group":"g"}},"spec":{"clusterIP":"10.0.0.1"}}`)
	h := testHandler(staticNamespaces(nil), newFakeClient())
	code, review, err := post(&HTTPHandler{Webhook: &admission.Webhook{Handler: h}}, reviewBody(svc, "CREATE"))
	if err != nil || code != http.StatusBadRequest || review.Response.Allowed || !strings.Contains(review.Response.Result.Message, "not a v1 Pod") {
		t.Fatalf("HTTP %d %v: %+v", code, err, review)
	}
}

// The admission's deadline is 4/5 of the budget the API server states in
// ?timeout=; without one (or a bad or non-positive one) only the request's
// own context bounds it.
func TestRequestContextTakesTheAPIServersBudget(t *testing.T) {
	for _, tc := range []struct {
		query string
		want  time.Duration // 0: no deadline
	}{
		{"?timeout=5s", 4 * time.Second},
		{"?timeout=10s", 8 * time.Second},
		{"?timeout=1s", 800 * time.Millisecond},
		{"", 0},
		{"?timeout=soon", 0},
		{"?timeout=0s", 0},
		{"?timeout=-5s", 0},
	} {
		r := httptest.NewRequest(http.MethodPost, "/mutate-v1-pod"+tc.query, nil)
		start := time.Now()
		ctx, cancel := requestContext(r)
		deadline, ok := ctx.Deadline()
		cancel()
		switch {
		case tc.want == 0 && ok:
			t.Errorf("%q: deadline in %s, want none", tc.query, deadline.Sub(start))
		case tc.want != 0 && !ok:
			t.Errorf("%q: no deadline, want %s", tc.query, tc.want)
		case tc.want != 0:
			if got := deadline.Sub(start); got < tc.want-50*time.Millisecond || got > tc.want+50*time.Millisecond {
				t.Errorf("%q: deadline in %s, want %s", tc.query, got, tc.want)
			}
		}
	}
}

// The object must be the v1 Pod the review says it is, or name no kind.
func TestCheckObjectKind(t *testing.T) {
	for _, tc := range []struct {
		apiVersion, kind string
		ok               bool
	}{
		{"", "", true}, {"v1", "Pod", true}, {"", "Pod", true}, {"v1", "", true},
		{"v1", "Service", false}, {"apps/v1", "Pod", false}, {"apps/v1", "", false}, {"", "Service", false},
	} {
		err := checkObjectKind(metav1.TypeMeta{APIVersion: tc.apiVersion, Kind: tc.kind})
		if (err == nil) != tc.ok {
			t.Errorf("%q %q: %v, want ok=%v", tc.apiVersion, tc.kind, err, tc.ok)
		}
	}
}
