package webhook

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/peergroup/peergroup/contract"
)

func TestTerminatingPeerLeavesTheGroupsDNS(t *testing.T) {
	now := metav1.NewTime(time.Now())
	pod := func(peer string, deleting bool) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "m", Namespace: "db", UID: "u1",
			Labels: map[string]string{contract.GroupLabel: "g", "app": "x"}}}
		if peer != "" {
			p.Labels[contract.PeerLabel] = peer
		}
		if deleting {
			// The fake client keeps a deleted object only while a
			// finalizer holds it, as a pod is held by its grace period.
			p.DeletionTimestamp, p.Finalizers = &now, []string{"test/hold"}
		}
		return p
	}
	for _, tc := range []struct {
		name      string
		pod       *corev1.Pod
		wantLabel string // the peer label after Reconcile; "-" for no pod
	}{
		{"a terminating peer is relabelled", pod(contract.PeerValue, true), contract.PeerTerminatingValue},
		{"a running peer is left alone", pod(contract.PeerValue, false), contract.PeerValue},
		{"a terminating pod that never was a peer is left alone", pod("", true), ""},
		{"an already relabelled pod stays so", pod(contract.PeerTerminatingValue, true), contract.PeerTerminatingValue},
		{"a label of the user's own value is not overwritten", pod("no", true), "no"},
		{"a pod already gone is no error", nil, "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme)
			if tc.pod != nil {
				b = b.WithObjects(tc.pod)
			}
			c := b.Build()
			r := &TerminatingPeers{Reader: c, Writer: c}
			if _, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "db", Name: "m"}}); err != nil {
				t.Fatalf("Reconcile: %v", err)
			}
			if tc.pod == nil {
				return
			}
			got := &corev1.Pod{}
			if err := c.Get(context.Background(), client.ObjectKeyFromObject(tc.pod), got); err != nil {
				t.Fatal(err)
			}
			if got.Labels[contract.PeerLabel] != tc.wantLabel {
				t.Errorf("peer label = %q, want %q", got.Labels[contract.PeerLabel], tc.wantLabel)
			}
			if got.Labels[contract.GroupLabel] != "g" || got.Labels["app"] != "x" {
				t.Errorf("other labels changed: %v", got.Labels)
			}
		})
	}
}

func TestRetiring(t *testing.T) {
	now := metav1.NewTime(time.Now())
	for _, tc := range []struct {
		labels   map[string]string
		deleting bool
		want     bool
	}{
		{map[string]string{contract.PeerLabel: contract.PeerValue}, true, true},
		{map[string]string{contract.PeerLabel: contract.PeerValue}, false, false},
		{map[string]string{contract.PeerLabel: contract.PeerTerminatingValue}, true, false},
		{nil, true, false},
	} {
		m := PodMeta()
		m.Labels = tc.labels
		if tc.deleting {
			m.DeletionTimestamp = &now
		}
		if got := Retiring(m); got != tc.want {
			t.Errorf("Retiring(labels %v, deleting %v) = %v, want %v", tc.labels, tc.deleting, got, tc.want)
		}
	}
}

// A StatefulSet's replacement has the old pod's name: while the cache
// still holds the old, terminating pod, the patch must not land on the
// new, running one (it would leave its group's DNS for good).
func TestTerminatingPeerPatchTargetsThePodRead(t *testing.T) {
	now := metav1.NewTime(time.Now())
	old := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "db-0", Namespace: "db", UID: "old",
		Labels:            map[string]string{contract.GroupLabel: "g", contract.PeerLabel: contract.PeerValue},
		DeletionTimestamp: &now, Finalizers: []string{"test/hold"}}}
	fresh := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "db-0", Namespace: "db", UID: "new",
		Labels: map[string]string{contract.GroupLabel: "g", contract.PeerLabel: contract.PeerValue}}}
	cache := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(old).Build()
	api := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(fresh).Build()
	r := &TerminatingPeers{Reader: cache, Writer: api}
	_, _ = r.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "db", Name: "db-0"}})
	got := &corev1.Pod{}
	if err := api.Get(context.Background(), client.ObjectKey{Namespace: "db", Name: "db-0"}, got); err != nil {
		t.Fatal(err)
	}
	if got.Labels[contract.PeerLabel] != contract.PeerValue {
		t.Errorf("the running replacement (uid %s) was relabelled %q", got.UID, got.Labels[contract.PeerLabel])
	}
}
