package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/certs"
	"github.com/peergroup/peergroup/test/framework"
)

// installRelease renders the chart with default values (selfSigned) plus
// overrides for release in a new namespace and creates every object, as
// `helm install` would, but with the webhook configurations calling no
// Service: each entry is created pointing at a closed loopback port and
// selecting no namespace (a Service reference would make the API server
// dial a cluster IP, which leads off this machine), until pointAt gives it
// the webhook's URL and the test's namespace. They are deleted when done.
func installRelease(t *testing.T, release string, values map[string]any) (*framework.Rendered, string) {
	t.Helper()
	ctx := testContext(t)
	ns := newNamespace(t, nil)
	r, err := framework.Render(release, ns, values)
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range r.Objects {
		obj = callingNoService(t, obj)
		if err := cluster.Client.Create(ctx, obj); err != nil {
			t.Fatalf("create %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
		if kind := obj.GetKind(); kind == "MutatingWebhookConfiguration" || kind == "ValidatingWebhookConfiguration" {
			name := obj.GetName()
			t.Cleanup(func() {
				u := &unstructured.Unstructured{}
				u.SetGroupVersionKind(obj.GroupVersionKind())
				u.SetName(name)
				_ = cluster.Client.Delete(context.Background(), u)
			})
		}
	}
	return r, ns
}

// callingNoService is a copy of obj; a webhook configuration's entries
// call a closed loopback port instead of the chart's Service and select no
// namespace, until pointAt points them at the test's webhook.
func callingNoService(t *testing.T, obj *unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	obj = obj.DeepCopy()
	if kind := obj.GetKind(); kind != "MutatingWebhookConfiguration" && kind != "ValidatingWebhookConfiguration" {
		return obj
	}
	hooks, _, _ := unstructured.NestedSlice(obj.Object, "webhooks")
	for _, h := range hooks {
		hook := h.(map[string]any)
		path, _, _ := unstructured.NestedString(hook, "clientConfig", "service", "path")
		hook["clientConfig"] = map[string]any{"url": "https://127.0.0.1:1" + path}
		sel, _ := hook["namespaceSelector"].(map[string]any)
		if sel == nil {
			sel = map[string]any{}
		}
		sel["matchLabels"] = map[string]any{"kubernetes.io/metadata.name": "none-until-pointat"}
		hook["namespaceSelector"] = sel
	}
	if err := unstructured.SetNestedSlice(obj.Object, hooks, "webhooks"); err != nil {
		t.Fatal(err)
	}
	return obj
}

func fullname(release string) string { return release + "-peergroup" }

// asRelease is the release's own ServiceAccount: the selfSigned webhook
// runs with the chart's Role and ClusterRole only.
func asRelease(ns, release string) *rest.Config {
	return framework.ServiceAccountConfig(cluster.Config, ns, fullname(release))
}

func secretCA(t *testing.T, ns, release string) []byte {
	t.Helper()
	s := &corev1.Secret{}
	if err := cluster.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: fullname(release) + "-tls"}, s); err != nil {
		t.Fatalf("Secret: %v", err)
	}
	return s.Data["ca.crt"]
}

