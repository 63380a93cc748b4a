package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/certs"
	"github.com/peergroup/peergroup/test/framework"
	"github.com/peergroup/peergroup/webhook"
)

// 6. A CA rotation with the default two replicas behind one round-robin
// address, under continuous admissions through the API server: the
// caBundle grows to both CAs (written once, never flapping back), no
// handshake made with the live caBundle fails and no pod is refused.
//
// The rotation is forced by a Secret whose CA is due shortly (made with the
// clock moved back) and a one-minute validity, so the CA rotates within
// seconds of the load starting instead of after two thirds of ten minutes.
func TestSelfSignedCARotationTwoReplicas(t *testing.T) {
	const release, validity, caDueIn = "carotate", time.Minute, 25 * time.Second
	ctx := testContext(t)
	r, ns := installRelease(t, release, nil)
	firstCA := seedSecret(t, ns, release, validity, caDueIn)
	start := time.Now()
	var replicas []*framework.Webhook
	for range 2 {
		w, err := framework.StartWebhook(ctx, cluster, r, ns, framework.As(asRelease(ns, release)),
			framework.Args(fmt.Sprintf("--cert-validity=%s", validity), "--cert-resync-interval=1s"))
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		replicas = append(replicas, w)
	}
	lb, err := framework.StartProxy(replicas[0].Addr(), replicas[1].Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	member := newNamespace(t, map[string]string{"peergroup.dev/group": "carotate"})
	pointAt(t, release, "https://"+lb.Addr()+webhook.Path, member)
	bundles := watchCABundles(t, ctx, fullname(release))
	if err := framework.WaitForInjection(ctx, cluster, member); err != nil {
		t.Fatal(err)
	}

	load := startLoad(t, member, lb.Addr(), fullname(release))
	loadStart := time.Now()
	if since := loadStart.Sub(start); since > caDueIn-3*time.Second {
		t.Fatalf("load started %s after the Secret, too late for its CA due after %s", since, caDueIn)
	}
	eventually(t, caDueIn+30*time.Second, "CA rotated and both replicas serving from the new CA", func() bool {
		ca := secretCA(t, ns, release)
		if certs.SameCA(ca, firstCA) {
			return false
		}
		newCA, _ := certs.FirstCert(ca)
		for _, w := range replicas {
			if _, err := servedCert(newCA, "127.0.0.1", w.Addr()); err != nil {
				return false
			}
		}
		return true
	})
	time.Sleep(2 * time.Second)
	load.stop()
	t.Logf("load ran %s; %d pods admitted, %d refused; %d handshakes, %d failed; served from CAs %v",
		time.Since(loadStart).Round(time.Second), load.admitted.Load(), load.refused.Load(), load.handshakes.Load(), load.failedHandshakes.Load(), load.servedFrom())
	if n := load.refused.Load(); n != 0 {
		t.Errorf("%d pods refused during the CA rotation", n)
	}
	if n := load.failedHandshakes.Load(); n != 0 {
		t.Errorf("%d handshakes with the live caBundle failed during the CA rotation", n)
	}
	if load.admitted.Load() < 20 || load.handshakes.Load() < 50 {
		t.Errorf("only %d admissions and %d handshakes: the load did not run", load.admitted.Load(), load.handshakes.Load())
	}
	if n := len(load.servedFrom()); n != 2 {
		t.Errorf("handshakes saw certificates of %d CAs, want the old and the new", n)
	}
	checkBundleHistory(t, bundles.history(), firstCA, secretCA(t, ns, release))

	// The admissions counted went through these replicas: with the address
	// refusing connections, the API server refuses the pod (failurePolicy
	// Fail).
	lb.Refuse(true)
	if err := cluster.Client.Create(ctx, probePod(member), client.DryRunAll); err == nil {
		t.Error("a pod was admitted with the replicas unreachable: the load did not go through them")
	}
}

// seedSecret creates the release's certificate Secret, as a replica would
// have, but with a CA issued long enough ago to be due for renewal after
// caDueIn, and a fresh serving certificate. It returns the CA.
func seedSecret(t *testing.T, ns, release string, validity, caDueIn time.Duration) []byte {
	t.Helper()
	now := time.Now()
	caLife := certs.CALifetimeFactor * validity
	probe, _, err := certs.NewCA("probe", now, caLife)
	if err != nil {
		t.Fatal(err)
	}
	renew, err := certs.RenewAt(probe)
	if err != nil {
		t.Fatal(err)
	}
	ca, caKey, err := certs.NewCA("peergroup-webhook-ca", now.Add(caDueIn-renew.Sub(now)), caLife)
	if err != nil {
		t.Fatal(err)
	}
	names := append(certs.ServiceDNSNames(fullname(release), ns), "127.0.0.1")
	cert, key, err := certs.NewServing(ca, caKey, names, now, validity)
	if err != nil {
		t.Fatal(err)
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fullname(release) + "-tls"},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{certs.CACertKey: ca, certs.CAKeyKey: caKey, certs.CertKey: cert, certs.KeyKey: key},
	}
	if err := cluster.Client.Create(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	return ca
}

// pointAt sends the release's webhooks to url, for pods in namespace only,
// keeping the caBundle the replicas wrote.
func pointAt(t *testing.T, release, url, namespace string) {
	t.Helper()
	mwc := webhookConfiguration(t, release)
	for i := range mwc.Webhooks {
		mwc.Webhooks[i].ClientConfig.Service = nil
		mwc.Webhooks[i].ClientConfig.URL = &url
		mwc.Webhooks[i].NamespaceSelector.MatchLabels = map[string]string{"kubernetes.io/metadata.name": namespace}
	}
	if err := cluster.Client.Update(context.Background(), mwc); err != nil {
		t.Fatal(err)
	}
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := cluster.Client.Get(context.Background(), client.ObjectKey{Name: fullname(release)}, vwc); err != nil {
		t.Fatal(err)
	}
	validateURL := strings.TrimSuffix(url, webhook.Path) + webhook.ValidatePath
	for i := range vwc.Webhooks {
		vwc.Webhooks[i].ClientConfig.Service = nil
		vwc.Webhooks[i].ClientConfig.URL = &validateURL
		vwc.Webhooks[i].NamespaceSelector.MatchLabels = map[string]string{"kubernetes.io/metadata.name": namespace}
	}
	if err := cluster.Client.Update(context.Background(), vwc); err != nil {
		t.Fatal(err)
	}
}

// caBundleHistory records every caBundle the configuration carried, in
// order, as a watch delivers them.
type caBundleHistory struct {
	mu      sync.Mutex
	bundles [][]byte
}

func (h *caBundleHistory) history() [][]byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([][]byte{}, h.bundles...)
}

