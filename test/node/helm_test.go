package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/inspect"
	pgrelease "github.com/peergroup/peergroup/internal/release"
	"github.com/peergroup/peergroup/test/framework"
)

const release, releaseNS = "peergroup", "peergroup-system"

// TestHelmInstallForReal is what users do: the chart installed by Helm with
// its default values (selfSigned) on a cluster whose only node is real, the
// webhook running as the chart's Deployment from the chart's image, and
// the API server calling it through its Service (aggregator routing: at
// its endpoint's pod IP on the node's bridge). Then the README's "Use it"
// commands as written, `helm upgrade` while member pods are created, and
// `helm uninstall`, each as the README says; then the previous release
// installed from its chart reference, upgraded to this one and rolled back,
// with no member pod refused.
func TestHelmInstallForReal(t *testing.T) {
	if testing.Short() {
		t.Skip("real-node suite skipped by -short")
	}
	// Room to wait for the node lock while another package's cluster holds it.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	logDir := filepath.Join(t.TempDir(), "logs")
	lc, err := framework.StartLocalCluster(ctx, framework.LocalClusterOptions{LogDir: logDir, RealNodeOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Stop()
	t.Logf("figure: a cluster whose only node is real, Ready in %s", lc.ReadyIn.Round(100*time.Millisecond))
	cli, err := framework.BuildBinary(ctx, "peergroup", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := framework.PushNodeImages(ctx, lc.Node); err != nil {
		t.Fatal(err)
	}
	shell := func(t *testing.T, line string) string {
		t.Helper()
		var out bytes.Buffer
		if err := lc.Shell(ctx, &out, line); err != nil {
			var diag bytes.Buffer
			for _, d := range []string{"kubectl get pods -A -o wide", "kubectl describe pods -n " + releaseNS, "kubectl logs -n " + releaseNS + " deploy/" + release + " --tail 30", "kubectl get events -A"} {
				_ = lc.Shell(context.Background(), &diag, "echo '$ "+d+"'; "+d)
			}
			t.Fatalf("%v\n%s\n%s", err, out.String(), diag.String())
		}
		t.Logf("$ %s\n%s", line, strings.TrimSpace(out.String()))
		return out.String()
	}

	t.Run("README: helm install, then the NATS walkthrough", func(t *testing.T) {
		cmds, err := framework.UseItOnRealNode(logDir, "--timeout", "3m")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(cmds[0], "helm install ") {
			t.Fatalf("README's Use it does not start with helm install: %q", cmds)
		}
		for _, c := range cmds {
			shell(t, c)
		}
		// The chart came from oci://ghcr.io through the loopback mirror.
		if lc.ChartPulls() == 0 {
			t.Error("helm install did not pull the chart through the ghcr.io mirror")
		}
		requireWebhookFromChart(t, ctx, lc)
		pods, took, err := framework.WaitOneNATSCluster(ctx, lc.Cluster, "nats", map[string]string{"app": "nats"}, 3, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("figure: one cluster of 3 %s after the last pod started (helm install)", took.Round(100*time.Millisecond))
		for _, p := range pods {
			if !slices.ContainsFunc(p.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == "seed-discovery" }) {
				t.Errorf("%s was not injected", p.Name)
			}
		}
		// The group as its members see it: every pod a ready, injected
		// member with a role, at most one founder (the README scales at
		// once, so the seeds may start the group together), one seed
		// list, nothing to act on; exit 0.
		shell(t, cli+" status nats -n nats")
		var status inspect.GroupStatus
		if err := json.Unmarshal([]byte(shell(t, cli+" status nats -n nats --output json")), &status); err != nil {
			t.Fatal(err)
		}
		founders := 0
		for _, m := range status.Members {
			if m.Role == "founder" {
				founders++
			}
			if !m.Ready || !m.Injected || m.Role == "" || len(m.Problems) > 0 {
				t.Errorf("status of %s: %+v", m.Pod, m)
			}
		}
		if len(status.Members) != len(pods) || founders > 1 || !status.OneSeedList || len(status.Problems) > 0 {
			t.Errorf("peergroup status: %+v", status)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("helm upgrade: a rolling restart while member pods are created", func(t *testing.T) {
		caBefore := caBundle(t, ctx, lc)
		r := whileReplaced(t, ctx, lc, "during-restart", func() {
			shell(t, "helm upgrade "+release+" charts/peergroup -n "+releaseNS+" --reuse-values --set-string podAnnotations.restarted=1 --wait")
		})
		appVersion, err := framework.ChartAppVersion()
		if err != nil {
			t.Fatal(err)
		}
		requireAllAdmitted(t, r, appVersion)
		if after := caBundle(t, ctx, lc); !bytes.Equal(after, caBefore) {
			t.Error("helm upgrade changed the webhook's CA: the README says the Secret and its CA are kept")
		}
		requireWebhookFromChart(t, ctx, lc)
	})

	t.Run("helm uninstall: what the README says goes, goes; the group's Service stays", func(t *testing.T) {
		shell(t, "helm uninstall "+release+" -n "+releaseNS+" --wait")
		mwcs := &admissionregistrationv1.MutatingWebhookConfigurationList{}
		if err := lc.Client.List(ctx, mwcs); err != nil {
			t.Fatal(err)
		}
		if len(mwcs.Items) != 0 {
			t.Errorf("webhook configuration left after uninstall: %s", mwcs.Items[0].Name)
		}
		vwcs := &admissionregistrationv1.ValidatingWebhookConfigurationList{}
		if err := lc.Client.List(ctx, vwcs); err != nil {
			t.Fatal(err)
		}
		for _, v := range vwcs.Items {
			if v.Name == release+"-peergroup" || v.Name == release {
				t.Errorf("validating webhook configuration left after uninstall: %s", v.Name)
			}
		}
		deadline := time.Now().Add(time.Minute)
		for {
			secrets := &corev1.SecretList{}
			if err := lc.Client.List(ctx, secrets, client.InNamespace(releaseNS)); err != nil {
				t.Fatal(err)
			}
			if len(secrets.Items) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the selfSigned Secret %s was not garbage-collected after uninstall", secrets.Items[0].Name)
			}
			time.Sleep(time.Second)
		}
		svc := &corev1.Service{}
		if err := lc.Client.Get(ctx, client.ObjectKey{Namespace: "nats", Name: "nats"}, svc); err != nil {
			t.Errorf("the group's headless Service must stay after uninstall: %v", err)
		}
		p := memberPod("after-uninstall")
		if err := lc.Client.Create(ctx, p); err != nil {
			t.Fatalf("a member pod created after uninstall: %v", err)
		}
		if len(p.Spec.InitContainers) != 0 {
			t.Error("a pod created after uninstall was injected")
		}
		// `peergroup status` flags it (exit 1): a member with no seeds.
		var out bytes.Buffer
		err := lc.Shell(ctx, &out, cli+" status nats -n nats")
		t.Logf("$ peergroup status nats -n nats\n%s", out.String())
		if err == nil || !strings.Contains(out.String(), "after-uninstall") || !strings.Contains(out.String(), "ACT: not injected") {
			t.Errorf("peergroup status after an uninjected member (exit status %v):\n%s", err, out.String())
		}
	})

	// What users do on a release: `helm upgrade` from the previous one,
	// both pulled from oci://ghcr.io, the previous one's image and chart
	// made from its own commit. Pods keep being admitted throughout, by
	// one version or the other, and none is refused; `helm rollback` back
	// to it likewise.
	t.Run("helm upgrade from the previous release, and rollback, while member pods are created: 0 refused", func(t *testing.T) {
		prev := framework.PreviousRelease
		pushStart := time.Now()
		if err := lc.PushRelease(ctx, prev, os.Stdout); err != nil {
			t.Fatal(err)
		}
		t.Logf("figure: release %s made from its commit (or its cache) and pushed in %s", prev.Version, time.Since(pushStart).Round(100*time.Millisecond))
		current, err := framework.ChartAppVersion()
		if err != nil {
			t.Fatal(err)
		}
		if current == prev.Version {
			t.Fatalf("the chart's version is still the previous release's (%s): bump it with each release", current)
		}
		values := filepath.Join(logDir, "no-kube-proxy.yaml") // this cluster's, as for the README's install
		pulls := lc.ChartPulls()
		shell(t, fmt.Sprintf("helm install %s %s --version %s -n %s -f %s --wait --timeout 3m", release, chartRef, prev.Version, releaseNS, values))
		if lc.ChartPulls() == pulls {
			t.Error("helm install of the previous release did not pull it through the ghcr.io mirror")
		}
		requireWebhookVersion(t, ctx, lc, prev.Version)
		requireInjectedBy(t, ctx, lc, "before-upgrade", prev.Version)

		// docs/install.md's upgrade, as written (it names this release:
		// TestChartVersionIsTheImages).
		upgrade, err := framework.DocCommands("docs/install.md", "### Upgrade and uninstall")
		if err != nil {
			t.Fatal(err)
		}
		if len(upgrade) != 1 || !strings.HasPrefix(upgrade[0], "helm upgrade ") {
			t.Fatalf("docs/install.md's upgrade block is %q, want one helm upgrade", upgrade)
		}
		pulls = lc.ChartPulls()
		r := whileReplaced(t, ctx, lc, "from-previous", func() {
			shell(t, upgrade[0]+" --timeout 3m")
		})
		requireAllAdmitted(t, r, prev.Version, current)
		requireWebhookFromChart(t, ctx, lc)
		requireInjectedBy(t, ctx, lc, "after-upgrade", current)
		if lc.ChartPulls() == pulls {
			t.Error("the upgrade did not pull the chart through the ghcr.io mirror")
		}

		r = whileReplaced(t, ctx, lc, "rollback", func() {
			shell(t, fmt.Sprintf("helm rollback %s -n %s --wait --timeout 3m", release, releaseNS))
		})
		requireAllAdmitted(t, r, current, prev.Version)
		requireWebhookVersion(t, ctx, lc, prev.Version)
		requireInjectedBy(t, ctx, lc, "after-rollback", prev.Version)
	})
}

// chartRef is where users install the chart from (the README's Use it).
const chartRef = "oci://ghcr.io/peergroup/charts/peergroup"

// whileReplaced runs replace (a helm command that replaces the webhook's
// replicas) while member pods are created by several clients at once,
// and goes on creating until every old replica has exited, and 2 s more:
// `helm --wait` returns once the new replicas are ready, while the last
// old one may still be in its shutdown delay, serving.
func whileReplaced(t *testing.T, ctx context.Context, lc *framework.LocalCluster, prefix string, replace func()) framework.CreationResult {
	t.Helper()
	loop := framework.StartCreations(ctx, t, lc.Client, framework.CreationsOptions{Namespace: "nats", Group: "nats", Prefix: prefix, Workers: 4})
	time.Sleep(time.Second)
	replace()
	deadline := time.Now().Add(2 * time.Minute)
	for !onlyNewReplicas(t, ctx, lc) {
		if time.Now().After(deadline) {
			t.Fatal("the webhook's old replicas did not exit within 2 minutes of the rollout")
		}
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	r := loop.Finish()
	// The group is what `peergroup status` reads later: only the pods
	// the scenarios made stay in it.
	if err := lc.Client.DeleteAllOf(ctx, &corev1.Pod{}, client.InNamespace("nats"), client.MatchingLabels{framework.CreationsLabel: prefix}, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	return r
}

// onlyNewReplicas says whether the webhook's pods are its Deployment's
// replicas and no more: none terminating, all ready.
func onlyNewReplicas(t *testing.T, ctx context.Context, lc *framework.LocalCluster) bool {
	t.Helper()
	dep := &appsv1.Deployment{}
	if err := lc.Client.Get(ctx, client.ObjectKey{Namespace: releaseNS, Name: release}, dep); err != nil {
		t.Fatal(err)
	}
	pods := &corev1.PodList{}
	if err := lc.Client.List(ctx, pods, client.InNamespace(releaseNS), client.MatchingLabels(dep.Spec.Selector.MatchLabels)); err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != int(*dep.Spec.Replicas) {
		return false
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil || !framework.PodReady(&p) {
			return false
		}
	}
	return true
}

// requireAllAdmitted checks that no member pod creation was refused while
// the webhook's replicas were replaced and that each created pod was
// injected by a webhook of one of versions (the image its seed-discovery
// runs).
func requireAllAdmitted(t *testing.T, r framework.CreationResult, versions ...string) {
	t.Helper()
	by := map[string]int{}
	for _, p := range r.Created {
		i := slices.IndexFunc(p.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == "seed-discovery" })
		if i < 0 {
			continue // Require names it
		}
		img := p.Spec.InitContainers[i].Image
		by[img]++
		if !slices.ContainsFunc(versions, func(v string) bool { return img == pgrelease.Image(v) }) {
			t.Errorf("%s was injected with %s, not the image of %q", p.Name, img, versions)
		}
	}
	t.Logf("figure: while the webhook was replaced: %s; injected by %v", r, by)
	r.Require(t, true)
}

// requireInjectedBy creates a member pod named name and checks the webhook
// of version injected it.
func requireInjectedBy(t *testing.T, ctx context.Context, lc *framework.LocalCluster, name, version string) {
	t.Helper()
	p := memberPod(name)
	if err := lc.Client.Create(ctx, p); err != nil {
		t.Fatalf("member pod %s: %v", name, err)
	}
	i := slices.IndexFunc(p.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == "seed-discovery" })
	if i < 0 || p.Spec.InitContainers[i].Image != pgrelease.Image(version) {
		t.Fatalf("member pod %s was not injected by %s: init containers %+v", name, version, p.Spec.InitContainers)
	}
}

// requireWebhookVersion checks the chart's Deployment runs version's
// image, all replicas ready and updated.
func requireWebhookVersion(t *testing.T, ctx context.Context, lc *framework.LocalCluster, version string) {
	t.Helper()
	dep := &appsv1.Deployment{}
	if err := lc.Client.Get(ctx, client.ObjectKey{Namespace: releaseNS, Name: release}, dep); err != nil {
		t.Fatal(err)
	}
	if dep.Status.ReadyReplicas != *dep.Spec.Replicas || dep.Status.UpdatedReplicas != *dep.Spec.Replicas {
		t.Fatalf("webhook Deployment %d/%d ready, %d updated", dep.Status.ReadyReplicas, *dep.Spec.Replicas, dep.Status.UpdatedReplicas)
	}
	if img := dep.Spec.Template.Spec.Containers[0].Image; img != pgrelease.Image(version) {
		t.Errorf("webhook image %s, want %s", img, pgrelease.Image(version))
	}
}

// requireWebhookFromChart checks the webhook runs as the chart's
// Deployment, all replicas ready on the real node from the chart's image,
// with its caBundle patched in.
func requireWebhookFromChart(t *testing.T, ctx context.Context, lc *framework.LocalCluster) {
	t.Helper()
	appVersion, err := framework.ChartAppVersion()
	if err != nil {
		t.Fatal(err)
	}
	requireWebhookVersion(t, ctx, lc, appVersion)
	if len(caBundle(t, ctx, lc)) == 0 {
		t.Error("the webhook did not patch its caBundle")
	}
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := lc.Client.Get(ctx, client.ObjectKey{Name: release}, vwc); err != nil {
		t.Fatal(err)
	}
	for _, w := range vwc.Webhooks {
		if len(w.ClientConfig.CABundle) == 0 {
			t.Errorf("validating entry %s has no caBundle: the validating phase would refuse every member pod", w.Name)
		}
	}
}

func caBundle(t *testing.T, ctx context.Context, lc *framework.LocalCluster) []byte {
	t.Helper()
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := lc.Client.Get(ctx, client.ObjectKey{Name: release}, mwc); err != nil {
		t.Fatal(err)
	}
	return mwc.Webhooks[0].ClientConfig.CABundle
}

// memberPod is a pod of the NATS group that runs nothing but the sandbox's
// own process: it is admitted (and injected) and that is all it is for.
func memberPod(name string) *corev1.Pod {
	p := &corev1.Pod{}
	p.Name, p.Namespace = name, "nats"
	p.Labels = map[string]string{"peergroup.dev/group": "nats", "app": "nats-member"}
	p.Spec.Containers = []corev1.Container{{Name: "c", Image: "ghcr.io/peergroup/peergroup:never-pulled"}}
	p.Spec.NodeName = "nowhere" // bound to no node: never started
	return p
}
