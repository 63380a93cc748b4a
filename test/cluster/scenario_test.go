package cluster

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func replicationController(ns, name string, replicas int32, tmpl corev1.PodTemplateSpec) *corev1.ReplicationController {
	rc := &corev1.ReplicationController{}
	rc.Namespace, rc.Name = ns, name
	rc.Spec.Replicas = ptr.To(replicas)
	rc.Spec.Selector = map[string]string{"app": tmpl.Labels["app"]}
	rc.Spec.Template = &tmpl
	return rc
}

// 1. The classic walkthrough: a labelled namespace, a Cassandra
// ReplicationController scaled from 1 to 3.
func TestReplicationControllerOneToThree(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, map[string]string{"peergroup.dev/group": "cassandra"})
	rc := replicationController(ns, "cassandra", 1, podTemplate("cassandra", nil, nil))
	if err := lc.Client.Create(ctx, rc); err != nil {
		t.Fatal(err)
	}
	runningPods(t, ns, "cassandra", 1)
	scale(t, rc, 3, func(n int32) { rc.Spec.Replicas = &n })
	pods := runningPods(t, ns, "cassandra", 3)

	_, seeds := requireGroupFormed(t, ns, "cassandra", pods)
	if n := len(strings.Split(seeds, ",")); n != 3 {
		t.Errorf("%d seeds, want the default 3", n)
	}
}

// 2a. A Deployment whose pod template carries the group label.
func TestDeployment(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, nil)
	dep := &appsv1.Deployment{}
	dep.Namespace, dep.Name = ns, "akka"
	dep.Spec.Replicas = ptr.To[int32](3)
	dep.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "akka"}}
	dep.Spec.Template = podTemplate("akka", map[string]string{"peergroup.dev/group": "akka"}, map[string]string{"peergroup.dev/seed-count": "2"})
	if err := lc.Client.Create(ctx, dep); err != nil {
		t.Fatal(err)
	}
	pods := runningPods(t, ns, "akka", 3)
	_, seeds := requireGroupFormed(t, ns, "akka", pods)
	if n := len(strings.Split(seeds, ",")); n != 2 {
		t.Errorf("%d seeds, want 2 (annotation)", n)
	}
}

// 2b. A StatefulSet bound to the group Service, founding=ordinal0: pod 0
// is the first seed whatever the IP order.
func TestStatefulSetOrdinal0(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, map[string]string{"peergroup.dev/group": "cassandra"})
	sts := &appsv1.StatefulSet{}
	sts.Namespace, sts.Name = ns, "cassandra"
	sts.Spec.ServiceName = "cassandra"
	sts.Spec.PodManagementPolicy = appsv1.ParallelPodManagement
	sts.Spec.Replicas = ptr.To[int32](3)
	sts.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "cassandra"}}
	sts.Spec.Template = podTemplate("cassandra", nil, map[string]string{"peergroup.dev/founding": "ordinal0", "peergroup.dev/seed-count": "2"})
	if err := lc.Client.Create(ctx, sts); err != nil {
		t.Fatal(err)
	}
	pods := runningPods(t, ns, "cassandra", 3)
	runs, seeds := requireGroupFormed(t, ns, "cassandra", pods)
	var pod0 string
	for _, p := range pods {
		if p.Name == "cassandra-0" {
			pod0 = p.Status.PodIP
		}
	}
	if first := strings.Split(seeds, ",")[0]; first != pod0 {
		t.Errorf("first seed %s, want cassandra-0's IP %s", first, pod0)
	}
	for _, r := range runs {
		want := "joiner"
		if r.Pod == "cassandra-0" {
			want = "founder"
		}
		if r.Decision.Role != want && !(r.Pod == "cassandra-1" && r.Decision.Role == "seed") {
			t.Errorf("%s role %s, want %s", r.Pod, r.Decision.Role, want)
		}
		if r.Decision.Order != "ordinal" {
			t.Errorf("%s ordered by %s, want ordinal (hostnames from CoreDNS PTR records)", r.Pod, r.Decision.Order)
		}
	}
}

