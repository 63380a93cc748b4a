package webhook

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/peergroup/peergroup/webhook/admit"
)

// Metrics counts admission outcomes, per peer group where there is one.
// Groups are namespaced, so series carry namespace and group. A group is a
// label value only once its Service exists in the cluster
// (Decision.GroupInCluster), so the number of series is bounded by the
// Services in the cluster, never by what requests send. A nil *Metrics
// records nothing, which keeps unit tests free of a registry.
type Metrics struct {
	admissions      *prometheus.CounterVec
	injected        *prometheus.CounterVec
	skipped         *prometheus.CounterVec
	denied          *prometheus.CounterVec
	servicesCreated *prometheus.CounterVec
	duration        *prometheus.HistogramVec
}

// NewMetrics registers peergroup's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		admissions: counter("peergroup_admissions_total",
			"Pod admissions by result: injected, skipped (not a member, already injected, not CREATE), denied, errored.", "result"),
		injected: counter("peergroup_pods_injected_total",
			"Pods injected, per peer group (empty until the group's Service exists).", "namespace", "group"),
		skipped: counter("peergroup_pods_skipped_total",
			"Pods admitted unchanged, by reason (not-member, opted-out, excluded-namespace, already-injected, not-create); group is empty for non-members.", "namespace", "group", "reason"),
		denied: counter("peergroup_pods_denied_total",
			"Pods refused, by reason (invalid-name, invalid-tuning, collision, unsupported-os, unsupported-dns, limit-range, invalid-pod, service-not-headless, service-create-failed, namespace-lookup-failed, bad-request).", "namespace", "group", "reason"),
		servicesCreated: counter("peergroup_services_created_total",
			"Headless Services created for new peer groups.", "namespace", "group"),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "peergroup_admission_duration_seconds",
			Help: "Time to answer one admission inside the webhook (decode to patch, Service create included), by result.",
			// From a cache hit (~0.1 ms) to a Service create on a slow API
			// server (seconds).
			Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}, []string{"result"}),
	}
	m.admissions = register(reg, m.admissions)
	m.injected = register(reg, m.injected)
	m.skipped = register(reg, m.skipped)
	m.denied = register(reg, m.denied)
	m.servicesCreated = register(reg, m.servicesCreated)
	m.duration = register(reg, m.duration)
	return m
}

func counter(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
}

// register reuses a collector that is already registered, so a second
// handler in one process (tests, the demo) shares the counters instead of
// panicking.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var already prometheus.AlreadyRegisteredError
		if errors.As(err, &already) {
			if existing, ok := already.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(fmt.Sprintf("register metric: %v", err))
	}
	return c
}

// observe counts one Decision. Reasons are admit's fixed set; errored
// decisions are counted with the denials, under their own reasons.
func (m *Metrics) observe(ns string, d admit.Decision, took time.Duration) {
	if m == nil {
		return
	}
	result, reason := string(d.Verdict), string(d.Reason)
	// The fixed bucket: not a member, or no Service of the group in the
	// cluster. The namespace too comes from the request, and a request
	// that did not come through the API server may name any, so it is a
	// label value on the same condition.
	namespace, group := "", ""
	if d.GroupInCluster() {
		namespace, group = ns, d.Group
	}
	m.admissions.WithLabelValues(result).Inc()
	m.duration.WithLabelValues(result).Observe(took.Seconds())
	switch d.Verdict {
	case admit.VerdictInjected:
		m.injected.WithLabelValues(namespace, group).Inc()
	case admit.VerdictSkipped:
		m.skipped.WithLabelValues(namespace, group, reason).Inc()
	case admit.VerdictDenied, admit.VerdictErrored:
		m.denied.WithLabelValues(namespace, group, reason).Inc()
	}
	if d.Service == admit.ServiceCreated {
		m.servicesCreated.WithLabelValues(namespace, group).Inc()
	}
}

// observeValidation counts what the validating phase adds: a created
// Service, and a refusal (the pod was counted once already, as the
// mutating phase answered; a refusal here is the pod's final answer).
func (m *Metrics) observeValidation(ns string, d admit.Decision) {
	if m == nil {
		return
	}
	namespace, group := "", ""
	if d.GroupInCluster() {
		namespace, group = ns, d.Group
	}
	switch d.Verdict {
	case admit.VerdictDenied, admit.VerdictErrored:
		m.admissions.WithLabelValues(string(d.Verdict)).Inc()
		m.denied.WithLabelValues(namespace, group, string(d.Reason)).Inc()
	}
	if d.Service == admit.ServiceCreated {
		m.servicesCreated.WithLabelValues(namespace, group).Inc()
	}
}
