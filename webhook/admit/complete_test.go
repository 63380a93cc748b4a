package admit

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/peergroup/peergroup/contract"
)

// injectedPod is twoContainerPod as the webhook injected it.
func injectedPod(t *testing.T) *corev1.Pod {
	t.Helper()
	p := twoContainerPod()
	p.Labels = map[string]string{contract.GroupLabel: "cassandra"}
	out, _, err := Mutate(p, cassandra, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A reinvocation completes an injected pod: a container another webhook
// added gets the env and the mount, the others are left alone; a pod
// injected before the peer label existed gets the label; a complete pod
// gets nothing.
func TestCompleteInjectedPods(t *testing.T) {
	sidecar := corev1.Container{Name: "sidecar", Image: "proxy"}
	cases := []struct {
		name       string
		modify     func(*corev1.Pod)
		verdict    Verdict
		reason     Reason
		incomplete []string
	}{
		{"complete", func(*corev1.Pod) {}, VerdictSkipped, ReasonAlreadyInjected, nil},
		{"a container added since", func(p *corev1.Pod) { p.Spec.Containers = append(p.Spec.Containers, sidecar) }, VerdictInjected, ReasonCompleted, []string{"sidecar"}},
		{"injected before the peer label", func(p *corev1.Pod) { delete(p.Labels, contract.PeerLabel) }, VerdictInjected, ReasonCompleted, nil},
		{"a container added since mounts over the seeds", func(p *corev1.Pod) {
			c := sidecar
			c.VolumeMounts = []corev1.VolumeMount{{Name: "other", MountPath: contract.SeedsMountPath}}
			p.Spec.Containers = append(p.Spec.Containers, c)
		}, VerdictDenied, ReasonCollision, []string{"sidecar"}},
		{"only the annotation: nothing to mount", func(p *corev1.Pod) {
			p.Spec.InitContainers = p.Spec.InitContainers[:1]
			p.Spec.Volumes = nil
			p.Spec.Containers = append(p.Spec.Containers, sidecar)
		}, VerdictSkipped, ReasonAlreadyInjected, []string{"sidecar"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := injectedPod(t)
			tc.modify(p)
			d := decideT(t, p, nil, nil)
			if d.Verdict != tc.verdict || d.Reason != tc.reason || !slices.Equal(d.Incomplete, tc.incomplete) {
				t.Fatalf("%s, incomplete %v; want %s %s %v", summary(d), d.Incomplete, tc.verdict, tc.reason, tc.incomplete)
			}
			if d.Verdict != VerdictInjected {
				return
			}
			out := d.Mutated
			if out.Labels[contract.PeerLabel] != contract.PeerValue || len(out.Spec.InitContainers) != len(p.Spec.InitContainers) || len(out.Spec.Volumes) != len(p.Spec.Volumes) {
				t.Errorf("completed pod: labels %v, %d init containers (had %d), %d volumes (had %d)", out.Labels, len(out.Spec.InitContainers), len(p.Spec.InitContainers), len(out.Spec.Volumes), len(p.Spec.Volumes))
			}
			for i := range out.Spec.Containers {
				c := &out.Spec.Containers[i]
				if !containerComplete(c, appEnv(cassandra)) {
					t.Errorf("container %s still incomplete: env %v mounts %v", c.Name, c.Env, c.VolumeMounts)
				}
				if i < len(p.Spec.Containers) && c.Name != "sidecar" && (len(c.Env) != len(p.Spec.Containers[i].Env) || len(c.VolumeMounts) != len(p.Spec.Containers[i].VolumeMounts)) {
					t.Errorf("container %s was complete and was changed", c.Name)
				}
			}
			// Completing is idempotent: the result needs nothing more.
			if again := decideT(t, out, nil, nil); again.Verdict != VerdictSkipped {
				t.Errorf("a completed pod decided again: %s", summary(again))
			}
		})
	}
}

// Only pods that went through peergroup are peers: the Service selects
// the peer label, which opted-out pods never get.
func TestServiceSelectsOnlyPeers(t *testing.T) {
	svc := DesiredService(twoContainerPod(), "db", cassandra)
	want := map[string]string{contract.GroupLabel: "cassandra", contract.PeerLabel: contract.PeerValue}
	if len(svc.Spec.Selector) != 2 || svc.Spec.Selector[contract.GroupLabel] != "cassandra" || svc.Spec.Selector[contract.PeerLabel] != contract.PeerValue {
		t.Errorf("selector %v, want %v", svc.Spec.Selector, want)
	}
	if out := injectedPod(t); out.Labels[contract.PeerLabel] != contract.PeerValue {
		t.Errorf("injected pod labels %v", out.Labels)
	}
}
