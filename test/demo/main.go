// Command demo shows peergroup's main job. Where the machine can run a real
// node (root, cgroups, runc) it runs the README's "Use it" on one
// and ends with real NATS servers in one cluster. Otherwise it
// says why and shows the simulated walkthrough: every component real and
// on loopback: kube-apiserver, etcd,
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

// step prints the heading of the walkthrough's next step.
func step(format string, args ...any) {
	stepN++
	fmt.Printf("\n==> %d. %s\n", stepN, fmt.Sprintf(format, args...))
}

const (
	// release is the chart's release namespace.
	release = "peergroup-system"
	// appNamespace is the walkthrough's namespace, labelled with its group.
	appNamespace = "cassandra"
)

// run is the walkthrough: each step prints its heading and what it shows,
// and the first error ends the demo.
func run(ctx context.Context) error {
	if err := framework.RealNodeSupport(); err != nil {
		fmt.Printf("This machine cannot run a real node (%v):\nshowing the simulated walkthrough instead (kwok as the kubelet, seed-discovery run on the host).\n", err)
	} else {
		return runReal(ctx)
	}
	d, err := newDemo()
	if err != nil {
		return err
	}
	defer d.stop()
	for _, s := range []func(context.Context) error{
		d.buildBinaries,
		d.startCluster,
		d.installIdentity,
		d.installWebhook,
		d.labelNamespace,
		d.createWorkload,
		d.scale,
		d.showService,
		d.showEvent,
		d.runSeedDiscovery,
		d.showPods,
		d.printVerdict,
	} {
		if err := s(ctx); err != nil {
			return err
		}
	}
	return nil
}

// demo is the state the steps share, each filling in what later ones use.
type demo struct {
	started time.Time
	// work is .cache/demo: binaries, kubeconfigs, logs, seed files.
	work                string
	webhookBin, seedBin string
	lc                  *framework.LocalCluster
	rendered            *framework.Rendered
	// kubeconfig impersonates the chart's ServiceAccount.
	kubeconfig string
	hook       *framework.Webhook
	rc         *corev1.ReplicationController
	pods       []corev1.Pod
	runs       []framework.SeedDiscoveryRun
	// cleanups run last first when the demo ends.
	cleanups []func()
}

// newDemo starts the clock and empties the work directory.
func newDemo() (*demo, error) {
	d := &demo{started: time.Now(), work: filepath.Join(framework.RepoRoot(), ".cache", "demo")}
	_ = os.RemoveAll(d.work)
	if err := os.MkdirAll(d.work, 0o755); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *demo) onStop(f func()) { d.cleanups = append(d.cleanups, f) }

// stop stops what the steps started, last started first.
func (d *demo) stop() {
	for i := len(d.cleanups) - 1; i >= 0; i-- {
		d.cleanups[i]()
	}
}

func (d *demo) buildBinaries(ctx context.Context) error {
	step("Build the two peergroup binaries (webhook, seed-discovery)")
	var err error
	if d.webhookBin, err = framework.BuildBinary(ctx, "peergroup-webhook", d.work); err != nil {
		return err
	}
	d.seedBin, err = framework.BuildBinary(ctx, "seed-discovery", d.work)
	return err
}

func (d *demo) startCluster(ctx context.Context) error {
	step("Start a local cluster: every component real, every listener on 127.0.0.1")
	lc, err := framework.StartLocalCluster(ctx, framework.LocalClusterOptions{LogDir: filepath.Join(d.work, "logs"), Progress: os.Stdout})
	if err != nil {
		return err
	}
	d.lc = lc
	d.onStop(lc.Stop)
	return nil
}

// installIdentity creates the chart's ServiceAccount and RBAC and a
// kubeconfig impersonating that ServiceAccount, so the webhook runs with the
// chart's ClusterRole and nothing more.
func (d *demo) installIdentity(ctx context.Context) error {
	step("Install the chart's identity and RBAC (charts/peergroup, certificates.mode=certManager) in %s", release)
	var err error
	if d.rendered, err = framework.Render("peergroup", release, map[string]any{"certificates": map[string]any{"mode": "certManager"}}); err != nil {
		return err
	}
	if _, err := d.lc.CreateNamespace(ctx, release, nil); err != nil {
		return err
	}
	if err := framework.ApplyIdentity(ctx, d.lc.Cluster, d.rendered); err != nil {
		return err
	}
	d.kubeconfig = filepath.Join(d.work, "kubeconfig-webhook")
	if err := d.lc.WriteKubeconfigAs(d.lc.Kubeconfig, d.kubeconfig, release, "peergroup"); err != nil {
		return err
	}
	fmt.Println("    the webhook's kubeconfig impersonates system:serviceaccount:peergroup-system:peergroup: it has the chart's ClusterRole and nothing else")
	return nil
}

// installWebhook runs the webhook binary with the chart Deployment's args
// and registers the chart's webhook configuration by the webhook's loopback
// URL, never by Service reference: every connection stays on 127.0.0.1
// (docs/design.md, Testing without a cloud).
func (d *demo) installWebhook(ctx context.Context) error {
	step("Run the webhook binary with the Deployment's args; register the chart's webhook configuration by its loopback URL")
	logs, err := os.Create(filepath.Join(d.work, "logs", "webhook.log"))
	if err != nil {
		return err
	}
	d.onStop(func() { _ = logs.Close() })
	if d.hook, err = framework.StartWebhook(ctx, d.lc.Cluster, d.rendered, release, framework.Process(d.webhookBin, d.kubeconfig, logs)); err != nil {
		return err
	}
	d.onStop(d.hook.Stop)
	fmt.Printf("    peergroup-webhook %s\n", strings.Join(d.hook.Args, " "))
	if _, err := framework.RegisterWebhook(ctx, d.lc.Cluster, d.rendered, d.hook.URL(), d.hook.CABundle); err != nil {
		return err
	}
	if err := framework.WaitForInjection(ctx, d.lc.Cluster, "default"); err != nil {
		return err
	}
	fmt.Printf("    clientConfig.url: %s (selectors and policies as rendered)\n", d.hook.URL())
	return nil
}

