package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
)

// replica is a keeper in a CA rotation test, with its own clock offset.
type replica struct {
	name string
	k    *Keeper
	lag  time.Duration
}

// served is the certificate a replica's server would hand out now (the
// pair in its CertDir), or nil before it wrote one.
func (r replica) served(t *testing.T) []byte {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(r.k.cfg.CertDir, CertKey), filepath.Join(r.k.cfg.CertDir, KeyKey))
	if err != nil {
		return nil
	}
	return encodeCert(pair.Certificate[0])
}

// rotationWorld is one Secret and one webhook configuration shared by
// replicas, with every caBundle written recorded and checked as it is
// written.
type rotationWorld struct {
	t        *testing.T
	now      time.Time
	client   *fake.Clientset
	replicas []replica

	mu      sync.Mutex
	written [][]byte
	// added is when each CA (DER) was first written to the caBundle.
	added map[string]time.Time
}

func newRotationWorld(t *testing.T, lags ...time.Duration) *rotationWorld {
	w := &rotationWorld{t: t, now: t0, client: fake.NewClientset(webhookConfig()), added: map[string]time.Time{}}
	for i, lag := range lags {
		k, err := NewKeeper(KeeperConfig{
			Namespace: "sys", SecretName: "pg-tls", WebhookConfigName: "pg", ServiceName: "pg",
			CertDir: t.TempDir(), Validity: time.Hour, Now: func() time.Time { return w.now.Add(-lag) },
		}, w.client, logr.Discard())
		if err != nil {
			t.Fatal(err)
		}
		w.replicas = append(w.replicas, replica{name: string(rune('A' + i)), k: k, lag: lag})
	}
	w.client.PrependReactor("update", "mutatingwebhookconfigurations", w.checkPatch)
	return w
}

// checkPatch runs as a caBundle is written, before it is stored. Every
// certificate a replica serves at that moment must be verified by the
// bundle being replaced (a replica served it only once it was trusted:
// Secret, then caBundle, then files) and by the new one (no patch drops a
// CA in use).
func (w *rotationWorld) checkPatch(action clienttesting.Action) (bool, runtime.Object, error) {
	mwc := action.(clienttesting.UpdateAction).GetObject().(*admissionregistrationv1.MutatingWebhookConfiguration)
	bundle := mwc.Webhooks[0].ClientConfig.CABundle
	w.mu.Lock()
	defer w.mu.Unlock()
	var before []byte
	if len(w.written) > 0 {
		before = w.written[len(w.written)-1]
	}
	for _, r := range w.replicas {
		cert := r.served(w.t)
		if cert == nil {
			continue
		}
		if before != nil {
			if err := Validate(cert, before, ServiceDNSNames("pg", "sys"), w.now, 0); err != nil {
				w.t.Errorf("+%s: replica %s served a certificate the caBundle did not trust yet: %v", w.now.Sub(t0), r.name, err)
			}
		}
		if err := Validate(cert, bundle, ServiceDNSNames("pg", "sys"), w.now, 0); err != nil {
			w.t.Errorf("+%s: a caBundle patch drops the CA replica %s serves from: %v", w.now.Sub(t0), r.name, err)
		}
	}
	w.written = append(w.written, bundle)
	for _, c := range parseAll(bundle) {
		if _, ok := w.added[string(c.Raw)]; !ok {
			w.added[string(c.Raw)] = w.now
		}
	}
	return false, nil, nil
}

// wantTrustDelay is trustDelay for a one-hour validity: the five seconds
// the API server's watch of webhook configurations is given.
const wantTrustDelay = 5 * time.Second

// checkTrustDelay: a replica serves from a CA other than the first only
// once that CA has been in the caBundle for wantTrustDelay.
func (w *rotationWorld) checkTrustDelay(r replica) {
	w.t.Helper()
	cert, err := parseCert(r.served(w.t))
	if err != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	first := parseAll(w.written[0])[0]
	for der, at := range w.added {
		ca, _ := x509.ParseCertificate([]byte(der))
		if ca.Equal(first) || cert.CheckSignatureFrom(ca) != nil {
			continue
		}
		if waited := w.now.Sub(at); waited < wantTrustDelay {
			w.t.Errorf("+%s: replica %s serves from a CA added to the caBundle %s ago, less than %s", w.now.Sub(t0), r.name, waited, wantTrustDelay)
		}
	}
}

