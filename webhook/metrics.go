package webhook

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

const (
	resultInjected = "injected"
	resultSkipped  = "skipped"
	resultDenied   = "denied"
	resultErrored  = "errored"
)

// Metrics counts admission outcomes. A nil *Metrics records nothing, which
// keeps unit tests free of a registry.
type Metrics struct {
	admissions      *prometheus.CounterVec
	servicesCreated prometheus.Counter
}

// NewMetrics registers peergroup's counters with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		admissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "peergroup_admissions_total",
			Help: "Pod admissions by result: injected, skipped (not a member, already injected, not CREATE), denied, errored.",
		}, []string{"result"}),
		servicesCreated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "peergroup_services_created_total",
			Help: "Headless Services created for new peer groups.",
		}),
	}
	m.admissions = register(reg, m.admissions)
	m.servicesCreated = register(reg, m.servicesCreated)
	return m
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

func (m *Metrics) observe(result string) {
	if m != nil {
		m.admissions.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) serviceCreated() {
	if m != nil {
		m.servicesCreated.Inc()
	}
}