// 3. Scale down and up: the new pods' seeds include the surviving member,
// and no pod founds a cluster of its own.
func TestScaleDownAndUp(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, map[string]string{"peergroup.dev/group": "cassandra"})
	rc := replicationController(ns, "cassandra", 3, podTemplate("cassandra", nil, nil))
	if err := lc.Client.Create(ctx, rc); err != nil {
		t.Fatal(err)
	}
	first := runningPods(t, ns, "cassandra", 3)
	requireAgreement(t, discover(t, first), first)

	scale(t, rc, 1, func(n int32) { rc.Spec.Replicas = &n })
	survivor := runningPods(t, ns, "cassandra", 1)[0]
	scale(t, rc, 3, func(n int32) { rc.Spec.Replicas = &n })
	after := runningPods(t, ns, "cassandra", 3)
	requireEndpoints(t, ns, "cassandra", after)
	var fresh []corev1.Pod
	for _, p := range after {
		if p.Name != survivor.Name {
			fresh = append(fresh, p)
		}
	}
	runs := discover(t, fresh)
	seeds := requireAgreement(t, runs, after)
	if !slices.Contains(strings.Split(seeds, ","), survivor.Status.PodIP) {
		t.Errorf("new pods' seeds %s leave out the surviving member %s: they would found a second cluster", seeds, survivor.Status.PodIP)
	}
	for _, r := range runs {
		if r.Seeds == r.Decision.Self.String() {
			t.Errorf("%s founded alone", r.Pod)
		}
	}
	requireOneHeadlessService(t, ns, "cassandra")
}

// pods created while no pod could be created: wait a little and count.
func requireNoPods(t *testing.T, ns string, for_ time.Duration) {
	t.Helper()
	deadline := time.Now().Add(for_)
	for time.Now().Before(deadline) {
		list := &corev1.PodList{}
		if err := lc.Client.List(context.Background(), list, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		if len(list.Items) != 0 {
			t.Fatalf("%d pods admitted while the webhook was down with failurePolicy Fail", len(list.Items))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Only pods that went through peergroup are peers: a pod of the group that
// opted out (no seed-discovery, no seeds) never appears in the group's
// EndpointSlices, so it never appears in DNS, and the members' seeds are
// drawn from the members alone.
func TestOptedOutPodIsNoPeer(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, map[string]string{"peergroup.dev/group": "cassandra"})
	members := replicationController(ns, "members", 2, podTemplate("members", nil, nil))
	optedOut := replicationController(ns, "opted-out", 1, podTemplate("opted-out",
		map[string]string{"peergroup.dev/group": "cassandra", "peergroup.dev/inject": "false"}, nil))
	for _, rc := range []*corev1.ReplicationController{members, optedOut} {
		if err := lc.Client.Create(ctx, rc); err != nil {
			t.Fatal(err)
		}
	}
	memberPods := runningPods(t, ns, "members", 2)
	outPods := runningPods(t, ns, "opted-out", 1)
	if slices.ContainsFunc(outPods[0].Spec.InitContainers, func(c corev1.Container) bool { return c.Name == "seed-discovery" }) {
		t.Fatal("the opted-out pod was injected")
	}
	// EndpointSlices list exactly the members, never the opted-out pod.
	requireEndpoints(t, ns, "cassandra", memberPods)
	runs := discover(t, memberPods)
	for _, r := range runs {
		for _, p := range r.Decision.Peers {
			if slices.ContainsFunc(p.IPs, func(ip netip.Addr) bool { return ip.String() == outPods[0].Status.PodIP }) {
				t.Errorf("%s sees the opted-out pod %s as a peer", r.Pod, outPods[0].Status.PodIP)
			}
		}
	}
	requireAgreement(t, runs, memberPods)
}