// step runs each replica's Sync in turn, each followed by every replica's
// reaction to the configuration changing (what its watch does at once,
// long before its own next resync), twice over, and checks that every
// replica serves a certificate the live caBundle verifies.
func (w *rotationWorld) step() {
	w.t.Helper()
	ctx := context.Background()
	for _, r := range w.replicas {
		if err := r.k.Sync(ctx); err != nil {
			w.t.Fatalf("+%s: replica %s Sync: %v", w.now.Sub(t0), r.name, err)
		}
		w.checkTrustDelay(r)
		for range 2 {
			for _, watcher := range w.replicas {
				if err := watcher.k.patchCABundle(ctx); err != nil {
					w.t.Fatalf("+%s: replica %s watch: %v", w.now.Sub(t0), watcher.name, err)
				}
			}
		}
	}
	live := w.live()
	for _, r := range w.replicas {
		if err := Validate(r.served(w.t), live, ServiceDNSNames("pg", "sys"), w.now, 0); err != nil {
			w.t.Errorf("+%s: replica %s serves a certificate the live caBundle does not verify: %v", w.now.Sub(t0), r.name, err)
		}
	}
}

func (w *rotationWorld) live() []byte {
	w.t.Helper()
	mwc, err := w.client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(context.Background(), "pg", metav1.GetOptions{})
	if err != nil {
		w.t.Fatal(err)
	}
	for _, wh := range mwc.Webhooks[1:] {
		if string(wh.ClientConfig.CABundle) != string(mwc.Webhooks[0].ClientConfig.CABundle) {
			w.t.Errorf("webhooks carry different caBundles")
		}
	}
	return mwc.Webhooks[0].ClientConfig.CABundle
}

// caSerials names the CAs of a bundle in order: "1" is the first CA, "2"
// the one after it.
func caSerials(bundle []byte, names map[string]string) string {
	out := ""
	for _, c := range parseAll(bundle) {
		if _, ok := names[string(c.Raw)]; !ok {
			names[string(c.Raw)] = fmt.Sprint(len(names) + 1)
		}
		out += "[" + names[string(c.Raw)] + "]"
	}
	return out
}

// A CA rotation with one and with two replicas sharing one Secret and one
// configuration (the second replica's clock 30s behind): the caBundle grows
// to both CAs before any replica serves from the new one, never loses a CA
// a replica serves from, never flaps (each bundle is written once: the
// first CA, both, then the new one alone once the old has expired), and
// no replica serves a certificate its caBundle does not yet trust.
func TestCARotationReplicas(t *testing.T) {
	for _, lags := range [][]time.Duration{{0}, {0, 30 * time.Second}} {
		t.Run(fmt.Sprintf("%d replicas", len(lags)), func(t *testing.T) {
			w := newRotationWorld(t, lags...)
			// Serving certificates renew every 40m, the CA (10h) at about
			// 6h40m; it expires at 10h.
			for ; w.now.Before(t0.Add(6*time.Hour + 30*time.Minute)); w.now = w.now.Add(20 * time.Minute) {
				w.step()
			}
			first := secret(t, w.client).CACert
			for ; w.now.Before(t0.Add(10*time.Hour + 20*time.Minute)); w.now = w.now.Add(3 * time.Second) {
				w.step()
				if w.now.After(t0.Add(6*time.Hour + 50*time.Minute)) {
					// Past the rotation: step in bigger strides.
					w.now = w.now.Add(10 * time.Minute)
				}
			}
			if SameCA(secret(t, w.client).CACert, first) {
				t.Fatal("the CA was not rotated")
			}
			names := map[string]string{}
			var got []string
			for _, b := range w.written {
				got = append(got, caSerials(b, names))
			}
			want := []string{"[1]", "[2][1]", "[2]"}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("caBundles written %v, want %v: each once, growing to both CAs before the old one's expiry removes it", got, want)
			}
			for _, r := range w.replicas {
				cert, _ := parseCert(r.served(t))
				ca, _ := parseCert(secret(t, w.client).CACert)
				if cert.CheckSignatureFrom(ca) != nil {
					t.Errorf("replica %s does not serve from the new CA", r.name)
				}
			}
		})
	}
}
