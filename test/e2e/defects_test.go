package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/webhook/admit"
)

// A group label of 100 KiB on a dry-run pod (mutating admission runs before
// the API server validates labels) comes back as a short denial, not the
// whole value.
func TestHugeGroupValueDeniedBriefly(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, nil)
	pod := plainPod(ns, "huge", map[string]string{contract.GroupLabel: "X" + strings.Repeat("a", 100<<10)})
	err := cluster.Client.Create(ctx, pod, client.DryRunAll)
	if err == nil || !strings.Contains(err.Error(), "(102401 bytes)") || len(err.Error()) > 2048 {
		t.Fatalf("%d-byte answer: %.300v", len(fmt.Sprint(err)), err)
	}
}

// A pod the API server would reject in a field the Service is built from
// is denied with its own error, and no Service is left behind.
func TestInvalidPodLeavesNoService(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, map[string]string{contract.GroupLabel: "gossip"})
	noContainers := plainPod(ns, "empty", nil)
	noContainers.Spec.Containers = nil
	badPortName := plainPod(ns, "bad-port", nil)
	badPortName.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "Gossip_Port", ContainerPort: 7000}}
	for pod, want := range map[*corev1.Pod]string{
		noContainers: "spec.containers is empty",
		badPortName:  `name "Gossip_Port" is not a valid port name`,
	} {
		if err := cluster.Client.Create(ctx, pod); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("pod %s: %v, want the pod's own error %q", pod.Name, err, want)
		}
	}
	if got := services(t, ns); len(got) != 0 {
		t.Errorf("a rejected pod created a Service: %v", got)
	}
}

// Generated port names never collide: the pod that used to make the
// Service create fail with 422 (and every pod of its group refused) is
// admitted, and Services built from a crafted set of pods all pass the API
// server's validation.
func TestGeneratedPortNamesPassValidation(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, map[string]string{contract.GroupLabel: "ports"})
	pod := plainPod(ns, "ports", nil)
	pod.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "tcp-80", ContainerPort: 8080}, {ContainerPort: 80}}
	if err := cluster.Client.Create(ctx, pod); err != nil {
		t.Fatalf("create: %v", err)
	}
	requireInjected(t, pod)
	if svc := getService(t, ns, "ports"); svc == nil || len(svc.Spec.Ports) != 2 {
		t.Fatalf("Service %+v", svc)
	}
	crafted := [][]corev1.ContainerPort{
		{{Name: "tcp-80", ContainerPort: 8080}, {ContainerPort: 80}, {Name: "tcp-80-2", ContainerPort: 81}, {ContainerPort: 80, Protocol: corev1.ProtocolUDP}},
		{{ContainerPort: 65535, Protocol: corev1.ProtocolSCTP}, {Name: "sctp-65535", ContainerPort: 1}},
		{{Name: "a", ContainerPort: 1}, {Name: "a", ContainerPort: 2}, {Name: "tcp-2", ContainerPort: 3}, {ContainerPort: 2, Protocol: corev1.ProtocolUDP}},
	}
	for i, ports := range crafted {
		p := plainPod(ns, fmt.Sprintf("c%d", i), nil)
		p.Spec.Containers[0].Ports = ports
		svc := admit.DesiredService(p, ns, admit.Membership{Group: "g", Service: fmt.Sprintf("crafted-%d", i)})
		if err := cluster.Client.Create(ctx, svc, client.DryRunAll); err != nil {
			t.Errorf("crafted set %d: the API server rejects the Service: %v", i, err)
		}
	}
}

// kubectl label ns X peergroup.dev/group=g followed at once by a pod
// create: the API server already calls the webhook while its namespace
// cache may not see the label yet. No pod may be admitted uninjected.
func TestLabelThenCreateNeverUninjected(t *testing.T) {
	ctx := testContext(t)
	uninjected := 0
	for i := range 50 {
		ns := newNamespace(t, nil)
		nsObj := &corev1.Namespace{}
		if err := cluster.Client.Get(ctx, client.ObjectKey{Name: ns}, nsObj); err != nil {
			t.Fatal(err)
		}
		nsObj.Labels[contract.GroupLabel] = "fresh"
		if err := cluster.Client.Update(ctx, nsObj); err != nil {
			t.Fatal(err)
		}
		pod := plainPod(ns, fmt.Sprintf("p%d", i), nil)
		if err := cluster.Client.Create(ctx, pod); err != nil {
			t.Fatalf("create: %v", err)
		}
		if !admit.IsInjected(pod) {
			uninjected++
		}
	}
	if uninjected > 0 {
		t.Errorf("%d of 50 pods created right after their namespace was labelled were admitted uninjected", uninjected)
	}
}

