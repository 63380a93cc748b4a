package e2e

import (
	"context"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/test/framework"
)

func testContext(t *testing.T) context.Context { return framework.TestContext(t, 2*time.Minute) }

func newNamespace(t *testing.T, labels map[string]string) string {
	t.Helper()
	return framework.NewTestNamespace(t, cluster, labels)
}

// cassandraPod is the pod of the classic Cassandra walkthrough, which sets
// POD_NAMESPACE by hand.
func cassandraPod(ns, name string) *corev1.Pod {
	pod := &corev1.Pod{}
	pod.Namespace = ns
	pod.Name = name
	pod.Labels = map[string]string{"app": "cassandra"}
	pod.Spec.Containers = []corev1.Container{{
		Name:  "cassandra",
		Image: "cassandra:5.0",
		Ports: []corev1.ContainerPort{{Name: "cql", ContainerPort: 9042}, {Name: "thrift", ContainerPort: 9160}},
		Env: []corev1.EnvVar{{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{
			FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"},
		}}},
	}}
	return pod
}

func plainPod(ns, name string, labels map[string]string) *corev1.Pod {
	pod := &corev1.Pod{}
	pod.Namespace = ns
	pod.Name = name
	pod.Labels = labels
	pod.Spec.Containers = []corev1.Container{{Name: "app", Image: "busybox", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}}
	return pod
}

func initContainerCount(pod *corev1.Pod, name string) int {
	n := 0
	for _, c := range pod.Spec.InitContainers {
		if c.Name == name {
			n++
		}
	}
	return n
}

func envValues(c corev1.Container, name string) []corev1.EnvVar {
	var out []corev1.EnvVar
	for _, e := range c.Env {
		if e.Name == name {
			out = append(out, e)
		}
	}
	return out
}

func services(t *testing.T, ns string) []corev1.Service { return cluster.Services(t, ns) }

func getService(t *testing.T, ns, name string) *corev1.Service {
	t.Helper()
	svc := &corev1.Service{}
	err := cluster.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, svc)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func requireInjected(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	if n := initContainerCount(pod, "seed-discovery"); n != 1 {
		t.Fatalf("pod %s has %d seed-discovery init containers, want 1: %+v", pod.Name, n, pod.Spec.InitContainers)
	}
	if pod.Annotations["peergroup.dev/injected"] == "" {
		t.Fatalf("pod %s lacks the peergroup.dev/injected annotation", pod.Name)
	}
}

func requireUntouched(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	if len(pod.Spec.InitContainers) != 0 || len(pod.Spec.Volumes) != 0 || pod.Annotations["peergroup.dev/injected"] != "" {
		t.Fatalf("pod %s was mutated: init=%v volumes=%v annotations=%v", pod.Name, pod.Spec.InitContainers, pod.Spec.Volumes, pod.Annotations)
	}
}

// workers run functions in a loop, each in its own goroutine, until stop:
// the continuous admissions (and handshakes) of the tests that count
// refusals.
type workers struct {
	done     chan struct{}
	finished sync.WaitGroup
}

func newWorkers() workers { return workers{done: make(chan struct{})} }

// run calls once in a loop until stop.
func (w *workers) run(once func()) {
	w.finished.Add(1)
	go func() {
		defer w.finished.Done()
		for {
			select {
			case <-w.done:
				return
			default:
				once()
			}
		}
	}()
}

// stop ends every loop after its current call and waits for them.
func (w *workers) stop() {
	close(w.done)
	w.finished.Wait()
}

// watchWebhookConfiguration calls seen with every version of the named
// MutatingWebhookConfiguration the API server sends, until the test ends.
func watchWebhookConfiguration(t *testing.T, ctx context.Context, name string, seen func(*admissionregistrationv1.MutatingWebhookConfiguration)) {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	w, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	go func() {
		for ev := range w.ResultChan() {
			if mwc, ok := ev.Object.(*admissionregistrationv1.MutatingWebhookConfiguration); ok && ev.Type != watch.Deleted {
				seen(mwc)
			}
		}
	}()
}
