// Package chart tests the Helm chart as rendered by Helm's own packages.
package chart

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/peergroup/peergroup/internal/release"
	"github.com/peergroup/peergroup/test/framework"
	"github.com/peergroup/peergroup/webhook"
	"github.com/peergroup/peergroup/webhook/server"
)

func render(t *testing.T, values map[string]any) *framework.Rendered {
	t.Helper()
	r, err := framework.Render("peergroup", "peergroup-system", values)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mode(m string, extra map[string]any) map[string]any {
	certs := map[string]any{"mode": m}
	for k, v := range extra {
		certs[k] = v
	}
	return map[string]any{"certificates": certs}
}

var modes = map[string]map[string]any{
	"selfSigned":  mode("selfSigned", nil),
	"certManager": mode("certManager", nil),
	"provided":    mode("provided", map[string]any{"provided": map[string]any{"secretName": "my-tls", "caBundle": "Y2E="}}),
}

// The Deployment's args are a complete, valid webhook command line.
func TestDeploymentArgsParse(t *testing.T) {
	for name, values := range modes {
		t.Run(name, func(t *testing.T) {
			args, err := framework.DeploymentArgs(render(t, values))
			if err != nil {
				t.Fatal(err)
			}
			o, err := server.ParseFlags(args, func(string) string { return "peergroup-system" }, "v", &bytes.Buffer{})
			if err != nil {
				t.Fatalf("chart args %q do not parse: %v", args, err)
			}
			if o.Port != 9443 || o.CertDir != "/etc/peergroup/tls" || o.Mutation.SeedDiscoveryImage != release.Image(release.Version) {
				t.Errorf("options %+v", o)
			}
			if o.Mutation.Resources.Limits.Memory().String() != "32Mi" || o.Mutation.Resources.Requests.Cpu().String() != "10m" {
				t.Errorf("init resources %+v", o.Mutation.Resources)
			}
		})
	}
}

func webhookConfig(t *testing.T, r *framework.Rendered) *admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	u := r.Find("MutatingWebhookConfiguration", "")
	if u == nil {
		t.Fatal("no MutatingWebhookConfiguration")
	}
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, mwc); err != nil {
		t.Fatal(err)
	}
	return mwc
}

func TestWebhookEntries(t *testing.T) {
	mwc := webhookConfig(t, render(t, map[string]any{"webhook": map[string]any{"failurePolicy": "Ignore", "timeoutSeconds": 3, "excludedNamespaces": []any{"kube-system", "infra"}}}))
	if len(mwc.Webhooks) != 2 {
		t.Fatalf("want 2 webhook entries, got %d", len(mwc.Webhooks))
	}
	byName := map[string]admissionregistrationv1.MutatingWebhook{}
	for _, w := range mwc.Webhooks {
		byName[w.Name] = w
		if *w.FailurePolicy != admissionregistrationv1.Ignore || *w.TimeoutSeconds != 3 || *w.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy || *w.SideEffects != admissionregistrationv1.SideEffectClassNoneOnDryRun {
			t.Errorf("%s policies: %+v", w.Name, w)
		}
		if w.ClientConfig.Service == nil || *w.ClientConfig.Service.Path != webhook.Path {
			t.Errorf("%s clientConfig %+v", w.Name, w.ClientConfig)
		}
		if len(w.Rules) != 1 || w.Rules[0].Operations[0] != admissionregistrationv1.Create || w.Rules[0].Resources[0] != "pods" {
			t.Errorf("%s rules %+v", w.Name, w.Rules)
		}
	}
	exprs := func(w admissionregistrationv1.MutatingWebhook, sel string) string {
		s := w.ObjectSelector
		if sel == "ns" {
			s = w.NamespaceSelector
		}
		var parts []string
		for _, e := range s.MatchExpressions {
			parts = append(parts, e.Key+" "+string(e.Operator)+" "+strings.Join(e.Values, ","))
		}
		return strings.Join(parts, "; ")
	}
	pod := byName["pod-label.peergroup.dev"]
	if got := exprs(pod, "obj"); got != "peergroup.dev/group Exists ; peergroup.dev/inject NotIn false" {
		t.Errorf("pod-label objectSelector: %s", got)
	}
	if got := exprs(pod, "ns"); got != "kubernetes.io/metadata.name NotIn peergroup-system,kube-system,infra" {
		t.Errorf("pod-label namespaceSelector: %s", got)
	}
	ns := byName["namespace-label.peergroup.dev"]
	if got := exprs(ns, "obj"); got != "peergroup.dev/inject NotIn false" {
		t.Errorf("namespace-label objectSelector: %s", got)
	}
	if got := exprs(ns, "ns"); got != "peergroup.dev/group Exists ; kubernetes.io/metadata.name NotIn peergroup-system,kube-system,infra" {
		t.Errorf("namespace-label namespaceSelector: %s", got)
	}
}