// The collision and OS checks cannot be bypassed by spelling: a mount at
// the seeds directory with a trailing slash, and Windows required through
// node affinity, are denied.
func TestCollisionAndOSBypassesDenied(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, map[string]string{contract.GroupLabel: "cassandra"})
	slash := cassandraPod(ns, "slash")
	slash.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	slash.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: contract.SeedsMountPath + "/"}}
	affinity := cassandraPod(ns, "affinity")
	affinity.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelOSStable, Operator: corev1.NodeSelectorOpIn, Values: []string{"windows"}}}}},
	}}}
	for pod, want := range map[*corev1.Pod]string{
		slash:    `already mounts volume "data" at /var/run/peergroup/`,
		affinity: "required node affinity admits no node with kubernetes.io/os=linux",
	} {
		if err := cluster.Client.Create(ctx, pod); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("pod %s: %v, want a denial saying %q", pod.Name, err, want)
		}
	}
}

// Injection never makes a pod's QoS class worse, as the API server itself
// computes it (status.qosClass) for the same pod outside and inside a
// group.
func TestQoSClassNeverWorse(t *testing.T) {
	ctx := testContext(t)
	member := newNamespace(t, map[string]string{contract.GroupLabel: "qos"})
	plain := newNamespace(t, nil)
	res := func(cpu, mem string) corev1.ResourceList {
		return corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)}
	}
	rank := map[corev1.PodQOSClass]int{corev1.PodQOSBestEffort: 0, corev1.PodQOSBurstable: 1, corev1.PodQOSGuaranteed: 2}
	for name, r := range map[string]corev1.ResourceRequirements{
		"guaranteed":  {Requests: res("1", "1Gi"), Limits: res("1", "1Gi")},
		"burstable":   {Requests: res("100m", "64Mi"), Limits: res("1", "1Gi")},
		"best-effort": {},
	} {
		classes := map[string]corev1.PodQOSClass{}
		for _, ns := range []string{plain, member} {
			pod := plainPod(ns, name, nil)
			pod.Spec.Containers[0].Resources = r
			if err := cluster.Client.Create(ctx, pod); err != nil {
				t.Fatalf("%s in %s: %v", name, ns, err)
			}
			classes[ns] = pod.Status.QOSClass
		}
		if rank[classes[member]] < rank[classes[plain]] {
			t.Errorf("%s: QoS %s without peergroup, %s injected", name, classes[plain], classes[member])
		}
		if name == "guaranteed" && classes[member] != corev1.PodQOSGuaranteed {
			t.Errorf("a Guaranteed pod became %s", classes[member])
		}
	}
}

// An ExternalName Service in the group's name is named as such in the
// denial, not as "clusterIP " with nothing after it.
func TestExternalNameServiceNamedInDenial(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, map[string]string{contract.GroupLabel: "external"})
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "external"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example"}}
	if err := cluster.Client.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	// A cache miss makes the webhook create, get AlreadyExists and read
	// the Service live, so the answer does not wait for the informer.
	err := cluster.Client.Create(ctx, plainPod(ns, "p", nil))
	if err == nil || !strings.Contains(err.Error(), "exists and is not headless (type ExternalName") {
		t.Errorf("%v", err)
	}
}

// A namespace LimitRange the injected init container would break: the pod
// is denied by peergroup naming the LimitRange and the chart value, not by
// the API server's LimitRanger with a message about a container the user
// never wrote, and no Service is made. A LimitRange it fits admits it.
func TestLimitRangeNamedInDenial(t *testing.T) {
	ctx := testContext(t)
	for _, tc := range []struct {
		max, want string
	}{{"50m", "would reject the injected seed-discovery init container: cpu limit must be at most 50m (limit 100m)"}, {"2", ""}} {
		ns := newNamespace(t, map[string]string{contract.GroupLabel: "limited"})
		lr := &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "small"}, Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
			Type: corev1.LimitTypeContainer, Max: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(tc.max)},
		}}}}
		if err := cluster.Client.Create(ctx, lr); err != nil {
			t.Fatal(err)
		}
		// The webhook reads LimitRanges from its informer: wait until a
		// dry run shows it has seen this one.
		var err error
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			err = cluster.Client.Create(ctx, plainPod(ns, "probe", nil), client.DryRunAll)
			if tc.want == "" || err != nil && strings.Contains(err.Error(), "LimitRange") {
				break
			}
		}
		pod := plainPod(ns, "p", nil)
		err = cluster.Client.Create(ctx, pod)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("max %s: %v", tc.max, err)
		case tc.want == "":
			requireInjected(t, pod)
		case err == nil || !strings.Contains(err.Error(), "LimitRange "+ns+"/small "+tc.want) || !strings.Contains(err.Error(), "seedDiscovery.resources"):
			t.Errorf("max %s: %v, want a denial naming the LimitRange and the chart value", tc.max, err)
		default:
			if got := services(t, ns); len(got) != 0 {
				t.Errorf("a denied pod created a Service: %v", got)
			}
		}
	}
}
