package framework

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

var namespaceCounter atomic.Int32

// TestContext is a context for one test, cancelled when it ends or after
// timeout, whichever comes first.
func TestContext(t testing.TB, timeout time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

// NewTestNamespace creates a namespace named after the running test, so a
// failure's objects are easy to find.
func NewTestNamespace(t testing.TB, c *Cluster, labels map[string]string) string {
	t.Helper()
	name := strings.ToLower(regexp.MustCompile(`[^a-zA-Z0-9]+`).ReplaceAllString(t.Name(), "-"))
	if len(name) > 50 {
		name = name[:50]
	}
	name = strings.Trim(fmt.Sprintf("%s-%d", name, namespaceCounter.Add(1)), "-")
	if _, err := c.CreateNamespace(context.Background(), name, labels); err != nil {
		t.Fatal(err)
	}
	return name
}

// RunSeedDiscoveryAll runs every pod's seed-discovery at once, as the
// kubelets of a real cluster would, each writing under outRoot/<pod>.
func RunSeedDiscoveryAll(ctx context.Context, binary string, pods []corev1.Pod, dnsAddr, outRoot string) []SeedDiscoveryRun {
	runs := make([]SeedDiscoveryRun, len(pods))
	var wg sync.WaitGroup
	for i := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runs[i] = RunSeedDiscovery(ctx, binary, &pods[i], dnsAddr, filepath.Join(outRoot, pods[i].Namespace, pods[i].Name))
		}()
	}
	wg.Wait()
	return runs
}

// Services lists the Services in namespace ns, failing the test on error.
func (c *Cluster) Services(t testing.TB, ns string) []corev1.Service {
	t.Helper()
	list := &corev1.ServiceList{}
	if err := c.Client.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// Pods lists the pods in namespace ns, failing the test on error.
func (c *Cluster) Pods(t testing.TB, ns string) []corev1.Pod {
	t.Helper()
	list := &corev1.PodList{}
	if err := c.Client.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	return list.Items
}
