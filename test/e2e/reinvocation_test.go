package e2e

import (
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/test/framework"
)

// sidecarInjector is another mutating webhook, on loopback: it appends a
// container named "sidecar" to every pod that has none, as a service mesh
// or a log shipper would.
func sidecarInjector(t *testing.T) (url string, caBundle []byte) {
	t.Helper()
	port, certDir, caBundle, err := framework.LoopbackServing()
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/sidecar", func(w http.ResponseWriter, r *http.Request) {
		review := admissionv1.AdmissionReview{}
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
			http.Error(w, "bad review", http.StatusBadRequest)
			return
		}
		pod := corev1.Pod{}
		_ = json.Unmarshal(review.Request.Object.Raw, &pod)
		resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
		has := false
		for _, c := range pod.Spec.Containers {
			has = has || c.Name == "sidecar"
		}
		if !has {
			patch, _ := json.Marshal([]map[string]any{{"op": "add", "path": "/spec/containers/-", "value": corev1.Container{Name: "sidecar", Image: "registry.example/proxy:1"}}})
			pt := admissionv1.PatchTypeJSONPatch
			resp.Patch, resp.PatchType = patch, &pt
		}
		review.Response, review.Request = resp, nil
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(review)
	})
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.ServeTLS(l, filepath.Join(certDir, "tls.crt"), filepath.Join(certDir, "tls.key")) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "https://127.0.0.1:" + strconv.Itoa(port) + "/sidecar", caBundle
}

// Reinvocation reaches containers added by later webhooks: with a second
// webhook that adds a container after peergroup (both IfNeeded), the API
// server calls peergroup again and the added container gets the env and
// the seeds mount like every other; nothing is duplicated.
func TestReinvocationCompletesContainersAddedLater(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, map[string]string{contract.GroupLabel: "meshed", "sidecar-test": "yes"})
	url, caBundle := sidecarInjector(t)
	// Configurations are called in name order: "zz-…" after "peergroup".
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "zz-sidecar-" + ns},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "sidecar.test.peergroup.dev",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caBundle},
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			ReinvocationPolicy:      ptr.To(admissionregistrationv1.IfNeededReinvocationPolicy),
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"sidecar-test": "yes"}},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
		}},
	}
	if err := cluster.Client.Create(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Client.Delete(ctx, cfg) })

	// Both entries: a namespace member (its group label stamped by
	// peergroup), and a pod with its own group label.
	podLabelNS := newNamespace(t, map[string]string{"sidecar-test": "yes"})
	for _, c := range []struct {
		ns     string
		labels map[string]string
	}{{ns, nil}, {podLabelNS, map[string]string{contract.GroupLabel: "meshed"}}} {
		pod := createUntilSidecar(t, c.ns, c.labels)
		requireInjected(t, pod)
		requireEveryContainerOnce(t, pod)
		if n := initContainerCount(pod, contract.InitContainerName); n != 1 {
			t.Errorf("%d seed-discovery init containers", n)
		}
	}
}

// createUntilSidecar creates pods until the API server, which picks up a
// new webhook configuration after a moment, calls the sidecar injector.
func createUntilSidecar(t *testing.T, ns string, labels map[string]string) *corev1.Pod {
	t.Helper()
	ctx := testContext(t)
	for i := 0; i <= 50; i++ {
		pod := cassandraPod(ns, "meshed-"+strconv.Itoa(i))
		for k, v := range labels {
			pod.Labels[k] = v
		}
		if err := cluster.Client.Create(ctx, pod); err != nil {
			t.Fatalf("create: %v", err)
		}
		if len(pod.Spec.Containers) == 2 {
			return pod
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the sidecar webhook never added its container")
	return nil
}

func requireEveryContainerOnce(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	for _, c := range pod.Spec.Containers {
		if n := len(envValues(c, contract.EnvSeedsFile)); n != 1 {
			t.Errorf("pod %s container %s has %s %d times, want once", pod.Name, c.Name, contract.EnvSeedsFile, n)
		}
		mounts := 0
		for _, m := range c.VolumeMounts {
			if m.Name == contract.SeedsVolumeName && m.MountPath == contract.SeedsMountPath && m.ReadOnly {
				mounts++
			}
		}
		if mounts != 1 {
			t.Errorf("pod %s container %s mounts the seeds volume %d times, want once: %+v", pod.Name, c.Name, mounts, c.VolumeMounts)
		}
	}
}
