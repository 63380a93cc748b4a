package cluster

import (
	"context"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/test/framework"
)

func testContext(t *testing.T) context.Context { return framework.TestContext(t, 5*time.Minute) }

func newNamespace(t *testing.T, labels map[string]string) string {
	t.Helper()
	return framework.NewTestNamespace(t, lc.Cluster, labels)
}

// podTemplate is a Cassandra-like pod: two named ports, tuning for a quick
// decision (margin 2s > CoreDNS's 1s TTL).
func podTemplate(app string, labels, annotations map[string]string) corev1.PodTemplateSpec {
	l := map[string]string{"app": app}
	for k, v := range labels {
		l[k] = v
	}
	a := map[string]string{"peergroup.dev/stable-margin": "2s", "peergroup.dev/timeout": "90s"}
	for k, v := range annotations {
		a[k] = v
	}
	tmpl := corev1.PodTemplateSpec{}
	tmpl.Labels, tmpl.Annotations = l, a
	tmpl.Spec.Containers = []corev1.Container{{
		Name:  "cassandra",
		Image: "cassandra:5.0",
		Ports: []corev1.ContainerPort{{Name: "intra-node", ContainerPort: 7000}, {Name: "cql", ContainerPort: 9042}},
	}}
	return tmpl
}

// runningPods waits until exactly n pods matching app run with an IP.
func runningPods(t *testing.T, ns, app string, n int) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	deadline := time.Now().Add(2 * time.Minute)
	for {
		list := &corev1.PodList{}
		if err := lc.Client.List(context.Background(), list, client.InNamespace(ns), client.MatchingLabelsSelector{Selector: labels.SelectorFromSet(map[string]string{"app": app})}); err != nil {
			t.Fatal(err)
		}
		pods = pods[:0]
		live := 0
		for _, p := range list.Items {
			if p.DeletionTimestamp != nil {
				continue
			}
			live++
			if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
				pods = append(pods, p)
			}
		}
		if len(pods) == n && live == n {
			sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
			return pods
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d pods of %s running (%d live) after 2m", len(pods), n, app, live)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func podIPs(pods []corev1.Pod) []string {
	ips := make([]string, len(pods))
	for i, p := range pods {
		ips[i] = p.Status.PodIP
	}
	sort.Strings(ips)
	return ips
}

func requireInjected(t *testing.T, pods []corev1.Pod, serviceEnv, service string) {
	t.Helper()
	for _, p := range pods {
		if n := slices.IndexFunc(p.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == "seed-discovery" }); n < 0 {
			t.Errorf("pod %s not injected", p.Name)
		}
		found := false
		for _, e := range p.Spec.Containers[0].Env {
			found = found || e.Name == serviceEnv && e.Value == service
		}
		if !found {
			t.Errorf("pod %s lacks %s=%s", p.Name, serviceEnv, service)
		}
	}
}

// requireOneHeadlessService checks the namespace holds exactly one Service,
// headless, named service.
func requireOneHeadlessService(t *testing.T, ns, service string) {
	t.Helper()
	list := &corev1.ServiceList{}
	if err := lc.Client.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].Name != service || list.Items[0].Spec.ClusterIP != "None" {
		names := []string{}
		for _, s := range list.Items {
			names = append(names, s.Name+"/"+s.Spec.ClusterIP)
		}
		t.Fatalf("Services in %s: %v, want only headless %s", ns, names, service)
	}
}

// requireEndpoints waits until the Service's EndpointSlices list exactly
// the pods' IPs.
func requireEndpoints(t *testing.T, ns, service string, pods []corev1.Pod) {
	t.Helper()
	want := podIPs(pods)
	deadline := time.Now().Add(60 * time.Second)
	var got []string
	for time.Now().Before(deadline) {
		list := &discoveryv1.EndpointSliceList{}
		if err := lc.Client.List(context.Background(), list, client.InNamespace(ns), client.MatchingLabels{discoveryv1.LabelServiceName: service}); err != nil {
			t.Fatal(err)
		}
		got = got[:0]
		for _, s := range list.Items {
			for _, e := range s.Endpoints {
				got = append(got, e.Addresses...)
			}
		}
		sort.Strings(got)
		if slices.Equal(got, want) {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("EndpointSlices of %s list %v, want %v", service, got, want)
}

// discover runs every pod's seed-discovery at once, as kubelets would.
func discover(t *testing.T, pods []corev1.Pod) []framework.SeedDiscoveryRun {
	t.Helper()
	runs := framework.RunSeedDiscoveryAll(testContext(t), seedDiscovery, pods, lc.DNSAddr, filepath.Join(workDir, "pods"))
	for _, r := range runs {
		if r.Err != nil {
			t.Fatalf("%s: %v", r.Pod, r.Err)
		}
	}
	return runs
}

// requireAgreement: every pod wrote the same seeds, drawn from the pods.
func requireAgreement(t *testing.T, runs []framework.SeedDiscoveryRun, pods []corev1.Pod) string {
	t.Helper()
	ips := podIPs(pods)
	seeds := runs[0].Seeds
	for _, r := range runs {
		if r.Seeds != seeds {
			t.Fatalf("%s wrote seeds %q, %s wrote %q", r.Pod, r.Seeds, runs[0].Pod, seeds)
		}
	}
	for _, s := range strings.Split(seeds, ",") {
		if !slices.Contains(ips, s) {
			t.Fatalf("seed %s is not a pod IP (%v)", s, ips)
		}
	}
	t.Logf("all %d pods agree on seeds %s", len(runs), seeds)
	return seeds
}

func scale(t *testing.T, obj client.Object, replicas int32, set func(int32)) {
	t.Helper()
	// The controller writes the object's status meanwhile: retry on conflict.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := lc.Client.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		set(replicas)
		return lc.Client.Update(context.Background(), obj)
	})
	if err != nil {
		t.Fatalf("scale %s to %d: %v", obj.GetName(), replicas, err)
	}
}

// requireGroupFormed is what every workload must end with: its pods
// injected, one headless Service named after the group (the default),
// EndpointSlices listing every pod, and every pod's seed-discovery agreeing.
func requireGroupFormed(t *testing.T, ns, group string, pods []corev1.Pod) ([]framework.SeedDiscoveryRun, string) {
	t.Helper()
	requireInjected(t, pods, contract.ServiceEnvName(group), group)
	requireOneHeadlessService(t, ns, group)
	requireEndpoints(t, ns, group, pods)
	runs := discover(t, pods)
	return runs, requireAgreement(t, runs, pods)
}
