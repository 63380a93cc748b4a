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

	corev1 "k8s.io/api/core/v1"
)

var namespaceCounter atomic.Int32

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
