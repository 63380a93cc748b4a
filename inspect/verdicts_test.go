package inspect

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/webhook"
	"github.com/peergroup/peergroup/webhook/admit"
)

// TestVerdictsFollowTheWebhook pins explain's and audit's verdicts in one
// table, and runs every row through the webhook's own handler as a dry-run
// admission: the same verdict and the same reason, so neither tool can
// drift from what the webhook does.
func TestVerdictsFollowTheWebhook(t *testing.T) {
	pod := func(labels, annotations map[string]string, edit ...func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "p", Labels: labels, Annotations: annotations}}
		p.Spec.Containers = []corev1.Container{{Name: "c", Image: "x", Ports: []corev1.ContainerPort{{ContainerPort: 7000}}}}
		for _, e := range edit {
			e(p)
		}
		return p
	}
	member := map[string]string{contract.GroupLabel: "cassandra"}
	injected := map[string]string{contract.InjectedAnnotation: "0.1.0"}
	withInit := func(c corev1.Container) func(*corev1.Pod) {
		return func(p *corev1.Pod) { p.Spec.InitContainers = append(p.Spec.InitContainers, c) }
	}
	peergroupInit := corev1.Container{Name: contract.InitContainerName, VolumeMounts: []corev1.VolumeMount{{Name: contract.SeedsVolumeName, MountPath: contract.SeedsMountPath}}}
	windows := func(p *corev1.Pod) { p.Spec.OS = &corev1.PodOS{Name: corev1.Windows} }
	withSeedsVolume := func(p *corev1.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: contract.SeedsVolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	}
	// A pod as an earlier version injected it: everything but the peer label.
	injectedBefore := func() *corev1.Pod {
		d, _ := decide(pod(member, nil), admit.DefaultConfig(), nil, &StaticServices{})
		p := d.Mutated
		delete(p.Labels, contract.PeerLabel)
		return p
	}
	headless := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "cassandra"}, Spec: corev1.ServiceSpec{ClusterIP: "None"}}
	clusterIP := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "cassandra"}, Spec: corev1.ServiceSpec{ClusterIP: "10.0.0.9"}}
	cases := []struct {
		name     string
		pod      *corev1.Pod
		nsLabels map[string]string
		service  *corev1.Service
		excluded []string
		// What the webhook decides.
		verdict admit.Verdict
		reason  admit.Reason
		// What explain says.
		explain, explainWhy, serviceState string
		// What audit reports of the pod running as it is ("" = nothing).
		audit string
	}{
		{"member, no Service yet", pod(member, nil), nil, nil, nil,
			admit.VerdictInjected, admit.ReasonNone, VerdictInjected, "member of group cassandra (pod-label)", "will be created (headless)", "without the seed-discovery init container"},
		{"namespace member, Service exists", pod(nil, nil), member, headless, nil,
			admit.VerdictInjected, admit.ReasonNone, VerdictInjected, "(namespace-label)", "exists, headless: used as is", "member of group cassandra (namespace-label)"},
		{"not a member", pod(nil, nil), nil, nil, nil,
			admit.VerdictSkipped, admit.ReasonNotMember, VerdictNotInjected, "no peergroup.dev/group label", "", ""},
		{"opted out", pod(map[string]string{contract.InjectLabel: "false"}, nil), member, nil, nil,
			admit.VerdictSkipped, admit.ReasonOptedOut, VerdictNotInjected, "opted out", "", ""},
		{"invalid group", pod(map[string]string{contract.GroupLabel: "X"}, nil), nil, nil, nil,
			admit.VerdictDenied, admit.ReasonInvalidName, VerdictDenied, `value "X" is invalid`, "", "invalid group: "},
		{"bad tuning", pod(member, map[string]string{contract.SeedCount.Annotation: "0"}), nil, nil, nil,
			admit.VerdictDenied, admit.ReasonInvalidTuning, VerdictDenied, "seed-count value \"0\"", "", "that the webhook would deny: peergroup: annotation peergroup.dev/seed-count"},
		{"collision", pod(member, nil, withInit(corev1.Container{Name: contract.InitContainerName})), nil, nil, nil,
			admit.VerdictDenied, admit.ReasonCollision, VerdictDenied, "not peergroup's", "", "that the webhook would deny"},
		{"windows", pod(member, nil, windows), nil, nil, nil,
			admit.VerdictDenied, admit.ReasonUnsupportedOS, VerdictDenied, "runs on Linux only", "", "that the webhook would deny"},
		{"injected, a container added since", pod(member, injected, withInit(peergroupInit), withSeedsVolume, func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "sidecar", Image: "proxy"})
		}), nil, headless, nil,
			admit.VerdictInjected, admit.ReasonCompleted, VerdictInjected, "already injected; the webhook adds what is missing since", "exists, headless: used as is", "whose containers c, sidecar lack the env and seeds mount"},
		{"injected before the peer label", injectedBefore(), nil, headless, nil,
			admit.VerdictInjected, admit.ReasonCompleted, VerdictInjected, "already injected; the webhook adds what is missing since", "exists, headless: used as is", ""},
		{"injected, headless Service", pod(member, injected, withInit(peergroupInit)), nil, headless, nil,
			admit.VerdictSkipped, admit.ReasonAlreadyInjected, VerdictAlreadyInjected, "annotation", "exists, headless: used as is", ""},
		{"annotation only", pod(member, injected), nil, headless, nil,
			admit.VerdictSkipped, admit.ReasonAlreadyInjected, VerdictAlreadyInjected, "annotation", "exists, headless: used as is", "carries the peergroup.dev/injected annotation but not the seed-discovery init container"},
		{"injected, Service not headless", pod(member, injected, withInit(peergroupInit)), nil, clusterIP, nil,
			admit.VerdictDenied, admit.ReasonServiceNotHeadless, VerdictDenied, "is not headless", "exists and is not headless", ""},
		{"member, Service not headless", pod(member, nil), nil, clusterIP, nil,
			admit.VerdictDenied, admit.ReasonServiceNotHeadless, VerdictDenied, "is not headless", "exists and is not headless", "without the seed-discovery init container"},
		{"excluded namespace", pod(member, nil), nil, nil, []string{"kube-system", "db"},
			admit.VerdictSkipped, admit.ReasonExcludedNamespace, VerdictNotInjected, "namespace db is excluded", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := admit.DefaultConfig()
			if tc.excluded != nil {
				cfg.ExcludedNamespaces = tc.excluded
			}
			verdict, reason := handlerVerdict(t, cfg, tc.pod, tc.nsLabels, tc.service)
			if verdict == admit.VerdictInjected && reason == admit.ReasonNone {
				// Injections carry no reason label in the metrics; the
				// decision's own reason (none, or completed) is pinned below.
				reason = tc.reason
				if d, _ := decide(tc.pod, cfg, tc.nsLabels, &StaticServices{Existing: tc.service, Known: true}); d.Reason != tc.reason {
					t.Errorf("decision reason %s, want %s", d.Reason, tc.reason)
				}
			}
			if verdict != tc.verdict || reason != tc.reason {
				t.Errorf("webhook: %s/%s, want %s/%s", verdict, reason, tc.verdict, tc.reason)
			}

			e := Explain(ExplainInput{Pod: tc.pod, NamespaceLabels: tc.nsLabels, Config: cfg, Service: tc.service, ServiceKnown: true})
			if e.Verdict != tc.explain || !strings.Contains(e.Reason, tc.explainWhy) || e.ServiceState != tc.serviceState {
				t.Errorf("explain: %s: %q (service %q), want %s: %q (service %q)", e.Verdict, e.Reason, e.ServiceState, tc.explain, tc.explainWhy, tc.serviceState)
			}

			findings := Uninjected([]corev1.Pod{*tc.pod}, AuditCluster{NamespaceLabels: map[string]map[string]string{"db": tc.nsLabels}}, cfg)
			switch {
			case tc.audit == "" && len(findings) > 0:
				t.Errorf("audit reports %+v, want nothing", findings)
			case tc.audit != "" && (len(findings) != 1 || !strings.Contains(findings[0].Reason, tc.audit)):
				t.Errorf("audit reports %+v, want one finding containing %q", findings, tc.audit)
			}
		})
	}
}