func TestCertificateModes(t *testing.T) {
	cm := render(t, modes["certManager"])
	if cm.Find("Certificate", "peergroup") == nil || cm.Find("Issuer", "peergroup-selfsigned") == nil {
		t.Errorf("certManager objects missing: %v", cm.Kinds())
	}
	if got := webhookConfig(t, cm).Annotations["cert-manager.io/inject-ca-from"]; got != "peergroup-system/peergroup" {
		t.Errorf("inject-ca-from = %q", got)
	}
	withIssuer := render(t, mode("certManager", map[string]any{"certManager": map[string]any{"issuerRef": map[string]any{"name": "corp-ca", "kind": "ClusterIssuer"}}}))
	if withIssuer.Find("Issuer", "") != nil {
		t.Errorf("an issuerRef must not render the self-signed Issuer: %v", withIssuer.Kinds())
	}

	provided := render(t, modes["provided"])
	for _, w := range webhookConfig(t, provided).Webhooks {
		if string(w.ClientConfig.CABundle) != "ca" {
			t.Errorf("provided caBundle not rendered: %q", w.ClientConfig.CABundle)
		}
	}
	if provided.Find("Certificate", "") != nil {
		t.Error("provided mode rendered a Certificate")
	}
}

func TestBadValuesFail(t *testing.T) {
	cases := map[string]map[string]any{
		"certificates.provided.secretName is required":                 mode("provided", map[string]any{"provided": map[string]any{"caBundle": "Y2E="}}),
		"certificates.provided.caBundle is required":                   mode("provided", map[string]any{"provided": map[string]any{"secretName": "x"}}),
		"value must be one of 'selfSigned', 'certManager', 'provided'": mode("vault", nil),
	}
	for want, values := range cases {
		if _, err := framework.Render("peergroup", "peergroup-system", values); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("values %v: error %v, want %q", values, err, want)
		}
	}
}

func TestSchemaRejectsBadValues(t *testing.T) {
	cases := map[string]map[string]any{
		"additional properties 'replicas' not allowed": {"replicas": 3},
		"got string, want integer":                     {"replicaCount": "two"},
		"value must be one of 'Fail', 'Ignore'":        {"webhook": map[string]any{"failurePolicy": "Sometimes"}},
		"additional properties 'mod' not allowed":      {"certificates": map[string]any{"mod": "x"}},
		"maximum": {"webhook": map[string]any{"timeoutSeconds": 60}},
	}
	for want, values := range cases {
		if _, err := framework.Render("peergroup", "peergroup-system", values); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("values %v: error %v, want %q", values, err, want)
		}
	}
}

func certValidity(v string) map[string]any {
	return map[string]any{"certificates": map[string]any{"selfSigned": map[string]any{"certValidity": v}}}
}

