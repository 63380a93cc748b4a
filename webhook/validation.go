package webhook

import (
	"net/url"
	"sync"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/peergroup/peergroup/webhook/admit"
)

// The chart's webhook entries, in both configurations.
const (
	EntryPodLabel       = "pod-label.peergroup.dev"
	EntryNamespaceLabel = "namespace-label.peergroup.dev"
)

// ValidationWatch is the admit.ValidationPhase of a running webhook: it
// follows peergroup's ValidatingWebhookConfiguration (fed by an informer,
// Observe and Forget) and the validating calls that arrive (called).
//
// The mutating phase leaves a missing Service to the validating phase only
// when it is sure the API server calls that phase for the same pods: the
// configuration exists with both entries calling ValidatePath, the API
// server has called it since (it loads configurations from its own watch,
// a moment later than this one), and Settle has passed since it appeared
// (a second API server of an HA control plane loads it on its own
// schedule). Until then, and at once when the configuration goes or
// changes, the mutating phase creates the Service as it always did: a
// Service created for a pod the API server then refuses is the worst that
// can happen, never a pod without its Service.
type ValidationWatch struct {
	// Settle is how long the configuration must have been seen before the
	// mutating phase relies on it.
	Settle time.Duration
	// Now is the clock; nil is time.Now.
	Now func() time.Time

	mu       sync.Mutex
	since    time.Time // when the current configuration was first seen usable; zero: none
	uid      types.UID // the configuration seen since then
	calledAt time.Time // the last validating call
}

var _ admit.ValidationPhase = (*ValidationWatch)(nil)

// InForce reports whether the mutating phase may leave a missing Service
// to the validating phase. A nil watch never is.
func (w *ValidationWatch) InForce() bool {
	if w == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.since.IsZero() || w.calledAt.Before(w.since) {
		return false
	}
	return w.now().Sub(w.since) >= w.Settle
}

// Observe records the configuration as it is now (added or updated).
func (w *ValidationWatch) Observe(vwc *admissionregistrationv1.ValidatingWebhookConfiguration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case !CallsValidatePath(vwc):
		w.since = time.Time{}
	case w.since.IsZero() || vwc.UID != w.uid:
		// A new object (deleted and created again while the watch was
		// away) is as new to the API server as a first one.
		w.since, w.uid = w.now(), vwc.UID
	}
}

// Forget records that the configuration is gone.
func (w *ValidationWatch) Forget() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.since = time.Time{}
}

// called records a validating call.
func (w *ValidationWatch) called() {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calledAt = w.now()
}

func (w *ValidationWatch) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

// CallsValidatePath reports whether the configuration has both of the
// chart's entries, each sending pods to ValidatePath (by Service path or
// by URL) with failurePolicy Fail and no matchConditions: a validating
// call that may be skipped (Ignore, a condition) would let a pod whose
// Service was left to it be stored without one.
func CallsValidatePath(vwc *admissionregistrationv1.ValidatingWebhookConfiguration) bool {
	if vwc == nil {
		return false
	}
	want := map[string]bool{EntryPodLabel: false, EntryNamespaceLabel: false}
	for _, e := range vwc.Webhooks {
		if _, ours := want[e.Name]; ours {
			fails := e.FailurePolicy == nil || *e.FailurePolicy == admissionregistrationv1.Fail // the API's default is Fail
			want[e.Name] = clientPath(e.ClientConfig) == ValidatePath && fails && len(e.MatchConditions) == 0
		}
	}
	return want[EntryPodLabel] && want[EntryNamespaceLabel]
}

func clientPath(c admissionregistrationv1.WebhookClientConfig) string {
	if c.Service != nil {
		if c.Service.Path == nil {
			return "/"
		}
		return *c.Service.Path
	}
	if c.URL == nil {
		return ""
	}
	u, err := url.Parse(*c.URL)
	if err != nil {
		return ""
	}
	return u.Path
}
