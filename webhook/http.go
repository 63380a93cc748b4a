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
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
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
	// DecodePod decodes request.object in the same pass as the review,
	// and only the pod fields the admission reads (admittedPod), instead of
	// keeping raw bytes for a second, full decode. Only for handlers that
	// need no raw object (PatchDirect).
	DecodePod bool
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
	review, err := decodeReview(body, h.DecodePod)
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
// Content-Length when the client sent one (the API server does): growing
// a buffer from nothing was a tenth of an admission's allocations.
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

// podReview is an AdmissionReview whose object is decoded as the part of
// a pod the admission reads; the outer Object field shadows the embedded
// RawExtension.
type podReview struct {
	metav1.TypeMeta `json:",inline"`
	Request         *struct {
		admissionv1.AdmissionRequest
		Object *admittedPod `json:"object,omitempty"`
	} `json:"request,omitempty"`
}

// admittedPod is every pod field the direct path reads (ResolveGroup,
// Mutate, DesiredService, DirectPatch, Events) and nothing else. A pod as
// the API server sends it is mostly fields peergroup never reads (defaults,
// managedFields, probes, resources, security contexts); the decoder skips
// those instead of building them, which was the largest cost left in an
// admission. FuzzAdmittedPodEquivalence proves the patch, warnings and
// errors from this decode equal those from decoding the whole pod.
type admittedPod struct {
	Metadata struct {
		Name            string                  `json:"name,omitempty"`
		GenerateName    string                  `json:"generateName,omitempty"`
		Namespace       string                  `json:"namespace,omitempty"`
		Labels          map[string]string       `json:"labels,omitempty"`
		Annotations     map[string]string       `json:"annotations,omitempty"`
		OwnerReferences []metav1.OwnerReference `json:"ownerReferences,omitempty"`
	} `json:"metadata"`
	Spec struct {
		Containers     []admittedContainer `json:"containers,omitempty"`
		InitContainers []admittedContainer `json:"initContainers,omitempty"`
		Volumes        []admittedVolume    `json:"volumes,omitempty"`
		OS             *corev1.PodOS       `json:"os,omitempty"`
		NodeSelector   map[string]string   `json:"nodeSelector,omitempty"`
	} `json:"spec"`
}

type admittedContainer struct {
	Name         string                 `json:"name"`
	Ports        []corev1.ContainerPort `json:"ports,omitempty"`
	Env          []corev1.EnvVar        `json:"env,omitempty"`
	VolumeMounts []corev1.VolumeMount   `json:"volumeMounts,omitempty"`
}

type admittedVolume struct {
	Name     string                       `json:"name"`
	EmptyDir *corev1.EmptyDirVolumeSource `json:"emptyDir,omitempty"`
}

// pod is a corev1.Pod holding the admitted fields.
func (a *admittedPod) pod() *corev1.Pod {
	p := &corev1.Pod{}
	m := &a.Metadata
	p.Name, p.GenerateName, p.Namespace = m.Name, m.GenerateName, m.Namespace
	p.Labels, p.Annotations, p.OwnerReferences = m.Labels, m.Annotations, m.OwnerReferences
	p.Spec.Containers = containers(a.Spec.Containers)
	p.Spec.InitContainers = containers(a.Spec.InitContainers)
	p.Spec.OS, p.Spec.NodeSelector = a.Spec.OS, a.Spec.NodeSelector
	if a.Spec.Volumes != nil {
		p.Spec.Volumes = make([]corev1.Volume, len(a.Spec.Volumes))
		for i, v := range a.Spec.Volumes {
			p.Spec.Volumes[i].Name, p.Spec.Volumes[i].EmptyDir = v.Name, v.EmptyDir
		}
	}
	return p
}

func containers(in []admittedContainer) []corev1.Container {
	if in == nil {
		return nil
	}
	out := make([]corev1.Container, len(in))
	for i, c := range in {
		out[i] = corev1.Container{Name: c.Name, Ports: c.Ports, Env: c.Env, VolumeMounts: c.VolumeMounts}
	}
	return out
}

func decodeReview(body []byte, decodePod bool) (*admissionv1.AdmissionReview, error) {
	if len(body) == 0 {
		return nil, errors.New("request body is empty: expected an admission.k8s.io/v1 AdmissionReview")
	}
	review := &admissionv1.AdmissionReview{}
	if decodePod {
		pr := &podReview{}
		if err := json.Unmarshal(body, pr); err != nil {
			return nil, fmt.Errorf("request body is not a JSON AdmissionReview with a pod: %w", err)
		}
		review.TypeMeta = pr.TypeMeta
		if pr.Request != nil {
			review.Request = &pr.Request.AdmissionRequest
			if pr.Request.Object != nil {
				review.Request.Object.Object = pr.Request.Object.pod()
			}
		}
	} else if err := json.Unmarshal(body, review); err != nil {
		return nil, fmt.Errorf("request body is not a JSON AdmissionReview: %w", err)
	}
	if review.APIVersion != admissionv1.SchemeGroupVersion.String() || review.Kind != "AdmissionReview" {
		return nil, fmt.Errorf("expected apiVersion admission.k8s.io/v1 kind AdmissionReview, got apiVersion %q kind %q", review.APIVersion, review.Kind)
	}
	if review.Request == nil {
		return nil, errors.New("AdmissionReview has no request")
	}
	if review.Request.UID == "" {
		return nil, errors.New("AdmissionReview request has no uid")
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
