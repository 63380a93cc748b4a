package webhook

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/peergroup/peergroup/contract"
)

// A new member stored without its Service gets it; an old one, a
// terminating one, one whose Service exists (by group or by annotation)
// and a pod that is gone are left alone.
func TestMissingServices(t *testing.T) {
	now := time.Unix(100000, 0)
	member := func(name string, age time.Duration, change func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: name, UID: types.UID(name),
			CreationTimestamp: metav1.NewTime(now.Add(-age)),
			Labels:            map[string]string{contract.GroupLabel: name, contract.PeerLabel: contract.PeerValue}}}
		p.Spec.Containers = []corev1.Container{{Name: "c", Image: "x", Ports: []corev1.ContainerPort{{Name: "peer", ContainerPort: 7000}}}}
		if change != nil {
			change(p)
		}
		return p
	}
	deleted := metav1.NewTime(now)
	pods := []*corev1.Pod{
		member("fresh", 5*time.Second, nil),
		member("old", 2*time.Minute, nil),
		member("leaving", time.Second, func(p *corev1.Pod) { p.DeletionTimestamp = &deleted; p.Finalizers = []string{"hold"} }),
		member("named", time.Second, func(p *corev1.Pod) { p.Annotations = map[string]string{contract.ServiceAnnotation: "shared"} }),
		member("outsider", time.Second, func(p *corev1.Pod) { delete(p.Labels, contract.PeerLabel) }),
	}
	shared := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "shared"}, Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone}}
	objs := []client.Object{shared}
	for _, p := range pods {
		objs = append(objs, p)
	}
	c := newFakeClient(objs...)
	base := testHandler(staticNamespaces(nil), c)
	r := &MissingServices{Reader: c, Services: c, Live: c, Decider: base.Decider, Window: time.Minute, Now: func() time.Time { return now }}
	for _, name := range []string{"fresh", "old", "leaving", "named", "outsider", "gone"} {
		if _, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "db", Name: name}}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	list := &corev1.ServiceList{}
	if err := c.List(context.Background(), list); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range list.Items {
		names = append(names, s.Name)
	}
	if len(names) != 2 || names[0] != "fresh" || names[1] != "shared" {
		t.Errorf("Services %v, want fresh (created) and shared (as it was)", names)
	}
	for _, s := range list.Items {
		if s.Name == "fresh" && (s.Spec.ClusterIP != corev1.ClusterIPNone || len(s.Spec.Ports) != 1 || s.Labels[contract.GroupLabel] != "fresh") {
			t.Errorf("created Service is not the group's headless Service: %+v", s)
		}
	}
}