func (d *demo) labelNamespace(ctx context.Context) error {
	step("kubectl create namespace %s && kubectl label namespace %s peergroup.dev/group=cassandra", appNamespace, appNamespace)
	if _, err := d.lc.CreateNamespace(ctx, appNamespace, map[string]string{"peergroup.dev/group": "cassandra"}); err != nil {
		return err
	}
	fmt.Println("    no Service created by hand, no POD_NAMESPACE, no seed provider wiring")
	return nil
}

func (d *demo) createWorkload(ctx context.Context) error {
	step("Create the walkthrough's ReplicationController with 1 replica")
	d.rc = cassandraRC(appNamespace)
	if err := d.lc.Client.Create(ctx, d.rc); err != nil {
		return fmt.Errorf("create ReplicationController: %w", err)
	}
	pods, err := waitPods(ctx, d.lc, appNamespace, 1)
	if err != nil {
		return err
	}
	d.pods = pods
	fmt.Printf("    pod %s running on %s with IP %s (kwok)\n", pods[0].Name, pods[0].Spec.NodeName, pods[0].Status.PodIP)
	return nil
}

func (d *demo) scale(ctx context.Context) error {
	step("kubectl scale rc cassandra --replicas=3")
	// The controller writes the RC's status meanwhile: retry on conflict.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := d.lc.Client.Get(ctx, client.ObjectKeyFromObject(d.rc), d.rc); err != nil {
			return err
		}
		d.rc.Spec.Replicas = ptr.To[int32](3)
		return d.lc.Client.Update(ctx, d.rc)
	}); err != nil {
		return fmt.Errorf("scale: %w", err)
	}
	var err error
	d.pods, err = waitPods(ctx, d.lc, appNamespace, 3)
	return err
}

func (d *demo) showService(ctx context.Context) error {
	step("The headless Service peergroup created before the first pod was admitted")
	svc := &corev1.Service{}
	if err := d.lc.Client.Get(ctx, client.ObjectKey{Namespace: appNamespace, Name: "cassandra"}, svc); err != nil {
		return fmt.Errorf("get Service cassandra: %w", err)
	}
	var ports []string
	for _, p := range svc.Spec.Ports {
		ports = append(ports, fmt.Sprintf("%s/%d", p.Name, p.Port))
	}
	fmt.Printf("    service/%s clusterIP=%s publishNotReadyAddresses=%v selector=%v ports=%s\n", svc.Name, svc.Spec.ClusterIP, svc.Spec.PublishNotReadyAddresses, svc.Spec.Selector, strings.Join(ports, ","))
	return nil
}

func (d *demo) showEvent(ctx context.Context) error {
	step("The Event peergroup recorded where kubectl describe shows it (the pods' ReplicationController)")
	e, err := serviceCreatedEvent(ctx, d.lc, appNamespace)
	if err != nil {
		return err
	}
	fmt.Printf("    %s %s on %s/%s: %s\n", e.Type, e.Reason, e.Regarding.Kind, e.Regarding.Name, e.Note)
	return nil
}

// runSeedDiscovery runs every pod's seed-discovery init container as the
// kubelet would, resolving the group's Service in CoreDNS.
func (d *demo) runSeedDiscovery(ctx context.Context) error {
	step("Run every pod's seed-discovery init container (as the kubelet would), resolving %s in CoreDNS at %s", "cassandra.cassandra.svc.cluster.local.", d.lc.DNSAddr)
	d.runs = framework.RunSeedDiscoveryAll(ctx, d.seedBin, d.pods, d.lc.DNSAddr, filepath.Join(d.work, "pods"))
	return nil
}

// showPods prints every pod's injected env and init container and the
// seeds its seed-discovery wrote; it fails if any run failed.
func (d *demo) showPods(context.Context) error {
	step("Every pod: what was injected and the seeds it wrote")
	var errs []error
	for i, p := range d.pods {
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
		r := d.runs[i]
		if r.Err != nil {
			errs = append(errs, r.Err)
			continue
		}
		fmt.Printf("      seed-discovery: role %s, seeds %s\n", r.Decision.Role, r.Seeds)
		for _, line := range strings.Split(strings.TrimSpace(r.Log), "\n") {
			fmt.Printf("        | %s\n", line)
		}
	}
	return errors.Join(errs...)
}

// printVerdict checks that every pod chose the same seeds: the point of
// the walkthrough.
func (d *demo) printVerdict(context.Context) error {
	seeds := d.runs[0].Seeds
	for _, r := range d.runs {
		if r.Seeds != seeds {
			return fmt.Errorf("pods disagree: %s wrote %s, %s wrote %s", d.runs[0].Pod, seeds, r.Pod, r.Seeds)
		}
	}
	fmt.Printf("\nverdict: OK: all %d pods injected, one headless Service, every pod chose the same seeds %s (%s)\n", len(d.pods), seeds, time.Since(d.started).Round(time.Second))
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
