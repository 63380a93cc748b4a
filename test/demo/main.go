// Command demo shows peergroup's main job on a real local control plane:
// kube-apiserver and etcd built from source, the webhook binary started with
// the chart's Deployment args and registered with the chart's webhook
// configuration (by loopback URL), a namespace labelled for Cassandra, and a
// Cassandra pod created through the API server.
//
//	go run ./test/demo     (or: make demo)
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/peergroup/peergroup/test/framework"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

var stepN int

func step(format string, args ...any) {
	stepN++
	fmt.Printf("\n==> %d. %s\n", stepN, fmt.Sprintf(format, args...))
}

func run(ctx context.Context) error {
	root := framework.RepoRoot()
	work := filepath.Join(root, ".cache", "demo")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}

	step("Start kube-apiserver and etcd (built from source by hack/controlplane/build.sh) on 127.0.0.1")
	cluster, err := framework.StartCluster()
	if err != nil {
		return err
	}
	defer cluster.Stop()
	kubeconfig := filepath.Join(work, "kubeconfig")
	if err := cluster.WriteKubeconfig(kubeconfig); err != nil {
		return err
	}
	fmt.Printf("    API server %s; kubeconfig %s\n", cluster.Config.Host, kubeconfig)

	step("Build the webhook binary (cmd/peergroup-webhook)")
	binary := filepath.Join(work, "peergroup-webhook")
	build := exec.CommandContext(ctx, "go", "build", "-o", binary, "./cmd/peergroup-webhook")
	build.Dir, build.Stdout, build.Stderr = root, os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("go build: %w", err)
	}

	const release = "peergroup-system"
	step("Render the Helm chart (charts/peergroup, certificates.mode=certManager) into namespace %s", release)
	rendered, err := framework.Render("peergroup", release, map[string]any{"certificates": map[string]any{"mode": "certManager"}})
	if err != nil {
		return err
	}
	fmt.Printf("    objects: %s\n", strings.Join(rendered.Kinds(), ", "))
	if _, err := cluster.CreateNamespace(ctx, release, nil); err != nil {
		return err
	}

	step("Run the webhook with the Deployment's args, serving on 127.0.0.1 with a local CA")
	logPath := filepath.Join(work, "webhook.log")
	logs, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logs.Close()
	hook, err := framework.StartWebhookProcess(ctx, binary, kubeconfig, rendered, release, logs)
	if err != nil {
		return fmt.Errorf("%w (log: %s)", err, logPath)
	}
	defer hook.Stop()
	fmt.Printf("    %s %s\n    log: %s\n", binary, strings.Join(hook.Args, " "), logPath)

	step("Register the chart's MutatingWebhookConfiguration, clientConfig rewritten to %s", hook.URL())
	if _, err := framework.RegisterWebhook(ctx, cluster, rendered, hook.URL(), hook.CABundle, ""); err != nil {
		return err
	}
	if err := framework.WaitForInjection(ctx, cluster, "default"); err != nil {
		return err
	}
	fmt.Println("    the API server now calls the webhook for member pods (checked with a server-side dry-run)")

	const ns = "cassandra-demo"
	step("Label a namespace for the peer group: kubectl create namespace %s; kubectl label namespace %s peergroup.dev/group=cassandra", ns, ns)
	if _, err := cluster.CreateNamespace(ctx, ns, map[string]string{"peergroup.dev/group": "cassandra"}); err != nil {
		return err
	}
	fmt.Println("    no Service created by hand, no POD_NAMESPACE, no seed provider wiring")

	step("Create the Cassandra pod of the classic walkthrough through the API server")
	pod := cassandraPod(ns)
	if err := cluster.Client.Create(ctx, pod); err != nil {
		return fmt.Errorf("create pod: %w", err)
	}
	fmt.Printf("    pod/%s created\n", pod.Name)

	step("The pod as stored by the API server (injected parts)")
	if err := printInjected(pod); err != nil {
		return err
	}

	step("The headless Service peergroup created before admitting the pod")
	svc := &corev1.Service{}
	if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "cassandra"}, svc); err != nil {
		return fmt.Errorf("get Service cassandra: %w", err)
	}
	svc.ManagedFields = nil
	out, _ := yaml.Marshal(svc)
	fmt.Print(indent(string(out)))

	if err := verdict(pod, svc); err != nil {
		return err
	}
	fmt.Println("\nverdict: OK: pod injected (CASSANDRA_SERVICE, POD_NAMESPACE, seed-discovery init container) and headless Service cassandra created first")
	return nil
}

func cassandraPod(ns string) *corev1.Pod {
	pod := &corev1.Pod{}
	pod.Namespace, pod.Name = ns, "cassandra-0"
	pod.Labels = map[string]string{"app": "cassandra"}
	pod.Spec.Containers = []corev1.Container{{
		Name:  "cassandra",
		Image: "cassandra:5.0",
		Ports: []corev1.ContainerPort{{Name: "cql", ContainerPort: 9042}, {Name: "thrift", ContainerPort: 9160}},
		Env: []corev1.EnvVar{
			{Name: "MAX_HEAP_SIZE", Value: "512M"},
			{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		},
	}}
	return pod
}

func printInjected(pod *corev1.Pod) error {
	view := map[string]any{
		"metadata": map[string]any{"labels": pod.Labels, "annotations": pod.Annotations},
		"spec": map[string]any{
			"containers":     []any{map[string]any{"name": pod.Spec.Containers[0].Name, "env": pod.Spec.Containers[0].Env, "volumeMounts": pod.Spec.Containers[0].VolumeMounts}},
			"initContainers": pod.Spec.InitContainers,
			"volumes":        pod.Spec.Volumes,
		},
	}
	out, err := yaml.Marshal(view)
	if err != nil {
		return err
	}
	fmt.Print(indent(string(out)))
	return nil
}

func verdict(pod *corev1.Pod, svc *corev1.Service) error {
	var errs []error
	if len(pod.Spec.InitContainers) != 1 || pod.Spec.InitContainers[0].Name != "seed-discovery" {
		errs = append(errs, errors.New("no seed-discovery init container"))
	}
	found := false
	for _, e := range pod.Spec.Containers[0].Env {
		found = found || e.Name == "CASSANDRA_SERVICE" && e.Value == "cassandra"
	}
	if !found {
		errs = append(errs, errors.New("CASSANDRA_SERVICE not injected"))
	}
	if svc.Spec.ClusterIP != "None" {
		errs = append(errs, errors.New("Service is not headless"))
	}
	if svc.CreationTimestamp.After(pod.CreationTimestamp.Add(time.Second)) {
		errs = append(errs, errors.New("Service created after the pod"))
	}
	return errors.Join(errs...)
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ") + "\n"
}