func webhookConfiguration(t *testing.T, release string) *admissionregistrationv1.MutatingWebhookConfiguration {
	t.Helper()
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := cluster.Client.Get(context.Background(), client.ObjectKey{Name: fullname(release)}, mwc); err != nil {
		t.Fatal(err)
	}
	return mwc
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// servedCert returns the serving certificate at addr, verified with ca for
// the Service's DNS name.
func servedCert(ca []byte, serverName, addr string) ([]byte, error) {
	resp, err := framework.TLSClient(ca, serverName).Get("https://" + addr + "/healthz")
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	return pemOf(resp.TLS.PeerCertificates[0].Raw), nil
}

// 1 + 2: the default chart (selfSigned) works with nothing else installed.
func TestSelfSignedDefaultChart(t *testing.T) {
	const release = "self"
	r, ns := installRelease(t, release, nil)
	start := time.Now()
	w, err := framework.StartWebhook(testContext(t), cluster, r, ns, framework.As(asRelease(ns, release)))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	t.Logf("ready %s after start", time.Since(start).Round(time.Millisecond))
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("ready only after %s", took)
	}

	ca := secretCA(t, ns, release)
	s := &corev1.Secret{}
	_ = cluster.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: fullname(release) + "-tls"}, s)
	if s.Type != corev1.SecretTypeTLS || len(s.Data["tls.crt"]) == 0 || len(s.Data["tls.key"]) == 0 || len(ca) == 0 {
		t.Fatalf("Secret type %s keys %d", s.Type, len(s.Data))
	}
	// Owned by the chart's webhook Service, so `helm uninstall` (which
	// deletes it) leaves no Secret behind.
	webhookService := &corev1.Service{}
	if err := cluster.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: fullname(release)}, webhookService); err != nil {
		t.Fatal(err)
	}
	if o := s.OwnerReferences; len(o) != 1 || o[0].APIVersion != "v1" || o[0].Kind != "Service" || o[0].Name != webhookService.Name || o[0].UID != webhookService.UID {
		t.Errorf("Secret owners %+v, want the webhook Service %s (uid %s)", o, webhookService.Name, webhookService.UID)
	}
	mwc := webhookConfiguration(t, release)
	for _, wh := range mwc.Webhooks {
		if !bytes.Equal(wh.ClientConfig.CABundle, ca) {
			t.Errorf("webhook %s caBundle not the Secret's CA", wh.Name)
		}
	}
	svcName := fullname(release) + "." + ns + ".svc"
	if _, err := servedCert(mwc.Webhooks[0].ClientConfig.CABundle, svcName, w.Addr()); err != nil {
		t.Fatalf("TLS with the caBundle and ServerName %s: %v", svcName, err)
	}

	// Point the API server at the loopback URL, keeping the caBundle the
	// webhook wrote, and admit a pod through it.
	url := w.URL()
	for i := range mwc.Webhooks {
		mwc.Webhooks[i].ClientConfig.Service = nil
		mwc.Webhooks[i].ClientConfig.URL = &url
	}
	if err := cluster.Client.Update(context.Background(), mwc); err != nil {
		t.Fatal(err)
	}
	// The suite's main registration matches this pod too; both are called.
	// This one has failurePolicy Fail, so the pod is admitted only if the
	// API server verified the self-signed certificate with the caBundle
	// the webhook wrote.
	member := newNamespace(t, map[string]string{"peergroup.dev/group": "selfsigned"})
	if err := framework.WaitForInjection(testContext(t), cluster, member); err != nil {
		t.Fatal(err)
	}
	pod := cassandraPod(member, "via-self-signed")
	if err := cluster.Client.Create(context.Background(), pod); err != nil {
		t.Fatalf("pod through the self-signed webhook: %v", err)
	}
	requireInjected(t, pod)

	// 2. Someone clears the caBundle: it comes back.
	mwc = webhookConfiguration(t, release)
	for i := range mwc.Webhooks {
		mwc.Webhooks[i].ClientConfig.CABundle = nil
	}
	if err := cluster.Client.Update(context.Background(), mwc); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "caBundle restored", func() bool {
		for _, wh := range webhookConfiguration(t, release).Webhooks {
			if !bytes.Equal(wh.ClientConfig.CABundle, ca) {
				return false
			}
		}
		return true
	})
}

// 3. Two replicas started at once converge on one Secret and one CA.
func TestSelfSignedReplicasConverge(t *testing.T) {
	const release = "pair"
	r, ns := installRelease(t, release, nil)
	var wg sync.WaitGroup
	hooks := make([]*framework.Webhook, 2)
	errs := make([]error, 2)
	for i := range hooks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hooks[i], errs[i] = framework.StartWebhook(testContext(t), cluster, r, ns, framework.As(asRelease(ns, release)))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		defer hooks[i].Stop()
	}
	list := &corev1.SecretList{}
	if err := cluster.Client.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 {
		t.Fatalf("%d Secrets, want 1", len(list.Items))
	}
	ca := list.Items[0].Data["ca.crt"]
	svcName := fullname(release) + "." + ns + ".svc"
	var served [][]byte
	for i, h := range hooks {
		cert, err := servedCert(ca, svcName, h.Addr())
		if err != nil {
			t.Fatalf("replica %d not verified by the shared CA: %v", i, err)
		}
		served = append(served, cert)
	}
	if !bytes.Equal(served[0], served[1]) {
		t.Error("replicas serve different certificates from one Secret")
	}
}

