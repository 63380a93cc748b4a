package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/peergroup/peergroup/test/framework"
	"github.com/peergroup/peergroup/webhook"
)

// pki is a CA that signs client certificates, and writes them as files.
type pki struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newPKI(t *testing.T, name string) pki {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return pki{cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// clientPair writes a client certificate for cn and its key to dir and
// returns the pair.
func (p pki) clientPair(t *testing.T, cn, dir string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	if dir != "" {
		for name, data := range map[string][]byte{"client.crt": certPEM, "client.key": keyPEM} {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

// admissionConfig writes the API server's AdmissionConfiguration: both
// webhook admission plugins present the client certificate in dir to
// every webhook ("*"; a cluster names the webhook's Service host instead,
// docs/install.md).
func admissionConfig(t *testing.T, dir string) string {
	t.Helper()
	kubeconfig := filepath.Join(dir, "webhook-kubeconfig.yaml")
	if err := os.WriteFile(kubeconfig, fmt.Appendf(nil, `apiVersion: v1
kind: Config
users:
- name: "*"
  user:
    client-certificate: %s
    client-key: %s
`, filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")), 0o600); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "admission.yaml")
	plugin := func(name string) string {
		return fmt.Sprintf(`- name: %s
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: WebhookAdmissionConfiguration
    kubeConfigFile: %s
`, name, kubeconfig)
	}
	if err := os.WriteFile(config, []byte("apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n"+
		plugin("MutatingAdmissionWebhook")+plugin("ValidatingAdmissionWebhook")), 0o600); err != nil {
		t.Fatal(err)
	}
	return config
}

// TestOnlyTheAPIServerMayCall runs the chart's default (selfSigned) webhook
// with clientAuth on behind an API server that presents a client
// certificate: pods are admitted and injected; a review sent straight to
// the webhook without a certificate, with another CA's, or with the CA's
// for another name is refused at TLS and creates nothing (the same review
// with the right certificate is answered); after the API server's files
// are replaced with a certificate of a new CA, without restarting it,
// admissions go on once the webhook trusts only the new CA.
func TestOnlyTheAPIServerMayCall(t *testing.T) {
	ctx := testContext(t)
	dir := t.TempDir()
	clientCA, otherCA := newPKI(t, "apiserver-webhook-client-ca"), newPKI(t, "another-ca")
	clientCA.clientPair(t, "kube-apiserver-webhook-client", dir)
	config := admissionConfig(t, dir)
	c, err := framework.StartClusterWith(func(env *envtest.Environment) {
		env.ControlPlane.GetAPIServer().Configure().Set("admission-control-config-file", config)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()

	const release, ns = "peergroup", "peergroup-system"
	if _, err := c.CreateNamespace(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	r, err := framework.Render(release, ns, map[string]any{"clientAuth": map[string]any{
		"enabled": true, "caBundle": string(clientCA.pem), "allowedNames": []any{"kube-apiserver-webhook-client"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range r.Objects {
		if err := c.Client.Create(ctx, callingNoService(t, obj)); err != nil {
			t.Fatalf("create %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
	}
	// The chart mounts its ConfigMap at /etc/peergroup/client-ca; here the
	// same PEM is a file of the test's.
	caFile := filepath.Join(dir, "client-ca.crt")
	if err := os.WriteFile(caFile, clientCA.pem, 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := framework.StartWebhook(ctx, c, r, ns, framework.As(framework.ServiceAccountConfig(c.Config, ns, release)), framework.Args("--client-ca-file="+caFile))
	if err != nil {
		t.Fatal(err) // selfSigned: ready means its own check got through its client-certificate gate
	}
	defer w.Stop()
	members, err := c.CreateNamespace(ctx, "members", map[string]string{"peergroup.dev/group": "signed"})
	if err != nil {
		t.Fatal(err)
	}
	pointAtOn(t, c, release, w.URL(), members.Name)
	admitted := func(name string) {
		t.Helper()
		var pod *corev1.Pod
		eventually(t, 30*time.Second, "a member pod admitted through the API server's client certificate", func() bool {
			pod = cassandraPod(members.Name, name)
			return c.Client.Create(ctx, pod) == nil
		})
		requireInjected(t, pod)
		svc := &corev1.Service{}
		if err := c.Client.Get(ctx, client.ObjectKey{Namespace: members.Name, Name: "signed"}, svc); err != nil {
			t.Fatalf("the group's Service: %v", err)
		}
	}
	admitted("through-the-api-server")

	t.Run("a review sent without the API server's certificate creates nothing", func(t *testing.T) {
		other := otherCA.clientPair(t, "kube-apiserver-webhook-client", "")
		unnamed := clientCA.clientPair(t, "system:node:worker-1", "")
		for _, tc := range []struct {
			name   string
			client *tls.Certificate
		}{{"no certificate", nil}, {"another CA's certificate", &other}, {"the CA's certificate for another name", &unnamed}} {
			forged := fmt.Sprintf("forged-%d", time.Now().UnixNano())
			refusal, err := postReview(w, tc.client, forged)
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			// Refused by the TLS handshake, not by anything later.
			if !strings.Contains(refusal, "remote error: tls: certificate required") && !strings.Contains(refusal, "remote error: tls: bad certificate") {
				t.Errorf("%s: refused by something other than the handshake's certificate check: %s", tc.name, refusal)
			}
			t.Logf("%s: refused: %s", tc.name, refusal)
			err = c.Client.Get(ctx, client.ObjectKey{Namespace: members.Name, Name: forged}, &corev1.Service{})
			if !apierrors.IsNotFound(err) {
				t.Errorf("%s: Service %s: %v, want none", tc.name, forged, err)
			}
		}
	})

	t.Run("the same review with the API server's certificate is answered", func(t *testing.T) {
		// The control for the refusals above: the same request, presenting
		// a certificate of the CA with the accepted name, is served.
		valid := clientCA.clientPair(t, "kube-apiserver-webhook-client", "")
		if _, err := postReview(w, &valid, "direct"); err == nil || !strings.Contains(err.Error(), "answered HTTP 200") {
			t.Fatalf("a review with a valid certificate: %v", err)
		}
	})

	t.Run("a new CA: the API server's files replaced, no restart", func(t *testing.T) {
		// The webhook trusts old and new CA, the API server's two files
		// are replaced with a certificate of the new CA (client-go reads
		// them again on its own), then the webhook trusts the new CA only
		// and drops its connections (a restart): admissions go on, so the
		// API server presents the new certificate.
		newCA := newPKI(t, "apiserver-webhook-client-ca-2")
		if err := os.WriteFile(caFile, append(append([]byte{}, clientCA.pem...), newCA.pem...), 0o644); err != nil {
			t.Fatal(err)
		}
		w.Stop()
		if err := w.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		admitted("trusting-both-cas")
		newCA.clientPair(t, "kube-apiserver-webhook-client", dir)
		if err := os.WriteFile(caFile, newCA.pem, 0o644); err != nil {
			t.Fatal(err)
		}
		w.Stop()
		if err := w.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		admitted("after-the-new-ca")
	})
}

// pointAtOn is pointAt on cluster c.
func pointAtOn(t *testing.T, c *framework.Cluster, release, url, namespace string) {
	t.Helper()
	ctx := context.Background()
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := c.Client.Get(ctx, client.ObjectKey{Name: fullname(release)}, mwc); err != nil {
		// The chart names its configurations after the release alone when
		// the release is called peergroup.
		if err := c.Client.Get(ctx, client.ObjectKey{Name: release}, mwc); err != nil {
			t.Fatal(err)
		}
	}
	for i := range mwc.Webhooks {
		mwc.Webhooks[i].ClientConfig.Service = nil
		mwc.Webhooks[i].ClientConfig.URL = &url
		mwc.Webhooks[i].NamespaceSelector.MatchLabels = map[string]string{"kubernetes.io/metadata.name": namespace}
	}
	if err := c.Client.Update(ctx, mwc); err != nil {
		t.Fatal(err)
	}
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := c.Client.Get(ctx, client.ObjectKey{Name: mwc.Name}, vwc); err != nil {
		t.Fatal(err)
	}
	validateURL := strings.TrimSuffix(url, webhook.Path) + webhook.ValidatePath
	for i := range vwc.Webhooks {
		vwc.Webhooks[i].ClientConfig.Service = nil
		vwc.Webhooks[i].ClientConfig.URL = &validateURL
		vwc.Webhooks[i].NamespaceSelector.MatchLabels = map[string]string{"kubernetes.io/metadata.name": namespace}
	}
	if err := c.Client.Update(ctx, vwc); err != nil {
		t.Fatal(err)
	}
}

// postReview sends a pod CREATE review naming group (not a dry run: an
// answered one would create the group's Service) straight to the
// webhook's mutating and validating paths, presenting clientCert (nil: no
// certificate). It returns how the connection was refused, or an error
// when a path answered. The server's certificate is not under test.
func postReview(w *framework.Webhook, clientCert *tls.Certificate, group string) (refusal string, err error) {
	body, err := forgedReview("members", group, nil)
	if err != nil {
		return "", err
	}
	cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
	if clientCert != nil {
		cfg.Certificates = []tls.Certificate{*clientCert}
	}
	httpc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	var refusals []string
	for _, path := range []string{webhook.Path, webhook.ValidatePath} {
		resp, err := httpc.Post(strings.TrimSuffix(w.URL(), webhook.Path)+path, "application/json", bytes.NewReader(body))
		if err != nil {
			refusals = append(refusals, err.Error())
			continue
		}
		resp.Body.Close()
		return "", fmt.Errorf("%s answered HTTP %d", path, resp.StatusCode)
	}
	return strings.Join(refusals, "; "), nil
}

// forgedReview is a pod CREATE review for namespace ns naming group, as
// something other than the API server would send it (dryRun as given).
func forgedReview(ns, group string, dryRun *bool) ([]byte, error) {
	pod := cassandraPod(ns, "forged")
	pod.Labels = map[string]string{"peergroup.dev/group": group}
	raw, err := json.Marshal(pod)
	if err != nil {
		return nil, err
	}
	return json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: types.UID(fmt.Sprintf("forged-%d", time.Now().UnixNano())), Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: ns, Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw}, DryRun: dryRun,
		},
	})
}

// TestForgedReviewReach pins what a review that did not come through the
// API server can do to a webhook without clientAuth (the chart's
// default), sent to both of its paths: it creates the named group's
// headless Service in an ordinary namespace that exists, and nothing else
// — no Service in an excluded namespace (kube-system, the webhook's own),
// none in a namespace that does not exist, none for a dry run, and a
// Service of that name that exists is never changed (docs/install.md,
// "Who can call it").
func TestForgedReviewReach(t *testing.T) {
	ctx := testContext(t)
	httpc := framework.TLSClient(hook.CABundle, "127.0.0.1")
	send := func(t *testing.T, ns, group string, dryRun *bool) {
		t.Helper()
		body, err := forgedReview(ns, group, dryRun)
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{webhook.Path, webhook.ValidatePath} {
			resp, err := httpc.Post(strings.TrimSuffix(hook.URL(), webhook.Path)+path, "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			resp.Body.Close()
		}
	}
	noService := func(t *testing.T, ns, name string) {
		t.Helper()
		if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &corev1.Service{}); !apierrors.IsNotFound(err) {
			t.Errorf("Service %s/%s after a forged review: %v, want none", ns, name, err)
		}
	}

	t.Run("an ordinary namespace: the group's headless Service is created", func(t *testing.T) {
		ns := newNamespace(t, nil)
		send(t, ns, "forged-group", nil)
		svc := &corev1.Service{}
		if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "forged-group"}, svc); err != nil {
			t.Fatalf("the exposure this test pins is gone (update docs/install.md): %v", err)
		}
		if svc.Spec.ClusterIP != corev1.ClusterIPNone || svc.Labels["app.kubernetes.io/managed-by"] != "peergroup" {
			t.Errorf("Service %+v: want peergroup's headless Service", svc.Spec)
		}
		// And the Event that says so, regarding the namespace (the pod
		// names no controller).
		eventually(t, 10*time.Second, "the PeerGroupServiceCreated Event", func() bool {
			events := &eventsv1.EventList{}
			return cluster.Client.List(ctx, events) == nil &&
				slices.ContainsFunc(events.Items, func(e eventsv1.Event) bool {
					return e.Reason == "PeerGroupServiceCreated" && e.Regarding.Kind == "Namespace" && e.Regarding.Name == ns
				})
		})
	})
	t.Run("excluded namespaces: nothing", func(t *testing.T) {
		for _, ns := range []string{"kube-system", releaseNamespace} {
			send(t, ns, "forged-excluded", nil)
			noService(t, ns, "forged-excluded")
		}
	})
	t.Run("a namespace that does not exist: nothing", func(t *testing.T) {
		ns := fmt.Sprintf("absent-%d", time.Now().UnixNano())
		send(t, ns, "forged-absent", nil)
		noService(t, ns, "forged-absent")
		if err := cluster.Client.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{}); !apierrors.IsNotFound(err) {
			t.Errorf("namespace %s: %v, want none", ns, err)
		}
	})
	t.Run("a dry run: nothing", func(t *testing.T) {
		ns := newNamespace(t, nil)
		dry := true
		send(t, ns, "forged-dry", &dry)
		noService(t, ns, "forged-dry")
	})
	t.Run("a Service of the group's name exists: unchanged", func(t *testing.T) {
		ns := newNamespace(t, nil)
		existing := &corev1.Service{}
		existing.Namespace, existing.Name = ns, "forged-existing"
		existing.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80}}
		existing.Spec.Selector = map[string]string{"app": "web"}
		if err := cluster.Client.Create(ctx, existing); err != nil {
			t.Fatal(err)
		}
		send(t, ns, "forged-existing", nil)
		after := &corev1.Service{}
		if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(existing), after); err != nil {
			t.Fatal(err)
		}
		if after.ResourceVersion != existing.ResourceVersion {
			t.Errorf("the existing Service changed: resourceVersion %s -> %s", existing.ResourceVersion, after.ResourceVersion)
		}
	})
}
