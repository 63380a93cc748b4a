package chart

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/peergroup/peergroup/test/framework"
	"github.com/peergroup/peergroup/webhook/server"
)

// Upgrades without refusals: by default a rollout surges one replica and
// takes none down before it is ready, the webhook serves on after SIGTERM
// for the chart's delay and drains for the chart's drain time, and the
// kubelet waits for both before SIGKILL.
func TestRolloutKeepsAReadyReplica(t *testing.T) {
	for name, values := range modes {
		t.Run(name, func(t *testing.T) {
			r := render(t, values)
			dep := &appsv1.Deployment{}
			if err := r.Typed("Deployment", dep); err != nil {
				t.Fatal(err)
			}
			s := dep.Spec.Strategy
			if s.Type != appsv1.RollingUpdateDeploymentStrategyType || s.RollingUpdate == nil ||
				*s.RollingUpdate.MaxSurge != intstr.FromInt32(1) || *s.RollingUpdate.MaxUnavailable != intstr.FromInt32(0) {
				t.Errorf("strategy %+v: want RollingUpdate, maxSurge 1, maxUnavailable 0", s)
			}
			args, err := framework.DeploymentArgs(r)
			if err != nil {
				t.Fatal(err)
			}
			o, err := server.ParseFlags(args, func(string) string { return "peergroup-system" }, "v", &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			if o.ShutdownDelay != 10*time.Second || o.DrainTimeout != 15*time.Second {
				t.Errorf("shutdown delay %s, drain %s: want the values' 10s and 15s", o.ShutdownDelay, o.DrainTimeout)
			}
			grace := time.Duration(*dep.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
			if grace < o.ShutdownDelay+o.DrainTimeout {
				t.Errorf("terminationGracePeriodSeconds %s < delay %s + drain %s: SIGKILL would cut the drain", grace, o.ShutdownDelay, o.DrainTimeout)
			}
			if timeout := time.Duration(*webhookConfig(t, r).Webhooks[0].TimeoutSeconds) * time.Second; o.DrainTimeout < timeout {
				t.Errorf("drain %s shorter than the webhook's timeout %s", o.DrainTimeout, timeout)
			}
			// Node drains keep one ready replica as well.
			pdb := r.Find("PodDisruptionBudget", "")
			if pdb == nil || fmt.Sprint(pdb.Object["spec"].(map[string]any)["minAvailable"]) != "1" {
				t.Errorf("PodDisruptionBudget %v: want minAvailable 1", pdb)
			}
		})
	}
}

// Values reach the Deployment: the delay, the drain, the grace period and
// the strategy.
func TestShutdownValuesRendered(t *testing.T) {
	r := render(t, map[string]any{
		"shutdown":                      map[string]any{"delaySeconds": 0, "drainSeconds": 30},
		"webhook":                       map[string]any{"timeoutSeconds": 30},
		"terminationGracePeriodSeconds": 45,
		"updateStrategy":                map[string]any{"maxSurge": 0, "maxUnavailable": 1},
	})
	dep := &appsv1.Deployment{}
	if err := r.Typed("Deployment", dep); err != nil {
		t.Fatal(err)
	}
	if g := *dep.Spec.Template.Spec.TerminationGracePeriodSeconds; g != 45 {
		t.Errorf("terminationGracePeriodSeconds %d", g)
	}
	if ru := dep.Spec.Strategy.RollingUpdate; ru.MaxSurge.IntValue() != 0 || ru.MaxUnavailable.IntValue() != 1 {
		t.Errorf("rollingUpdate %+v", ru)
	}
	args, _ := framework.DeploymentArgs(r)
	o, err := server.ParseFlags(args, func(string) string { return "peergroup-system" }, "v", &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.ShutdownDelay != 0 || o.DrainTimeout != 30*time.Second {
		t.Errorf("delay %s, drain %s", o.ShutdownDelay, o.DrainTimeout)
	}
}

// Values that would cut the drain, refuse admissions in flight or stall
// the rollout fail the render; the schema bounds each one.
func TestShutdownBadValuesFail(t *testing.T) {
	cases := map[string]map[string]any{
		"terminationGracePeriodSeconds must be at least shutdown.delaySeconds + shutdown.drainSeconds": {"terminationGracePeriodSeconds": 20},
		"shutdown.drainSeconds must be at least webhook.timeoutSeconds":                                {"shutdown": map[string]any{"drainSeconds": 4}},
		"maxSurge and maxUnavailable cannot both be 0":                                                 {"updateStrategy": map[string]any{"maxSurge": 0, "maxUnavailable": 0}},
		"delaySeconds":                   {"shutdown": map[string]any{"delaySeconds": -1}},
		"drainSeconds":                   {"shutdown": map[string]any{"drainSeconds": 0}},
		"terminationGracePeriodSeconds":  {"terminationGracePeriodSeconds": "30s"},
		"maxSurge":                       {"updateStrategy": map[string]any{"maxSurge": "25%"}},
		"additional properties 'sleep' ": {"shutdown": map[string]any{"sleep": 5}},
	}
	for want, values := range cases {
		if _, err := framework.Render("peergroup", "peergroup-system", values); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("values %v: error %v, want %q", values, err, want)
		}
	}
}
