package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/inspect"
	"github.com/peergroup/peergroup/test/framework"
)

const release, releaseNS = "peergroup", "peergroup-system"

// TestHelmInstallForReal is what users do: the chart installed by Helm with
// its default values (selfSigned) on a cluster whose only node is real, the
// webhook running as the chart's Deployment from the chart's image, and
// the API server calling it through its Service (aggregator routing: at
// its endpoint's pod IP on the node's bridge). Then the README's "Use it"
// commands as written, `helm upgrade` while member pods are created, and
// `helm uninstall`, each as the README says.
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
		created, refused := createMembersUntil(t, ctx, lc, func() {
			shell(t, "helm upgrade "+release+" charts/peergroup -n "+releaseNS+" --reuse-values --set-string podAnnotations.restarted=1 --wait")
		})
		if len(created) == 0 {
			t.Fatal("no member pod was created during the upgrade")
		}
		for _, p := range created {
			if !slices.ContainsFunc(p.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == "seed-discovery" }) {
				t.Errorf("%s was admitted without seed-discovery during the upgrade", p.Name)
			}
		}
		t.Logf("%d member pods created during the upgrade, all injected; %d refused and retried (failurePolicy Fail)", len(created), refused)
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
}

// requireWebhookFromChart checks the webhook runs as the chart's
// Deployment, all replicas ready on the real node from the chart's image,
// with its caBundle patched in.
func requireWebhookFromChart(t *testing.T, ctx context.Context, lc *framework.LocalCluster) {
	t.Helper()
	dep := &appsv1.Deployment{}
	if err := lc.Client.Get(ctx, client.ObjectKey{Namespace: releaseNS, Name: release}, dep); err != nil {
		t.Fatal(err)
	}
	if dep.Status.ReadyReplicas != *dep.Spec.Replicas || dep.Status.UpdatedReplicas != *dep.Spec.Replicas {
		t.Fatalf("webhook Deployment %d/%d ready, %d updated", dep.Status.ReadyReplicas, *dep.Spec.Replicas, dep.Status.UpdatedReplicas)
	}
	appVersion, err := framework.ChartAppVersion()
	if err != nil {
		t.Fatal(err)
	}
	if img := dep.Spec.Template.Spec.Containers[0].Image; img != "ghcr.io/peergroup/peergroup:"+appVersion {
		t.Errorf("webhook image %s, want the chart's default", img)
	}
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

// createMembersUntil creates member pods one after another while during
// runs, retrying each that admission refused; it returns the pods created
// and how many creations were refused.
func createMembersUntil(t *testing.T, ctx context.Context, lc *framework.LocalCluster, during func()) (created []*corev1.Pod, refused int) {
	t.Helper()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			p := memberPod(fmt.Sprintf("during-upgrade-%d", i))
			for {
				err := lc.Client.Create(ctx, p)
				if err == nil {
					created = append(created, p) // as admitted
					break
				}
				if apierrors.IsAlreadyExists(err) || ctx.Err() != nil {
					return
				}
				refused++
				time.Sleep(200 * time.Millisecond)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	during()
	close(done)
	wg.Wait()
	return created, refused
}
