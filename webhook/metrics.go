package webhook

import (
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
	reg.MustRegister(m.admissions, m.servicesCreated)
	return m
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