func watchCABundles(t *testing.T, ctx context.Context, name string) *caBundleHistory {
	t.Helper()
	h := &caBundleHistory{}
	watchWebhookConfiguration(t, ctx, name, func(mwc *admissionregistrationv1.MutatingWebhookConfiguration) {
		if len(mwc.Webhooks) == 0 {
			return
		}
		b := mwc.Webhooks[0].ClientConfig.CABundle
		h.mu.Lock()
		if n := len(h.bundles); n == 0 || !bytes.Equal(h.bundles[n-1], b) {
			h.bundles = append(h.bundles, b)
		}
		h.mu.Unlock()
	})
	return h
}

// checkBundleHistory: the caBundle went from the old CA to both CAs and
// stayed there: it never lost a CA, never flapped.
func checkBundleHistory(t *testing.T, history [][]byte, oldCA, secretBundle []byte) {
	t.Helper()
	newCA, _ := certs.FirstCert(secretBundle)
	var got []string
	for _, b := range history {
		s := ""
		for _, c := range pemCerts(b) {
			switch {
			case bytes.Equal(c, pemOf(derOf(oldCA))):
				s += "[old]"
			case bytes.Equal(c, newCA):
				s += "[new]"
			default:
				s += "[other]"
			}
		}
		got = append(got, s)
	}
	if want := []string{"[old]", "[new][old]"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("caBundles in turn %v, want %v: grown once to both CAs, never back", got, want)
	}
}

func pemCerts(bundle []byte) [][]byte {
	var out [][]byte
	for rest := bundle; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			return out
		}
		out = append(out, pemOf(block.Bytes))
	}
}

func derOf(certPEM []byte) []byte {
	block, _ := pem.Decode(certPEM)
	return block.Bytes
}

// rotationLoad is continuous admissions through the API server (dry-run
// pod creates in the member namespace) and TLS handshakes through the
// replicas' address made with the live caBundle, as the API server makes
// them.
type rotationLoad struct {
	admitted, refused, handshakes, failedHandshakes atomic.Int64

	mu      sync.Mutex
	issuers map[string]bool
	workers
}

func startLoad(t *testing.T, member, addr, configName string) *rotationLoad {
	l := &rotationLoad{issuers: map[string]bool{}, workers: newWorkers()}
	for range 3 {
		l.run(func() {
			if err := cluster.Client.Create(context.Background(), probePod(member), client.DryRunAll); err != nil {
				l.refused.Add(1)
				t.Logf("pod refused: %v", err)
				return
			}
			l.admitted.Add(1)
			time.Sleep(10 * time.Millisecond)
		})
	}
	l.run(func() {
		issuer, err := handshake(addr, configName)
		l.handshakes.Add(1)
		if err != nil {
			l.failedHandshakes.Add(1)
			t.Logf("handshake failed: %v", err)
			return
		}
		l.mu.Lock()
		l.issuers[issuer] = true
		l.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	})
	return l
}

func (l *rotationLoad) servedFrom() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for issuer := range l.issuers {
		out = append(out, issuer)
	}
	return out
}

// handshake reads the live caBundle of configName and makes a TLS
// handshake with it through addr for 127.0.0.1, the name the API server verifies for the
// loopback URL. It returns the serving certificate's issuer (its CA).
func handshake(addr, configName string) (string, error) {
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := cluster.Client.Get(context.Background(), client.ObjectKey{Name: configName}, mwc); err != nil {
		return "", fmt.Errorf("read the configuration: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(mwc.Webhooks[0].ClientConfig.CABundle)
	d := &tls.Dialer{Config: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	state := conn.(*tls.Conn).ConnectionState()
	return fmt.Sprintf("%x", state.PeerCertificates[0].AuthorityKeyId), nil
}

func probePod(ns string) *corev1.Pod {
	pod := cassandraPod(ns, "")
	pod.GenerateName = "rotation-"
	return pod
}
