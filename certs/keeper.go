package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/peergroup/peergroup/internal/atomicfile"
)

// KeeperConfig configures the selfSigned mode.
type KeeperConfig struct {
	Namespace         string
	SecretName        string
	WebhookConfigName string
	ServiceName       string
	// ExtraSANs are added to the serving certificate (DNS names or IPs),
	// e.g. 127.0.0.1 when a local API server calls the webhook by URL.
	ExtraSANs []string
	CertDir   string
	// Validity of the serving certificate; the CA lives ten times longer.
	Validity time.Duration
	// Resync is how often the Secret is re-read for rotation.
	Resync time.Duration
	// Now is the clock; tests inject one.
	Now func() time.Time
}

// Keeper makes the Secret the single source of truth for the webhook's CA
// and serving certificate: every replica reads it, writes the files the
// server serves, and keeps the webhook configuration's caBundle in step.
type Keeper struct {
	cfg    KeeperConfig
	client kubernetes.Interface
	log    logr.Logger

	mu        sync.Mutex
	current   Bundle
	caPatched bool
}

// NewKeeper checks the config and returns a Keeper.
func NewKeeper(cfg KeeperConfig, client kubernetes.Interface, log logr.Logger) (*Keeper, error) {
	var errs []error
	for name, v := range map[string]string{"namespace (POD_NAMESPACE)": cfg.Namespace, "--tls-secret-name": cfg.SecretName, "--webhook-config-name": cfg.WebhookConfigName, "--service-name": cfg.ServiceName, "--cert-dir": cfg.CertDir} {
		if v == "" {
			errs = append(errs, fmt.Errorf("self-signed certificates need %s", name))
		}
	}
	if cfg.Validity < 10*time.Second {
		errs = append(errs, fmt.Errorf("--cert-validity %s is too short", cfg.Validity))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Resync <= 0 {
		cfg.Resync = time.Minute
	}
	return &Keeper{cfg: cfg, client: client, log: log.WithName("certs")}, errors.Join(errs...)
}

func (k *Keeper) names() []string {
	return append(ServiceDNSNames(k.cfg.ServiceName, k.cfg.Namespace), k.cfg.ExtraSANs...)
}

// Sync is SyncCertificate then the caBundle patch.
func (k *Keeper) Sync(ctx context.Context) error {
	if err := k.SyncCertificate(ctx); err != nil {
		return err
	}
	return k.patchCABundle(ctx)
}

// SyncCertificate makes sure the Secret holds a valid bundle (creating or
// rotating it) and writes the files the server serves. It converges when
// several replicas run it at once: the API server's optimistic concurrency
// picks one writer and the others adopt what it wrote.
func (k *Keeper) SyncCertificate(ctx context.Context) error {
	var b Bundle
	err := retry.OnError(retry.DefaultRetry, func(err error) bool {
		return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err)
	}, func() error {
		var err error
		b, err = k.syncSecret(ctx)
		return err
	})
	if err != nil {
		return err
	}
	if err := k.writeFiles(b); err != nil {
		return err
	}
	k.mu.Lock()
	changed := !bytes.Equal(k.current.Cert, b.Cert)
	k.current = b
	k.mu.Unlock()
	if changed {
		k.log.Info("serving certificate in use", "serial", Serial(b.Cert), "secret", k.cfg.SecretName)
	}
	return nil
}

