// Command demo shows peergroup's main job on a simulated cluster where
// every component is real and runs on loopback: kube-apiserver, etcd,
// kube-controller-manager, kube-scheduler (built from source), kwok as the
// kubelet, CoreDNS; the webhook binary started with the chart's args under
// the chart's ServiceAccount; then the classic Cassandra walkthrough: label
// a namespace, create a ReplicationController with one replica, scale it to
// 3, and check that every pod's seed-discovery chose the same seeds.
//
//	make demo    (go run ./test/demo, once hack/controlplane/build.sh built the components)
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/test/framework"
	"github.com/peergroup/peergroup/webhook"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "\ndemo failed:", err)
		os.Exit(1)
	}
}

var stepN int

func step(format string, args ...any) {
	stepN++
	fmt.Printf("\n==> %d. %s\n", stepN, fmt.Sprintf(format, args...))
}

func run(ctx context.Context) error {
	started := time.Now()
	work := filepath.Join(framework.RepoRoot(), ".cache", "demo")
	_ = os.RemoveAll(work)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}

	step("Build the two peergroup binaries (webhook, seed-discovery)")
	webhookBin, err := framework.BuildBinary(ctx, "peergroup-webhook", work)
	if err != nil {
		return err
	}
	seedBin, err := framework.BuildBinary(ctx, "seed-discovery", work)
	if err != nil {
		return err
	}

	step("Start a local cluster: every component real, every listener on 127.0.0.1")
	lc, err := framework.StartLocalCluster(ctx, framework.LocalClusterOptions{LogDir: filepath.Join(work, "logs"), Progress: os.Stdout})
	if err != nil {
		return err
	}
	defer lc.Stop()

	const release = "peergroup-system"
	step("Install the chart's identity and RBAC (charts/peergroup, certificates.mode=certManager) in %s", release)
	rendered, err := framework.Render("peergroup", release, map[string]any{"certificates": map[string]any{"mode": "certManager"}})
	if err != nil {
		return err
	}
	if _, err := lc.CreateNamespace(ctx, release, nil); err != nil {
		return err
	}
	if err := framework.ApplyIdentity(ctx, lc.Cluster, rendered); err != nil {
		return err
	}
	kubeconfig := filepath.Join(work, "kubeconfig-webhook")
	if err := lc.WriteKubeconfigAs(lc.Kubeconfig, kubeconfig, release, "peergroup"); err != nil {
		return err
	}
	fmt.Println("    the webhook's kubeconfig impersonates system:serviceaccount:peergroup-system:peergroup: it has the chart's ClusterRole and nothing else")

	step("Run the webhook binary with the Deployment's args; register the chart's webhook configuration by its loopback URL")
	logs, err := os.Create(filepath.Join(work, "logs", "webhook.log"))
	if err != nil {
		return err
	}
	defer logs.Close()
	hook, err := framework.StartWebhookProcess(ctx, webhookBin, kubeconfig, rendered, release, logs)
	if err != nil {
		return err
	}
	defer hook.Stop()
	fmt.Printf("    peergroup-webhook %s\n", strings.Join(hook.Args, " "))
	if _, err := framework.RegisterWebhook(ctx, lc.Cluster, rendered, hook.URL(), hook.CABundle, ""); err != nil {
		return err
	}
	if err := framework.WaitForInjection(ctx, lc.Cluster, "default"); err != nil {
		return err
	}
	fmt.Printf("    clientConfig.url: %s (selectors and policies as rendered)\n", hook.URL())

	const ns = "cassandra"
	step("kubectl create namespace %s && kubectl label namespace %s peergroup.dev/group=cassandra", ns, ns)
	if _, err := lc.CreateNamespace(ctx, ns, map[string]string{"peergroup.dev/group": "cassandra"}); err != nil {
		return err
	}
	fmt.Println("    no Service created by hand, no POD_NAMESPACE, no seed provider wiring")

	step("Create the walkthrough's ReplicationController with 1 replica")
	rc := cassandraRC(ns)
	if err := lc.Client.Create(ctx, rc); err != nil {
		return fmt.Errorf("create ReplicationController: %w", err)
	}
	pods, err := waitPods(ctx, lc, ns, 1)
	if err != nil {
		return err
	}
	fmt.Printf("    pod %s running on %s with IP %s (kwok)\n", pods[0].Name, pods[0].Spec.NodeName, pods[0].Status.PodIP)

	step("kubectl scale rc cassandra --replicas=3")
	// The controller writes the RC's status meanwhile: retry on conflict.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := lc.Client.Get(ctx, client.ObjectKeyFromObject(rc), rc); err != nil {
			return err
		}
		rc.Spec.Replicas = ptr.To[int32](3)
		return lc.Client.Update(ctx, rc)
	}); err != nil {
		return fmt.Errorf("scale: %w", err)
	}
	if pods, err = waitPods(ctx, lc, ns, 3); err != nil {
		return err
	}

	step("The headless Service peergroup created before the first pod was admitted")
	svc := &corev1.Service{}
	if err := lc.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "cassandra"}, svc); err != nil {
		return fmt.Errorf("get Service cassandra: %w", err)
	}
	var ports []string
	for _, p := range svc.Spec.Ports {
		ports = append(ports, fmt.Sprintf("%s/%d", p.Name, p.Port))
	}
	fmt.Printf("    service/%s clusterIP=%s publishNotReadyAddresses=%v selector=%v ports=%s\n", svc.Name, svc.Spec.ClusterIP, svc.Spec.PublishNotReadyAddresses, svc.Spec.Selector, strings.Join(ports, ","))

	step("The Event peergroup recorded where kubectl describe shows it (the pods' ReplicationController)")
	if e, err := serviceCreatedEvent(ctx, lc, ns); err != nil {
		return err
	} else {
		fmt.Printf("    %s %s on %s/%s: %s\n", e.Type, e.Reason, e.Regarding.Kind, e.Regarding.Name, e.Note)
	}

	step("Run every pod's seed-discovery init container (as the kubelet would), resolving %s in CoreDNS at %s", "cassandra.cassandra.svc.cluster.local.", lc.DNSAddr)
	runs := framework.RunSeedDiscoveryAll(ctx, seedBin, pods, lc.DNSAddr, filepath.Join(work, "pods"))

	step("Every pod: what was injected and the seeds it wrote")
	var errs []error
	for i, p := range pods {
		fmt.Printf("    pod/%s  IP %s\n", p.Name, p.Status.PodIP)
		for _, e := range p.Spec.Containers[0].Env {
			if e.ValueFrom != nil {
				fmt.Printf("      env %s <- %s\n", e.Name, e.ValueFrom.FieldRef.FieldPath)
			} else {
				fmt.Printf("      env %s=%s\n", e.Name, e.Value)
			}
		}
		for _, ic := range p.Spec.InitContainers {
			fmt.Printf("      initContainer %s image=%s runAsNonRoot=%v readOnlyRootFilesystem=%v\n", ic.Name, ic.Image, *ic.SecurityContext.RunAsNonRoot, *ic.SecurityContext.ReadOnlyRootFilesystem)
		}
		r := runs[i]
		if r.Err != nil {
			errs = append(errs, r.Err)
			continue
		}
		fmt.Printf("      seed-discovery: role %s, seeds %s\n", r.Decision.Role, r.Seeds)
		for _, line := range strings.Split(strings.TrimSpace(r.Log), "\n") {
			fmt.Printf("        | %s\n", line)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	seeds := runs[0].Seeds
	for _, r := range runs {
		if r.Seeds != seeds {
			return fmt.Errorf("pods disagree: %s wrote %s, %s wrote %s", runs[0].Pod, seeds, r.Pod, r.Seeds)
		}
	}
	fmt.Printf("\nverdict: OK: all %d pods injected, one headless Service, every pod chose the same seeds %s (%s)\n", len(pods), seeds, time.Since(started).Round(time.Second))
	return nil
}

func cassandraRC(ns string) *corev1.ReplicationController {
	rc := &corev1.ReplicationController{}
	rc.Namespace, rc.Name = ns, "cassandra"
	rc.Spec.Replicas = ptr.To[int32](1)
	rc.Spec.Selector = map[string]string{"app": "cassandra"}
	rc.Spec.Template = &corev1.PodTemplateSpec{}
	rc.Spec.Template.Labels = map[string]string{"app": "cassandra"}
	// A short margin keeps the demo quick; the default is 5s.
	rc.Spec.Template.Annotations = map[string]string{"peergroup.dev/stable-margin": "2s"}
	rc.Spec.Template.Spec.Containers = []corev1.Container{{
		Name:  "cassandra",
		Image: "cassandra:5.0",
		Ports: []corev1.ContainerPort{{Name: "cql", ContainerPort: 9042}, {Name: "thrift", ContainerPort: 9160}},
		Env: []corev1.EnvVar{
			{Name: "MAX_HEAP_SIZE", Value: "512M"},
			{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		},
	}}
	return rc
}

func waitPods(ctx context.Context, lc *framework.LocalCluster, ns string, n int) ([]corev1.Pod, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		list := &corev1.PodList{}
		if err := lc.Client.List(ctx, list, client.InNamespace(ns)); err != nil {
			return nil, err
		}
		var running []corev1.Pod
		for _, p := range list.Items {
			if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
				running = append(running, p)
			}
		}
		if len(running) == n && len(list.Items) == n {
			sort.Slice(running, func(i, j int) bool { return running[i].Name < running[j].Name })
			fmt.Printf("    %d/%d pods Running\n", n, n)
			return running, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d of %d pods running after 2m (logs in %s)", len(running), n, lc.LogDir)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// serviceCreatedEvent waits for the webhook's PeerGroupServiceCreated Event
// (the recorder sends Events asynchronously).
func serviceCreatedEvent(ctx context.Context, lc *framework.LocalCluster, ns string) (*eventsv1.Event, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		list := &eventsv1.EventList{}
		if err := lc.Client.List(ctx, list, client.InNamespace(ns)); err != nil {
			return nil, fmt.Errorf("list events: %w", err)
		}
		for i := range list.Items {
			if list.Items[i].Reason == webhook.EventServiceCreated {
				return &list.Items[i], nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no %s event in namespace %s", webhook.EventServiceCreated, ns)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
