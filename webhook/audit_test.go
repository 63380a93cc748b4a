package webhook

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestUninjected(t *testing.T) {
	pod := func(ns, name string, labels map[string]string, injected bool) corev1.Pod {
		p := corev1.Pod{}
		p.Namespace, p.Name, p.Labels = ns, name, labels
		if injected {
			p.Spec.InitContainers = []corev1.Container{{Name: InitContainerName, VolumeMounts: []corev1.VolumeMount{{Name: SeedsVolumeName, MountPath: SeedsMountPath}}}}
		}
		return p
	}
	pods := []corev1.Pod{
		pod("db", "b-missed", nil, false),
		pod("db", "a-injected", nil, true),
		pod("db", "opted-out", map[string]string{InjectLabel: "false"}, false),
		pod("apps", "labelled-missed", map[string]string{GroupLabel: "akka"}, false),
		pod("apps", "plain", nil, false),
		pod("kube-system", "ignored", map[string]string{GroupLabel: "x"}, false),
	}
	got := Uninjected(pods, map[string]map[string]string{"db": {GroupLabel: "cassandra"}}, DefaultConfig())
	if len(got) != 2 || got[0].Pod != "labelled-missed" || got[0].Group != "akka" || got[1].Pod != "b-missed" || got[1].Group != "cassandra" {
		t.Fatalf("findings %+v", got)
	}
}