func (k *Keeper) syncSecret(ctx context.Context) (Bundle, error) {
	secrets := k.client.CoreV1().Secrets(k.cfg.Namespace)
	now := k.cfg.Now()
	s, err := secrets.Get(ctx, k.cfg.SecretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		b, err := k.issue(Bundle{}, now)
		if err != nil {
			return Bundle{}, err
		}
		owners, err := k.owners(ctx)
		if err != nil {
			return Bundle{}, err
		}
		s = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Name: k.cfg.SecretName, Namespace: k.cfg.Namespace,
				Labels:          map[string]string{"app.kubernetes.io/managed-by": "peergroup"},
				OwnerReferences: owners,
			},
			Type: corev1.SecretTypeTLS,
			Data: toData(b),
		}
		if _, err := secrets.Create(ctx, s, metav1.CreateOptions{}); err != nil {
			return Bundle{}, fmt.Errorf("create Secret %s/%s: %w", k.cfg.Namespace, k.cfg.SecretName, err)
		}
		k.log.Info("created CA and serving certificate", "secret", k.cfg.SecretName)
		return b, nil
	}
	if err != nil {
		return Bundle{}, fmt.Errorf("read Secret %s/%s: %w", k.cfg.Namespace, k.cfg.SecretName, err)
	}
	have := fromData(s.Data)
	want, err := k.issue(have, now)
	if err != nil {
		return Bundle{}, err
	}
	if bytes.Equal(want.Cert, have.Cert) && bytes.Equal(want.CACert, have.CACert) {
		return have, nil
	}
	s.Data = toData(want)
	if _, err := secrets.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		return Bundle{}, fmt.Errorf("update Secret %s/%s: %w", k.cfg.Namespace, k.cfg.SecretName, err)
	}
	k.log.Info("rotated serving certificate", "serial", Serial(want.Cert), "newCA", !SameCA(want.CACert, have.CACert))
	return want, nil
}

// owners makes the webhook Service the Secret's owner. Helm installs and
// uninstalls that Service, but not the Secret, which the webhook creates at
// run time: with the owner, the garbage collector deletes the Secret on
// `helm uninstall`, while upgrades (same Service) keep it and its CA. The
// reference does not block the owner's deletion, so creating the Secret
// needs no permission beyond Secret create and Service get. A webhook run
// without its Service (outside the chart) creates the Secret unowned.
func (k *Keeper) owners(ctx context.Context) ([]metav1.OwnerReference, error) {
	svc, err := k.client.CoreV1().Services(k.cfg.Namespace).Get(ctx, k.cfg.ServiceName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		k.log.Info("webhook Service not found: the certificate Secret gets no owner and outlives an uninstall", "service", k.cfg.ServiceName)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the webhook Service %s/%s to own the certificate Secret: %w", k.cfg.Namespace, k.cfg.ServiceName, err)
	}
	return []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID}}, nil
}

// issue returns have unchanged when it is valid and not due for renewal,
// else a renewed bundle: a new serving certificate from the same CA, or a
// new CA too when the CA is due, keeping the old CA in the bundle so the
// API server trusts both until the old one expires.
func (k *Keeper) issue(have Bundle, now time.Time) (Bundle, error) {
	caValidity := 10 * k.cfg.Validity
	caOK := false
	if ca, err := FirstCert(have.CACert); err == nil && len(have.CAKey) > 0 {
		if renew, err := RenewAt(ca); err == nil && now.Before(renew) {
			caOK = true
		}
	}
	out := have
	if !caOK {
		caCert, caKey, err := NewCA("peergroup-webhook-ca", now, caValidity)
		if err != nil {
			return Bundle{}, err
		}
		out = Bundle{CACert: AppendUnique(caCert, have.CACert, now), CAKey: caKey}
	}
	if caOK && len(have.Cert) > 0 {
		renew, err := RenewAt(have.Cert)
		if err == nil && now.Before(renew) && Validate(have.Cert, have.CACert, k.names(), now, 0) == nil {
			return have, nil
		}
	}
	cert, key, err := NewServing(out.CACert, out.CAKey, k.names(), now, k.cfg.Validity)
	if err != nil {
		return Bundle{}, err
	}
	out.Cert, out.Key = cert, key
	return out, nil
}

func toData(b Bundle) map[string][]byte {
	return map[string][]byte{CACertKey: b.CACert, CAKeyKey: b.CAKey, CertKey: b.Cert, KeyKey: b.Key}
}

func fromData(d map[string][]byte) Bundle {
	return Bundle{CACert: d[CACertKey], CAKey: d[CAKeyKey], Cert: d[CertKey], Key: d[KeyKey]}
}