// certValidity is whole hours, 1h to 87600h: 262800h (30 years) would make
// a 300-year CA, past what time.Duration holds, and the webhook would never
// become ready.
func TestSchemaBoundsCertValidity(t *testing.T) {
	for _, v := range []string{"262800h", "87601h", "100000h", "0h", "30m", "12s", "1.5h", "8760"} {
		_, err := framework.Render("peergroup", "peergroup-system", certValidity(v))
		if err == nil || !strings.Contains(err.Error(), "certValidity") {
			t.Errorf("certValidity %s: error %v, want the schema to reject it", v, err)
		}
	}
}

// Every certValidity the schema admits is one the webhook accepts: the
// bounds on both sides agree.
func TestCertValidityBoundsAgree(t *testing.T) {
	for _, v := range []string{"1h", "720h", "8760h", "87600h", "87600h0m0s"} {
		args, err := framework.DeploymentArgs(render(t, certValidity(v)))
		if err != nil {
			t.Fatalf("certValidity %s: %v", v, err)
		}
		if _, err := server.ParseFlags(args, func(string) string { return "peergroup-system" }, "v", &bytes.Buffer{}); err != nil {
			t.Errorf("certValidity %s renders args the webhook rejects: %v", v, err)
		}
	}
}

func TestOptionalObjects(t *testing.T) {
	defaults := render(t, nil)
	for _, kind := range []string{"NetworkPolicy", "ServiceMonitor", "Certificate", "Issuer"} {
		if defaults.Find(kind, "") != nil {
			t.Errorf("%s rendered by default", kind)
		}
	}
	for _, kind := range []string{"Deployment", "Service", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "PodDisruptionBudget", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"} {
		if defaults.Find(kind, "") == nil {
			t.Errorf("%s missing by default: %v", kind, defaults.Kinds())
		}
	}
	all := render(t, map[string]any{
		"networkPolicy":       map[string]any{"enabled": true, "metricsFrom": []any{map[string]any{"namespaceSelector": map[string]any{}}}},
		"metrics":             map[string]any{"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "prom"}}},
		"podDisruptionBudget": map[string]any{"enabled": false},
		"commonLabels":        map[string]any{"team": "data"},
		"priorityClassName":   "system-cluster-critical",
	})
	if all.Find("NetworkPolicy", "peergroup") == nil || all.Find("ServiceMonitor", "peergroup") == nil || all.Find("PodDisruptionBudget", "") != nil {
		t.Errorf("optional objects: %v", all.Kinds())
	}
	for _, o := range all.Objects {
		if o.GetLabels()["team"] != "data" {
			t.Errorf("%s %s lacks commonLabels", o.GetKind(), o.GetName())
		}
	}
	dep := all.Find("Deployment", "")
	if pc, _, _ := unstructured.NestedString(dep.Object, "spec", "template", "spec", "priorityClassName"); pc != "system-cluster-critical" {
		t.Errorf("priorityClassName %q", pc)
	}
}

// Least privilege: exactly the verbs the code uses, scoped by name where
// the API allows it.
func TestRBACLeastPrivilege(t *testing.T) {
	r := render(t, nil)
	rules := func(kind string) string {
		o := r.Find(kind, "")
		list, _, _ := unstructured.NestedSlice(o.Object, "rules")
		var out []string
		for _, rule := range list {
			m := rule.(map[string]any)
			out = append(out, fmt.Sprint(m["resources"], m["resourceNames"], m["verbs"]))
		}
		return strings.Join(out, "; ")
	}
	if got := rules("ClusterRole"); got != "[services] <nil> [get list watch create]; [namespaces] <nil> [get list watch]; [pods] <nil> [get list watch patch]; [limitranges] <nil> [list watch]; [events] <nil> [create patch]; [validatingwebhookconfigurations] [peergroup] [list watch get update]; [mutatingwebhookconfigurations] [peergroup] [get watch update]" {
		t.Errorf("ClusterRole rules: %s", got)
	}
	if got := rules("Role"); got != "[secrets] <nil> [create]; [secrets] [peergroup-tls] [get update]" {
		t.Errorf("Role rules: %s", got)
	}
	cm := render(t, modes["certManager"])
	if cm.Find("Role", "") != nil || strings.Contains(fmt.Sprint(cm.Find("ClusterRole", "").Object), "mutatingwebhookconfigurations") {
		t.Error("certManager mode must not grant Secret or mutating webhook configuration access")
	}
	// Every mode reads its own validating configuration, by name, and no
	// more (the caBundle belongs to cert-manager here).
	r = cm
	if got := rules("ClusterRole"); !strings.HasSuffix(got, "; [validatingwebhookconfigurations] [peergroup] [list watch]") {
		t.Errorf("certManager ClusterRole rules: %s", got)
	}
}

// helm lint, with Helm's own linter, in every mode.
func TestHelmLint(t *testing.T) {
	for name, values := range modes {
		linter := lint.AllWithKubeVersion(framework.ChartDir(), values, "peergroup-system", nil)
		for _, msg := range linter.Messages {
			if msg.Severity >= support.WarningSev {
				t.Errorf("%s: %s", name, msg)
			}
		}
	}
}

// The webhook pod runs as non-root on a read-only root filesystem with no
// privilege, and serves admission, metrics and probes on three separate
// ports (metrics and probes never share the TLS admission listener).
func TestDeploymentHardening(t *testing.T) {
	for name, values := range modes {
		t.Run(name, func(t *testing.T) {
			dep := &appsv1.Deployment{}
			if err := render(t, values).Typed("Deployment", dep); err != nil {
				t.Fatal(err)
			}
			pod := dep.Spec.Template.Spec
			if pod.SecurityContext == nil || !ptr.Deref(pod.SecurityContext.RunAsNonRoot, false) {
				t.Errorf("pod securityContext %+v: want runAsNonRoot", pod.SecurityContext)
			}
			if ptr.Deref(pod.AutomountServiceAccountToken, true) == false {
				t.Error("the webhook needs its ServiceAccount token")
			}
			var c *corev1.Container
			for i := range pod.Containers {
				if pod.Containers[i].Name == "webhook" {
					c = &pod.Containers[i]
				}
			}
			if c == nil {
				t.Fatal("no webhook container")
			}
			sc := c.SecurityContext
			if sc == nil || !ptr.Deref(sc.RunAsNonRoot, false) || !ptr.Deref(sc.ReadOnlyRootFilesystem, false) ||
				ptr.Deref(sc.AllowPrivilegeEscalation, true) || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
				t.Errorf("container securityContext %+v: want non-root, read-only root fs, no privilege escalation, drop ALL", sc)
			}
			ports := map[int32]string{}
			for _, p := range c.Ports {
				if other, dup := ports[p.ContainerPort]; dup {
					t.Errorf("ports %s and %s share %d", other, p.Name, p.ContainerPort)
				}
				ports[p.ContainerPort] = p.Name
			}
			o, err := server.ParseFlags(c.Args, func(string) string { return "peergroup-system" }, "v", &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			listeners := []string{fmt.Sprintf(":%d", o.Port), o.MetricsBindAddress, o.HealthProbeBindAddress}
			if len(ports) != 3 || listeners[1] == listeners[0] || listeners[2] == listeners[0] || listeners[1] == listeners[2] {
				t.Errorf("listeners %v, container ports %v: want three separate ports", listeners, ports)
			}
		})
	}
}

// One replica renders no PodDisruptionBudget: minAvailable 1 of 1 would
// block every node drain.
func TestNoDisruptionBudgetForOneReplica(t *testing.T) {
	if pdb := render(t, map[string]any{"replicaCount": 1}).Find("PodDisruptionBudget", ""); pdb != nil {
		t.Errorf("one replica rendered a PodDisruptionBudget: %v", pdb.Object["spec"])
	}
	pdb := render(t, map[string]any{"replicaCount": 3}).Find("PodDisruptionBudget", "")
	if pdb == nil || fmt.Sprint(pdb.Object["spec"].(map[string]any)["minAvailable"]) != "1" {
		t.Errorf("three replicas: %v", pdb)
	}
}

// networkPolicy.webhookFrom limits who may call the webhook port; the probe
// port stays open to the kubelet.
func TestNetworkPolicyWebhookFrom(t *testing.T) {
	r := render(t, map[string]any{"networkPolicy": map[string]any{"enabled": true, "webhookFrom": []any{map[string]any{"ipBlock": map[string]any{"cidr": "10.0.0.0/28"}}}}})
	np := r.Find("NetworkPolicy", "")
	if np == nil {
		t.Fatal("no NetworkPolicy")
	}
	ingress := np.Object["spec"].(map[string]any)["ingress"].([]any)
	webhookRule := ingress[0].(map[string]any)
	if fmt.Sprint(webhookRule["from"]) != "[map[ipBlock:map[cidr:10.0.0.0/28]]]" || fmt.Sprint(webhookRule["ports"]) != "[map[port:webhook protocol:TCP]]" {
		t.Errorf("webhook rule %v", webhookRule)
	}
	if probes := ingress[1].(map[string]any); probes["from"] != nil || fmt.Sprint(probes["ports"]) != "[map[port:probes protocol:TCP]]" {
		t.Errorf("probe rule %v", probes)
	}
}

// OpenShift and private registries: fixedIDs false leaves runAsUser and
// runAsGroup out of the webhook's pods and (by its flag) of the injected
// container, keeping runAsNonRoot; seedDiscovery.imagePullSecrets reach
// the webhook's command line.
func TestFixedIDsAndPullSecretsHonoured(t *testing.T) {
	for _, tc := range []struct {
		values  map[string]any
		fixed   bool
		secrets []string
	}{
		{map[string]any{}, true, nil},
		{map[string]any{"fixedIDs": false, "seedDiscovery": map[string]any{"imagePullSecrets": []any{map[string]any{"name": "regcred"}, map[string]any{"name": "mirror"}}}}, false, []string{"regcred", "mirror"}},
	} {
		r := render(t, tc.values)
		dep := &appsv1.Deployment{}
		if err := r.Typed("Deployment", dep); err != nil {
			t.Fatal(err)
		}
		sc := dep.Spec.Template.Spec.SecurityContext
		if (sc.RunAsUser != nil) != tc.fixed || (sc.RunAsGroup != nil) != tc.fixed || !ptr.Deref(sc.RunAsNonRoot, false) {
			t.Errorf("values %v: pod securityContext %+v", tc.values, sc)
		}
		args, err := framework.DeploymentArgs(r)
		if err != nil {
			t.Fatal(err)
		}
		o, err := server.ParseFlags(args, func(string) string { return "peergroup-system" }, "v", &bytes.Buffer{})
		if err != nil {
			t.Fatalf("chart args %q do not parse: %v", args, err)
		}
		if o.Mutation.FixedIDs != tc.fixed || !slices.Equal(o.Mutation.ImagePullSecrets, tc.secrets) {
			t.Errorf("values %v: fixed IDs %v, pull secrets %q", tc.values, o.Mutation.FixedIDs, o.Mutation.ImagePullSecrets)
		}
	}
	if _, err := framework.Render("peergroup", "peergroup-system", map[string]any{"seedDiscovery": map[string]any{"imagePullSecrets": []any{map[string]any{"name": "Bad_Name"}}}}); err == nil {
		t.Error("a pull secret that is no Secret name was rendered")
	}
}

// hostNetwork: the pods join their nodes' network and keep the cluster's
// DNS; off by default.
func TestHostNetwork(t *testing.T) {
	for _, on := range []bool{false, true} {
		dep := &appsv1.Deployment{}
		if err := render(t, map[string]any{"hostNetwork": on, "webhook": map[string]any{"port": 10260}}).Typed("Deployment", dep); err != nil {
			t.Fatal(err)
		}
		spec := dep.Spec.Template.Spec
		wantDNS := corev1.DNSPolicy("")
		if on {
			wantDNS = corev1.DNSClusterFirstWithHostNet
		}
		if spec.HostNetwork != on || spec.DNSPolicy != wantDNS {
			t.Errorf("hostNetwork %v: pod hostNetwork %v, dnsPolicy %q", on, spec.HostNetwork, spec.DNSPolicy)
		}
	}
	// On the node's network the kubelet's port is taken.
	if _, err := framework.Render("peergroup", "peergroup-system", map[string]any{"hostNetwork": true, "webhook": map[string]any{"port": 10250}}); err == nil || !strings.Contains(err.Error(), "webhook.port 10250 is the kubelet's port") {
		t.Errorf("hostNetwork with webhook.port 10250: %v", err)
	}
	if _, err := framework.Render("peergroup", "peergroup-system", map[string]any{"webhook": map[string]any{"port": 10250}}); err != nil {
		t.Errorf("webhook.port 10250 in the pod's own network: %v", err)
	}
}

// The chart deploys the release this tree is: its appVersion and image
// repository are the ones the binaries report and the CLI's inject writes
// by default (inject once wrote :dev while the chart deployed 0.1.0).
func TestChartIsTheRelease(t *testing.T) {
	r := render(t, nil)
	var dep *appsv1.Deployment
	for _, obj := range r.Objects {
		if obj.GetKind() == "Deployment" {
			dep = &appsv1.Deployment{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, dep); err != nil {
				t.Fatal(err)
			}
		}
	}
	if dep == nil {
		t.Fatal("no Deployment rendered")
	}
	want := release.Image(release.Version)
	if got := dep.Spec.Template.Spec.Containers[0].Image; got != want {
		t.Errorf("the chart deploys %s, the release is %s (internal/release and Chart.yaml appVersion must agree)", got, want)
	}
	if !slices.Contains(dep.Spec.Template.Spec.Containers[0].Args, "--seed-discovery-image="+want) {
		t.Errorf("the chart injects another image than %s: %v", want, dep.Spec.Template.Spec.Containers[0].Args)
	}
}

// The validating phase gets exactly the pods the mutating phase got: the
// ValidatingWebhookConfiguration is the mutating one's entries with the
// validating path, in every certificate mode (the caBundle, the
// cert-manager annotation and the name included), and the webhook is told
// its name in every mode.
func TestValidatingConfigurationMirrorsMutating(t *testing.T) {
	for name, values := range modes {
		t.Run(name, func(t *testing.T) {
			r := render(t, values)
			mwc := webhookConfig(t, r)
			u := r.Find("ValidatingWebhookConfiguration", "")
			if u == nil {
				t.Fatal("no ValidatingWebhookConfiguration")
			}
			got := &admissionregistrationv1.ValidatingWebhookConfiguration{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, got); err != nil {
				t.Fatal(err)
			}
			want := framework.ValidatingFor(mwc, "")
			got.TypeMeta = want.TypeMeta
			if !equality.Semantic.DeepEqual(got, want) {
				t.Errorf("validating configuration differs from the mutating one's entries:\n got %+v\nwant %+v", got, want)
			}
			if !webhook.CallsValidatePath(got) {
				t.Error("the webhook would not recognise its validating configuration")
			}
			args, err := framework.DeploymentArgs(r)
			if err != nil {
				t.Fatal(err)
			}
			o, err := server.ParseFlags(args, func(string) string { return "peergroup-system" }, "v", &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			if o.Certs.WebhookConfigName != got.Name {
				t.Errorf("--webhook-config-name %q, the configuration is %q", o.Certs.WebhookConfigName, got.Name)
			}
		})
	}
}

// The chart is versioned with the image (version = appVersion = the
// release), and the README installs, and docs/install.md upgrades to,
// exactly that version from the OCI reference users install from.
func TestChartVersionIsTheImages(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(framework.ChartDir(), "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var chart struct {
		Version, AppVersion string `json:",omitempty"`
	}
	if err := yaml.Unmarshal(data, &chart); err != nil {
		t.Fatal(err)
	}
	if chart.Version != release.Version || chart.AppVersion != release.Version {
		t.Errorf("Chart.yaml version %q appVersion %q, release %q: the chart is versioned with the image", chart.Version, chart.AppVersion, release.Version)
	}
	cmds, err := framework.ReadmeUseIt()
	if err != nil {
		t.Fatal(err)
	}
	want := "helm install peergroup oci://ghcr.io/peergroup/charts/peergroup --version " + release.Version + " "
	if !strings.HasPrefix(cmds[0], want) {
		t.Errorf("README's Use it starts %q, want %q", cmds[0], want)
	}
	// The upgrade docs/install.md gives, which the real-node suite runs as
	// written, goes to this release.
	upgrade, err := framework.DocCommands("docs/install.md", "### Upgrade and uninstall")
	if err != nil {
		t.Fatal(err)
	}
	want = "helm upgrade peergroup oci://ghcr.io/peergroup/charts/peergroup --version " + release.Version + " "
	if len(upgrade) != 1 || !strings.HasPrefix(upgrade[0], want) {
		t.Errorf("docs/install.md's upgrade is %q, want one command starting %q", upgrade, want)
	}
	requirePreviousRelease(t)
}

// framework.PreviousRelease is the release just before this one, made
// from the commit its tag names: the one the real-node suite upgrades
// from.
func requirePreviousRelease(t *testing.T) {
	t.Helper()
	prev := framework.PreviousRelease
	if err := prev.Check(); err != nil {
		t.Fatal(err)
	}
	current, err := version.ParseSemantic(release.Version)
	if err != nil {
		t.Fatal(err)
	}
	previous, err := version.ParseSemantic(prev.Version)
	if err != nil {
		t.Fatal(err)
	}
	if !previous.LessThan(current) {
		t.Fatalf("framework.PreviousRelease %s is not before this release %s (docs/development.md, Releasing)", prev.Version, release.Version)
	}
	out, err := exec.Command("git", "-C", framework.RepoRoot(), "tag", "--list", "v*").Output()
	if err != nil {
		t.Fatalf("git tag: %v", err)
	}
	for _, tag := range strings.Fields(string(out)) {
		v, err := version.ParseSemantic(strings.TrimPrefix(tag, "v"))
		if err == nil && previous.LessThan(v) && v.LessThan(current) {
			t.Errorf("tag %s is a release between framework.PreviousRelease %s and this one %s: upgrade from it", tag, prev.Version, release.Version)
		}
	}
}

// Every place the docs name the release to install, pull or build
// (`--version X`, the image `ghcr.io/peergroup/peergroup:X`, `VERSION=X`)
// names this one: a release bump that misses one fails here.
func TestDocsNameThisRelease(t *testing.T) {
	named := regexp.MustCompile(`(ghcr\.io/peergroup/peergroup:|--version |VERSION=)(\d+\.\d+\.\d+)`)
	files, err := filepath.Glob(filepath.Join(framework.RepoRoot(), "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, f := range append(files, filepath.Join(framework.RepoRoot(), "README.md"), filepath.Join(framework.ChartDir(), "values.yaml"), filepath.Join(framework.ChartDir(), "README.md")) {
		data, err := os.ReadFile(f)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range named.FindAllStringSubmatch(string(data), -1) {
			found++
			if m[2] != release.Version {
				t.Errorf("%s names %q: the release is %s", filepath.Base(f), m[0], release.Version)
			}
		}
	}
	if found == 0 {
		t.Error("no doc names the release: the pattern no longer matches the docs")
	}
}
