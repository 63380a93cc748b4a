package e2e

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/webhook"
)

// Events through the real API server: a created Service and a denial are
// reported on the pod's controller, where `kubectl describe` shows them.
func TestEventsOnTheOwner(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, nil)
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "zk"},
		Spec: appsv1.ReplicaSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "zk"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "zk"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "zk", Image: "zookeeper:3.9"}}},
			},
		},
	}
	if err := cluster.Client.Create(ctx, rs); err != nil {
		t.Fatal(err)
	}
	owned := func(name string, annotations map[string]string) *corev1.Pod {
		p := cassandraPod(ns, name)
		p.Labels = map[string]string{"app": "zk", contract.GroupLabel: "zk"}
		p.Annotations = annotations
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: ptr.To(true)}}
		return p
	}
	if err := cluster.Client.Create(ctx, owned("zk-1", nil)); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, owned("zk-2", map[string]string{contract.Domain + "/founding": "everyone"})); err == nil {
		t.Fatal("pod with an invalid founding annotation admitted")
	}

	want := map[string]string{webhook.EventServiceCreated: "Normal", webhook.EventPodDenied: "Warning"}
	deadline := time.Now().Add(15 * time.Second)
	for {
		list := &eventsv1.EventList{}
		if err := cluster.Client.List(context.Background(), list, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		found := map[string]string{}
		for _, e := range list.Items {
			if e.Regarding.UID == rs.UID && e.Regarding.Kind == "ReplicaSet" && e.ReportingController == "peergroup-webhook" {
				found[e.Reason] = e.Type
			}
		}
		if found[webhook.EventServiceCreated] == want[webhook.EventServiceCreated] && found[webhook.EventPodDenied] == want[webhook.EventPodDenied] {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("events on ReplicaSet %s: %v, want %v", rs.Name, found, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