// writeFiles replaces tls.crt and tls.key atomically; controller-runtime's
// certwatcher then serves the new pair to new connections.
func (k *Keeper) writeFiles(b Bundle) error {
	if err := os.MkdirAll(k.cfg.CertDir, 0o700); err != nil {
		return fmt.Errorf("create cert dir: %w", err)
	}
	// Key first: certwatcher reloads on the certificate's change.
	for _, f := range []struct {
		name string
		data []byte
	}{{KeyKey, b.Key}, {CertKey, b.Cert}} {
		path := filepath.Join(k.cfg.CertDir, f.name)
		if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, f.data) {
			continue
		}
		// Owner only, as the key must be; the certificate shares the mode.
		if err := atomicfile.Write(path, f.data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// patchCABundle sets every webhook's caBundle to the Secret's CA bundle.
func (k *Keeper) patchCABundle(ctx context.Context) error {
	k.mu.Lock()
	ca := k.current.CACert
	k.mu.Unlock()
	mwcs := k.client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		mwc, err := mwcs.Get(ctx, k.cfg.WebhookConfigName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		changed := false
		for i := range mwc.Webhooks {
			if !bytes.Equal(mwc.Webhooks[i].ClientConfig.CABundle, ca) {
				mwc.Webhooks[i].ClientConfig.CABundle = ca
				changed = true
			}
		}
		if !changed {
			return nil
		}
		if _, err := mwcs.Update(ctx, mwc, metav1.UpdateOptions{}); err != nil {
			return err
		}
		k.log.Info("patched caBundle", "webhookConfiguration", k.cfg.WebhookConfigName, "webhooks", len(mwc.Webhooks))
		return nil
	})
	k.mu.Lock()
	k.caPatched = err == nil
	k.mu.Unlock()
	if err != nil {
		return fmt.Errorf("patch caBundle of MutatingWebhookConfiguration %s: %w", k.cfg.WebhookConfigName, err)
	}
	return nil
}

// Start keeps things in step until ctx ends: it watches the webhook
// configuration (a helm upgrade or a GitOps sync resets caBundle) and
// re-reads the Secret every Resync for rotation.
func (k *Keeper) Start(ctx context.Context) error {
	go k.watchWebhookConfig(ctx)
	t := time.NewTicker(k.cfg.Resync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := k.Sync(ctx); err != nil {
				k.log.Error(err, "certificate sync failed; retrying at the next resync")
			}
		}
	}
}

func (k *Keeper) watchWebhookConfig(ctx context.Context) {
	mwcs := k.client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	for ctx.Err() == nil {
		w, err := mwcs.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + k.cfg.WebhookConfigName})
		if err != nil {
			k.log.Error(err, "watch webhook configuration failed")
			select {
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Second):
			}
			continue
		}
		for ev := range w.ResultChan() {
			if ev.Type == watch.Added || ev.Type == watch.Modified {
				if err := k.patchCABundle(ctx); err != nil {
					k.log.Error(err, "re-patching caBundle failed")
				}
			}
		}
		w.Stop()
	}
}

// ReadyCheck passes once the server at addr serves a certificate that the
// CA in the webhook configuration verifies for the Service's name.
func (k *Keeper) ReadyCheck(addr string) func(*http.Request) error {
	return func(*http.Request) error {
		k.mu.Lock()
		ca, patched := k.current.CACert, k.caPatched
		k.mu.Unlock()
		if !patched {
			return errors.New("caBundle not yet patched into the webhook configuration")
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		d := &net.Dialer{Timeout: 2 * time.Second}
		conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{
			RootCAs:    pool,
			ServerName: k.cfg.ServiceName + "." + k.cfg.Namespace + ".svc",
			MinVersion: tls.VersionTLS12,
		})
		if err != nil {
			return fmt.Errorf("served certificate not verified by the caBundle: %w", err)
		}
		return conn.Close()
	}
}

// ServingAddr is the loopback address the ready check dials.
func ServingAddr(host string, port int) string {
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}
