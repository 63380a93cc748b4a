package inspect

import (
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/webhook/admit"
)

// Recreate is what audit --fix acts on: true only where a pod created now
// in place of the finding would be injected. Looking Services up
// (AuditCluster.Services) reports the same pods, and turns Recreate off
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
		d, _ := decide(p, admit.DefaultConfig(), nil, &StaticServices{})
		*p = *d.Mutated
	})
	if f := Uninjected([]corev1.Pod{injectedPod}, AuditCluster{Services: service("10.0.0.9")}, admit.DefaultConfig()); len(f) != 0 {
		t.Errorf("an injected pod is reported: %+v", f)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pods := []corev1.Pod{tc.pod}
			nsLabels := map[string]map[string]string{"db": nil}
			findings := Uninjected(pods, AuditCluster{NamespaceLabels: nsLabels, Services: tc.services}, admit.DefaultConfig())
			if len(findings) != 1 || findings[0].Recreate != tc.recreate || !strings.Contains(findings[0].Reason, tc.reason) {
				t.Errorf("findings %+v, want one with recreate %t and a reason containing %q", findings, tc.recreate, tc.reason)
			}
		})
	}
}

// The audit decides with the namespace's LimitRanges and the live webhook
// configuration, as the webhook would for the pod replacing a finding: a
// LimitRange the init container breaks (min cpu 50m, its request 10m)
// makes the member one the webhook would deny, and a configuration whose
// entries would not send the replacement leaves it uninjected; neither is
// recreated (before: --fix evicted such a member and the webhook
// denied its replacement).
func TestAuditDecidesAsTheWebhook(t *testing.T) {
	p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "p", Labels: map[string]string{contract.GroupLabel: "cassandra"}}}
	p.Spec.Containers = []corev1.Container{{Name: "c", Image: "x"}}
	minCPU := corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "tenant"}, Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
		Type: corev1.LimitTypeContainer, Min: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m")},
	}}}}
	elsewhere := minCPU
	elsewhere.Namespace = "other"
	excluding := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "peergroup"}, Webhooks: []admissionregistrationv1.MutatingWebhook{{
		Name: "pod-label.peergroup.dev",
		Rules: []admissionregistrationv1.RuleWithOperations{{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
			Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
		}},
		NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"db"}}}},
		ObjectSelector:    &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: contract.GroupLabel, Operator: metav1.LabelSelectorOpExists}}},
	}}}
	including := excluding.DeepCopy()
	including.Webhooks[0].NamespaceSelector = &metav1.LabelSelector{}
	for _, tc := range []struct {
		name     string
		cluster  AuditCluster
		recreate bool
		reason   string
	}{
		{"a LimitRange the init container breaks", AuditCluster{LimitRanges: []corev1.LimitRange{minCPU}}, false, "that the webhook would deny: peergroup: LimitRange db/tenant would reject the injected seed-discovery init container: cpu must be at least 50m (request 10m)"},
		{"a LimitRange of another namespace", AuditCluster{LimitRanges: []corev1.LimitRange{elsewhere}}, true, "without the seed-discovery init container"},
		{"no entry sends the replacement", AuditCluster{Webhooks: excluding}, false, "no entry of the webhook configuration peergroup would send the pod replacing it to peergroup (pod-label.peergroup.dev: "},
		{"an entry sends the replacement", AuditCluster{Webhooks: including}, true, "without the seed-discovery init container"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			findings := Uninjected([]corev1.Pod{p}, tc.cluster, admit.DefaultConfig())
			if len(findings) != 1 || findings[0].Recreate != tc.recreate || !strings.Contains(findings[0].Reason, tc.reason) {
				t.Errorf("findings %+v, want one with recreate %t and a reason containing %q", findings, tc.recreate, tc.reason)
			}
		})
	}
}