// handlerVerdict admits pod through the webhook's handler (dry run, the
// Service in a fake cluster) and reads the verdict and reason back from
// the metrics it recorded.
func handlerVerdict(t *testing.T, cfg admit.Config, pod *corev1.Pod, nsLabels map[string]string, existing *corev1.Service) (admit.Verdict, admit.Reason) {
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	objs := []client.Object{}
	if existing != nil {
		objs = append(objs, existing)
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).Build()
	reg := prometheus.NewRegistry()
	h := &webhook.Handler{
		Decider: admit.Decider{Config: cfg, Namespaces: StaticNamespaceLabels(nsLabels), Services: &webhook.ClusterServiceEnsurer{Cache: c, Live: c, Writer: c}},
		Metrics: webhook.NewMetrics(reg),
	}
	raw, err := runtime.Encode(clientgoscheme.Codecs.LegacyCodec(corev1.SchemeGroupVersion), pod)
	if err != nil {
		t.Fatal(err)
	}
	(&admission.Webhook{Handler: h}).Handle(context.Background(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "u", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: pod.Namespace,
		Operation: admissionv1.Create, DryRun: ptr.To(true), Object: runtime.RawExtension{Raw: raw},
	}})
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var verdict admit.Verdict
	var reason admit.Reason
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				switch {
				case f.GetName() == "peergroup_admissions_total" && l.GetName() == "result":
					verdict = admit.Verdict(l.GetValue())
				case l.GetName() == "reason":
					reason = admit.Reason(l.GetValue())
				}
			}
		}
	}
	return verdict, reason
}
