package e2e

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/peergroup/peergroup/contract"
)

// Each seed option at its boundaries through the real API server: a valid
// value admits a pod the API server stores as peergroup wrote it (the
// native sidecar's spec included), an invalid one is denied with the rule.
func TestSeedOptionsAtTheirBoundaries(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, map[string]string{contract.GroupLabel: "cassandra"})
	type check func(t *testing.T, pod *corev1.Pod)
	seedDiscovery := func(t *testing.T, pod *corev1.Pod) (int, corev1.Container) {
		t.Helper()
		for i, c := range pod.Spec.InitContainers {
			if c.Name == contract.InitContainerName {
				return i, c
			}
		}
		t.Fatalf("no %s in %s", contract.InitContainerName, pod.Name)
		return -1, corev1.Container{}
	}
	sidecar := func(refresh string) check {
		return func(t *testing.T, pod *corev1.Pod) {
			_, c := seedDiscovery(t, pod)
			if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways || c.StartupProbe == nil || c.StartupProbe.Exec == nil {
				t.Errorf("%s: not a native sidecar with a startup probe: restartPolicy %v, startupProbe %v", pod.Name, c.RestartPolicy, c.StartupProbe)
			}
			if got := envValues(c, contract.Refresh.Env); len(got) != 1 || got[0].Value != refresh {
				t.Errorf("%s: %s = %v, want %s", pod.Name, contract.Refresh.Env, got, refresh)
			}
		}
	}
	plain := func(t *testing.T, pod *corev1.Pod) {
		if _, c := seedDiscovery(t, pod); c.RestartPolicy != nil || c.StartupProbe != nil {
			t.Errorf("%s: a plain init container expected, got restartPolicy %v", pod.Name, c.RestartPolicy)
		}
	}
	at := func(want int) check {
		return func(t *testing.T, pod *corev1.Pod) {
			if i, _ := seedDiscovery(t, pod); i != want {
				t.Errorf("%s: seed-discovery at %d, want %d", pod.Name, i, want)
			}
		}
	}
	cases := []struct {
		name        string
		annotations map[string]string
		modify      func(*corev1.Pod)
		denied      string // the rule quoted in the denial; "" admits
		check       check
	}{
		{name: "refresh-4s", annotations: map[string]string{contract.Refresh.Annotation: "4s"}, denied: `peergroup.dev/refresh value "4s" is invalid: it must be a Go duration from 5s to 1h`},
		{name: "refresh-5s", annotations: map[string]string{contract.Refresh.Annotation: "5s"}, check: sidecar("5s")},
		{name: "refresh-1h", annotations: map[string]string{contract.Refresh.Annotation: "1h"}, check: sidecar("1h")},
		{name: "refresh-1h0m1s", annotations: map[string]string{contract.Refresh.Annotation: "1h0m1s"}, denied: "from 5s to 1h"},
		{name: "no-refresh", check: plain},
		{name: "seed-address-ip", annotations: map[string]string{contract.SeedAddressValue.Annotation: "ip"}, check: plain},
		{name: "seed-address-dns", annotations: map[string]string{contract.SeedAddressValue.Annotation: "dns"}, denied: `peergroup.dev/seed-address value "dns" is invalid: it must be ip or hostname`},
		{name: "seed-address-hostname-plain-pod", annotations: map[string]string{contract.SeedAddressValue.Annotation: "hostname"},
			denied: `hostname needs a stable DNS name <pod>.cassandra.<namespace>.svc, which only a pod with spec.hostname and spec.subdomain "cassandra" has`},
		{name: "cassandra-0", annotations: map[string]string{contract.SeedAddressValue.Annotation: "hostname"},
			modify: func(p *corev1.Pod) { p.Spec.Hostname, p.Spec.Subdomain = "cassandra-0", "cassandra" }, check: plain},
		{name: "init-first-yes", annotations: map[string]string{contract.InitFirstAnnotation: "yes"}, denied: `peergroup.dev/init-first value "yes" is invalid: it must be "true" or "false"`},
		{name: "init-first", annotations: map[string]string{contract.InitFirstAnnotation: "true", contract.Refresh.Annotation: "30s"},
			modify: func(p *corev1.Pod) {
				p.Spec.InitContainers = []corev1.Container{{Name: "istio-init", Image: "busybox"}}
			}, check: func(t *testing.T, p *corev1.Pod) { at(0)(t, p); sidecar("30s")(t, p) }},
		{name: "mesh-last", modify: func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "istio-init", Image: "busybox"}}
		}, check: at(1)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pod := cassandraPod(ns, tc.name)
			pod.Annotations = tc.annotations
			if tc.modify != nil {
				tc.modify(pod)
			}
			err := cluster.Client.Create(ctx, pod)
			if tc.denied != "" {
				if err == nil || !strings.Contains(err.Error(), tc.denied) {
					t.Fatalf("error %v, want a denial saying %q", err, tc.denied)
				}
				return
			}
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			requireInjected(t, pod)
			tc.check(t, pod)
		})
	}
}