// 4. Rotation with a short validity: requests during rotation all succeed.
func TestSelfSignedRotationUnderLoad(t *testing.T) {
	const release = "rotate"
	// 12s is below the chart's one-hour floor, so it is given as a flag
	// (the last flag wins over the chart's --cert-validity).
	r, ns := installRelease(t, release, nil)
	w, err := framework.StartWebhook(testContext(t), cluster, r, ns, framework.As(asRelease(ns, release)), framework.Args("--cert-validity=12s", "--cert-resync-interval=500ms"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	svcName := fullname(release) + "." + ns + ".svc"
	review := admissionReview(t)
	var ok, failed atomic.Int64
	serials := sync.Map{}
	deadline := time.Now().Add(16 * time.Second)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				// The CA does not change during serving-cert rotation, so
				// the caBundle read once stays valid; read it anyway, as
				// the API server would see it.
				ca := secretCA(t, ns, release)
				httpc := framework.TLSClient(ca, svcName)
				resp, err := httpc.Post(w.URL(), "application/json", bytes.NewReader(review))
				if err != nil {
					failed.Add(1)
					t.Logf("request failed: %v", err)
					continue
				}
				out := admissionv1.AdmissionReview{}
				decodeErr := json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
				if decodeErr != nil || resp.StatusCode != 200 || out.Response == nil || !out.Response.Allowed || len(out.Response.Patch) == 0 {
					failed.Add(1)
					t.Logf("bad answer: status %d err %v", resp.StatusCode, decodeErr)
					continue
				}
				serials.Store(certs.Serial(pemOf(resp.TLS.PeerCertificates[0].Raw)), true)
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	n := 0
	serials.Range(func(any, any) bool { n++; return true })
	t.Logf("%d requests ok, %d failed, %d serving certificates seen", ok.Load(), failed.Load(), n)
	if failed.Load() != 0 {
		t.Errorf("%d requests failed during rotation", failed.Load())
	}
	if n < 2 {
		t.Errorf("saw %d serving certificates in 16s with a 12s validity: no rotation happened", n)
	}
	if ok.Load() < 50 {
		t.Errorf("only %d requests: the load did not run", ok.Load())
	}
}

// 5. certManager/provided modes: the server reloads changed files.
func TestServerReloadsMountedCertificate(t *testing.T) {
	w, err := framework.StartWebhook(testContext(t), cluster, rendered, releaseNamespace)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	caCert, caKey, err := certs.NewCA("renewed-ca", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := certs.NewServing(caCert, caKey, []string{"127.0.0.1"}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// As the kubelet updates a Secret volume: new files, then a swap.
	for name, data := range map[string][]byte{"tls.key": key, "tls.crt": cert} {
		tmp := filepath.Join(w.CertDir, "."+name)
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(w.CertDir, name)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 15*time.Second, "new certificate served", func() bool {
		got, err := servedCert(caCert, "", w.Addr())
		return err == nil && bytes.Equal(got, cert)
	})
}

func admissionReview(t *testing.T) []byte {
	t.Helper()
	pod := cassandraPod("default", "load")
	pod.Labels["peergroup.dev/group"] = "cassandra"
	raw, _ := json.Marshal(pod)
	review := admissionv1.AdmissionReview{}
	review.APIVersion, review.Kind = "admission.k8s.io/v1", "AdmissionReview"
	dry := true
	review.Request = &admissionv1.AdmissionRequest{UID: "load-1", Operation: admissionv1.Create, Namespace: "default", DryRun: &dry}
	review.Request.Kind.Version, review.Request.Kind.Kind = "v1", "Pod"
	review.Request.Object.Raw = raw
	out, _ := json.Marshal(review)
	return out
}

func pemOf(der []byte) []byte {
	var b strings.Builder
	_ = pemEncode(&b, der)
	return []byte(b.String())
}

func pemEncode(w *strings.Builder, der []byte) error {
	return pem.Encode(w, &pem.Block{Type: "CERTIFICATE", Bytes: der})
}
