package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/peergroup/peergroup/internal/clip"
)

// MaxRequestBytes bounds an AdmissionReview body: two objects of at most
// 3 MiB (etcd's limit) plus the envelope, the same bound controller-runtime
// uses.
const MaxRequestBytes = 7 << 20

// HTTPHandler serves AdmissionReviews for an admission.Webhook.
//
// It replaces controller-runtime's ServeHTTP only at the edge: that one
// answers a malformed body with HTTP 200 and the error inside the review,
// which tools and load balancers read as success. Here a request that is not
// a v1 AdmissionReview gets a 4xx status and a message naming what is wrong;
// a well-formed review goes to admission.Webhook.Handle unchanged (panic
// recovery, response completion).
type HTTPHandler struct {
	Webhook *admission.Webhook
}

func (h *HTTPHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	fail := func(code int, err error) {
		logf.FromContext(r.Context()).WithName("http").Info("rejected request", "code", code, "reason", err.Error(), "remote", r.RemoteAddr)
		writeReview(w, code, admissionv1.AdmissionReview{Response: &admissionv1.AdmissionResponse{
			Result: &metav1.Status{Status: metav1.StatusFailure, Code: int32(code), Message: err.Error()},
		}})
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		fail(http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed: POST an admission.k8s.io/v1 AdmissionReview", r.Method))
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		fail(http.StatusUnsupportedMediaType, fmt.Errorf("content type %q not supported: expected application/json", r.Header.Get("Content-Type")))
		return
	}
	body, err := readBody(r)
	if err != nil {
		fail(http.StatusBadRequest, fmt.Errorf("read request body: %w", err))
		return
	}
	if len(body) > MaxRequestBytes {
		fail(http.StatusRequestEntityTooLarge, fmt.Errorf("request body larger than %d bytes", MaxRequestBytes))
		return
	}
	review, err := decodeReview(body)
	if err != nil {
		fail(http.StatusBadRequest, err)
		return
	}
	ctx, cancel := requestContext(r)
	defer cancel()
	resp := h.Webhook.Handle(ctx, admission.Request{AdmissionRequest: *review.Request})
	out := admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: &resp.AdmissionResponse}
	writeReview(w, http.StatusOK, out)
}

// requestContext bounds the admission by the budget the API server states
// in ?timeout= (the webhook's timeoutSeconds). Without it a slow API server
// would make the API server give up on the webhook first and report only a
// timeout calling it; with it the webhook's own answer, naming the cause,
// arrives in time. A fifth of the budget is kept for writing the answer.
func requestContext(r *http.Request) (context.Context, context.CancelFunc) {
	budget, err := time.ParseDuration(r.URL.Query().Get("timeout"))
	if err != nil || budget <= 0 {
		return context.WithCancel(r.Context())
	}
	return context.WithTimeout(r.Context(), budget*4/5)
}

// readBody reads at most MaxRequestBytes+1 bytes, into a buffer sized by
// Content-Length when the client sent one (the API server does), so the
// buffer is allocated once.
func readBody(r *http.Request) ([]byte, error) {
	limited := io.LimitReader(r.Body, MaxRequestBytes+1)
	if r.ContentLength <= 0 || r.ContentLength > MaxRequestBytes {
		return io.ReadAll(limited)
	}
	// net/http ends the body at Content-Length.
	body := make([]byte, r.ContentLength)
	if _, err := io.ReadFull(limited, body); err != nil {
		return nil, err
	}
	return body, nil
}

// podReview is an AdmissionReview whose object is decoded as a pod in the
// same pass as the review, instead of kept as raw bytes for a second
// decode; the outer Object field shadows the embedded RawExtension.
type podReview struct {
	metav1.TypeMeta `json:",inline"`
	Request         *struct {
		admissionv1.AdmissionRequest
		Object *corev1.Pod `json:"object,omitempty"`
	} `json:"request,omitempty"`
}

func decodeReview(body []byte) (*admissionv1.AdmissionReview, error) {
	if len(body) == 0 {
		return nil, errors.New("request body is empty: expected an admission.k8s.io/v1 AdmissionReview")
	}
	review := &admissionv1.AdmissionReview{}
	pr := &podReview{}
	if err := json.Unmarshal(body, pr); err != nil {
		return nil, fmt.Errorf("request body is not a JSON AdmissionReview with a pod: %w", err)
	}
	review.TypeMeta = pr.TypeMeta
	if pr.Request != nil {
		review.Request = &pr.Request.AdmissionRequest
		if pr.Request.Object != nil {
			review.Request.Object.Object = pr.Request.Object
		}
	}
	if review.APIVersion != admissionv1.SchemeGroupVersion.String() || review.Kind != "AdmissionReview" {
		return nil, fmt.Errorf("expected apiVersion admission.k8s.io/v1 kind AdmissionReview, got apiVersion %q kind %q", clip.String(review.APIVersion), clip.String(review.Kind))
	}
	if review.Request == nil {
		return nil, errors.New("AdmissionReview has no request")
	}
	if review.Request.UID == "" {
		return nil, errors.New("AdmissionReview request has no uid")
	}
	if err := checkObjectKind(objectTypeMeta(review.Request.Object)); err != nil {
		return nil, err
	}
	return review, nil
}

func writeReview(w http.ResponseWriter, code int, review admissionv1.AdmissionReview) {
	review.APIVersion = admissionv1.SchemeGroupVersion.String()
	review.Kind = "AdmissionReview"
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(review)
}

// objectTypeMeta is the apiVersion and kind the request's object gives
// itself (none without an object).
func objectTypeMeta(obj runtime.RawExtension) metav1.TypeMeta {
	if pod, ok := obj.Object.(*corev1.Pod); ok {
		return pod.TypeMeta
	}
	return metav1.TypeMeta{}
}

// checkObjectKind refuses an object that says it is something else than a
// v1 Pod: the decoders read a pod's fields from any JSON object, so a
// review of kind Pod carrying, say, a Service with the group label would
// otherwise be decided as a pod. An object that names no kind is taken as
// the pod the review says it is.
func checkObjectKind(tm metav1.TypeMeta) error {
	if (tm.APIVersion == "" || tm.APIVersion == "v1") && (tm.Kind == "" || tm.Kind == "Pod") {
		return nil
	}
	return fmt.Errorf("the review's object is apiVersion %s kind %s, not a v1 Pod", clip.Quote(tm.APIVersion), clip.Quote(tm.Kind))
}
