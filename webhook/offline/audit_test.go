package offline

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/webhook/admit"
)

// Recreate is what audit --fix acts on: true only where a pod created now
// in place of the finding would be injected. Looking Services up
// (UninjectedWithServices) reports the same pods, and turns Recreate off
// for a member whose group's Service is not headless.
func TestFindingRecreate(t *testing.T) {
	pod := func(labels, annotations map[string]string, edit ...func(*corev1.Pod)) corev1.Pod {
		p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "p", Labels: labels, Annotations: annotations}}
		p.Spec.Containers = []corev1.Container{{Name: "c", Image: "x"}}
		for _, e := range edit {
			e(&p)
		}
		return p
	}
	member := map[string]string{contract.GroupLabel: "cassandra"}
	injected := map[string]string{contract.InjectedAnnotation: "0.1.0"}
	withPeergroupInit := func(p *corev1.Pod) {
		p.Spec.InitContainers = []corev1.Container{{Name: contract.InitContainerName, VolumeMounts: []corev1.VolumeMount{{Name: contract.SeedsVolumeName, MountPath: contract.SeedsMountPath}}}}
		p.Spec.Volumes = []corev1.Volume{{Name: contract.SeedsVolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	}
	service := func(clusterIP string) []corev1.Service {
		return []corev1.Service{{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "cassandra"}, Spec: corev1.ServiceSpec{ClusterIP: clusterIP}}}
	}
	cases := []struct {
		name     string
		pod      corev1.Pod
		services []corev1.Service // nil: not looked up
		recreate bool
		reason   string
	}{
		{"uninjected member", pod(member, nil), nil, true, "without the seed-discovery init container"},
		{"uninjected member, headless Service", pod(member, nil), service("None"), true, "without the seed-discovery init container"},
		{"uninjected member, no Service yet", pod(member, nil), []corev1.Service{}, true, "without the seed-discovery init container"},
		{"Service not headless, not looked up", pod(member, nil), nil, true, "without the seed-discovery init container"},
		{"Service not headless", pod(member, nil), service("10.0.0.9"), false, "without the seed-discovery init container; the webhook would deny the pod replacing it: peergroup: Service db/cassandra exists and is not headless"},
		{"invalid group", pod(map[string]string{contract.GroupLabel: "X"}, nil), nil, false, "invalid group"},
		{"bad tuning", pod(member, map[string]string{contract.SeedCount.Annotation: "0"}), nil, false, "would deny"},
		{"annotation without init container", pod(member, injected), nil, false, "carries the peergroup.dev/injected annotation"},
		{"container added after the injection", pod(member, injected, withPeergroupInit), service("None"), true, "whose containers c lack the env"},
	}
	// An injected pod whose Service is not headless is no finding: the
	// Service is looked up for the findings only.
	injectedPod := pod(member, injected, withPeergroupInit, func(p *corev1.Pod) {
		d, _ := decide(p, admit.DefaultConfig(), nil, &admit.StaticServices{})
		*p = *d.Mutated
	})
	if f := UninjectedWithServices([]corev1.Pod{injectedPod}, nil, service("10.0.0.9"), admit.DefaultConfig()); len(f) != 0 {
		t.Errorf("an injected pod is reported: %+v", f)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pods := []corev1.Pod{tc.pod}
			nsLabels := map[string]map[string]string{"db": nil}
			var findings []Finding
			if tc.services == nil {
				findings = Uninjected(pods, nsLabels, admit.DefaultConfig())
			} else {
				findings = UninjectedWithServices(pods, nsLabels, tc.services, admit.DefaultConfig())
			}
			if len(findings) != 1 || findings[0].Recreate != tc.recreate || !strings.Contains(findings[0].Reason, tc.reason) {
				t.Errorf("findings %+v, want one with recreate %t and a reason containing %q", findings, tc.recreate, tc.reason)
			}
		})
	}
}
