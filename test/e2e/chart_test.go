package e2e

import (
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/test/framework"
)

// Every object the chart renders, in every certificate mode, is accepted
// by the real API server (server-side dry-run, cert-manager CRDs installed).
func TestChartObjectsAcceptedByAPIServer(t *testing.T) {
	ctx := testContext(t)
	// Its own release, so nothing collides with the installed webhook.
	ns := newNamespace(t, nil)
	for mode, certs := range map[string]map[string]any{
		"selfSigned":  {"mode": "selfSigned"},
		"certManager": {"mode": "certManager"},
		"provided":    {"mode": "provided", "provided": map[string]any{"secretName": "my-tls", "caBundle": "Y2E="}},
	} {
		t.Run(mode, func(t *testing.T) {
			r, err := framework.Render("dry-run", ns, map[string]any{"certificates": certs})
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Objects) < 8 {
				t.Fatalf("suspiciously few objects: %v", r.Kinds())
			}
			for _, obj := range r.Objects {
				if err := cluster.Client.Create(ctx, obj.DeepCopy(), client.DryRunAll); err != nil {
					t.Errorf("%s %s rejected: %v", obj.GetKind(), obj.GetName(), err)
				}
			}
		})
	}
}

// The documented examples are workloads the API server accepts
// (server-side dry-run; their pods need a controller).
func TestExamplesAccepted(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, nil)
	for _, file := range []string{"cassandra-statefulset.yaml", "akka-deployment.yaml", "elasticsearch-statefulset.yaml", "nats.yaml"} {
		objs, err := framework.DecodeFile(filepath.Join(framework.RepoRoot(), "docs", "examples", file))
		if err != nil {
			t.Fatal(err)
		}
		for _, obj := range objs {
			obj.SetNamespace(ns)
			if err := cluster.Client.Create(ctx, obj, client.DryRunAll); err != nil {
				t.Errorf("%s: %s %s rejected: %v", file, obj.GetKind(), obj.GetName(), err)
			}
			// The pod its controller would create, through the webhook:
			// the example's annotations are admitted.
			if pod := templatePod(t, obj); pod != nil {
				pod.Namespace = ns
				if err := cluster.Client.Create(ctx, pod, client.DryRunAll); err != nil {
					t.Errorf("%s: the %s's pod rejected: %v", file, obj.GetKind(), err)
				} else {
					requireInjected(t, pod)
				}
			}
		}
	}
}

// templatePod is the first pod a workload's controller would create from
// its template: a StatefulSet's with its hostname and subdomain (as the
// StatefulSet controller sets them), or nil for an object without one.
func templatePod(t *testing.T, u *unstructured.Unstructured) *corev1.Pod {
	t.Helper()
	tmpl, found, err := unstructured.NestedMap(u.Object, "spec", "template")
	if err != nil || !found {
		return nil
	}
	pod := &corev1.Pod{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(tmpl, pod); err != nil {
		t.Fatalf("%s %s: template: %v", u.GetKind(), u.GetName(), err)
	}
	pod.Name = u.GetName() + "-0"
	if u.GetKind() == "StatefulSet" {
		svc, _, _ := unstructured.NestedString(u.Object, "spec", "serviceName")
		pod.Spec.Hostname, pod.Spec.Subdomain = pod.Name, svc
		claims, _, _ := unstructured.NestedSlice(u.Object, "spec", "volumeClaimTemplates")
		for _, c := range claims {
			name, _, _ := unstructured.NestedString(c.(map[string]any), "metadata", "name")
			pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name + "-" + pod.Name}}})
		}
	}
	return pod
}
