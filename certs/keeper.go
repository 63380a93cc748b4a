package certs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	// Validity of the serving certificate; the CA lives CALifetimeFactor
	// times longer. Bounded by CheckValidity.
	Validity time.Duration
	// Resync is how often the Secret is re-read for rotation.
	Resync time.Duration
	// Now is the clock; tests inject one.
	Now func() time.Time
}

// Keeper makes the Secret the single source of truth for the webhook's CA
// and serving certificate: every replica reads it, keeps the webhook
// configuration's caBundle trusting every CA a replica may serve from, and
// writes the files the server serves.
//
// Invariant: a replica serves a certificate only once the API server
// trusts it: the order is Secret (new CA), then caBundle (the union with
// what is live), then the serving files, and a new CA must have been in the
// live caBundle for trustDelay first. The only exceptions are when nothing
// can be broken by serving: no webhook configuration exists (nothing calls
// the webhook) or what is served now is not trusted either.
type Keeper struct {
	cfg    KeeperConfig
	client kubernetes.Interface
	log    logr.Logger

	// patchMu serialises caBundle patches, so live and seen follow the
	// order in which this replica saw the configuration.
	patchMu sync.Mutex

	mu sync.Mutex
	// secret is the bundle last read from or written to the Secret.
	secret Bundle
	// current is the bundle whose pair is in CertDir.
	current Bundle
	// live is the caBundle last seen in (or written to) the webhook
	// configuration; nil until then.
	live []byte
	// noConfig: the webhook configuration did not exist at the last look.
	noConfig bool
	// seen holds, per CA (DER), when this replica first saw it in live.
	seen map[string]time.Time
}

// NewKeeper checks the config and returns a Keeper.
func NewKeeper(cfg KeeperConfig, client kubernetes.Interface, log logr.Logger) (*Keeper, error) {
	var errs []error
	for name, v := range map[string]string{"namespace (POD_NAMESPACE)": cfg.Namespace, "--tls-secret-name": cfg.SecretName, "--webhook-config-name": cfg.WebhookConfigName, "--service-name": cfg.ServiceName, "--cert-dir": cfg.CertDir} {
		if v == "" {
			errs = append(errs, fmt.Errorf("self-signed certificates need %s", name))
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Resync <= 0 {
		cfg.Resync = time.Minute
	}
	errs = append(errs, CheckValidity(cfg.Validity, cfg.Resync))
	k := &Keeper{cfg: cfg, client: client, log: log.WithName("certs"), seen: map[string]time.Time{}}
	return k, errors.Join(errs...)
}

func (k *Keeper) names() []string {
	return append(ServiceDNSNames(k.cfg.ServiceName, k.cfg.Namespace), k.cfg.ExtraSANs...)
}

// Sync brings Secret, caBundle and served files in step, in that order
// (see Keeper). It converges when several replicas run it at once: the API
// server's optimistic concurrency picks one writer of the Secret and the
// others adopt what it wrote; caBundle patches only merge. A failed patch
// keeps the files as they are, unless nothing is served yet: then the
// files are written (the server needs them to start; readiness waits for
// the caBundle) and the error is returned.
func (k *Keeper) Sync(ctx context.Context) error {
	b, err := k.syncSecretRetrying(ctx)
	if err != nil {
		return err
	}
	k.mu.Lock()
	k.secret = b
	k.mu.Unlock()
	patchErr := k.patchCABundle(ctx)
	if patchErr != nil && k.Serving() {
		return patchErr
	}
	if ok, why := k.mayServe(b, k.cfg.Now()); !ok {
		k.log.V(1).Info("new serving certificate waits", "serial", Serial(b.Cert), "reason", why)
		return nil
	}
	if err := k.serve(b); err != nil {
		return err
	}
	return patchErr
}

// SyncCertificate is Sync: the caBundle patch is part of it, since it
// must come between the Secret and the files.
func (k *Keeper) SyncCertificate(ctx context.Context) error { return k.Sync(ctx) }

// Serving reports whether the keeper has written a serving pair.
func (k *Keeper) Serving() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.current.Cert) > 0
}

// serve writes b's pair and makes it the current bundle.
func (k *Keeper) serve(b Bundle) error {
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

func (k *Keeper) syncSecretRetrying(ctx context.Context) (Bundle, error) {
	var b Bundle
	err := retry.OnError(retry.DefaultRetry, func(err error) bool {
		return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err)
	}, func() error {
		var err error
		b, err = k.syncSecret(ctx)
		return err
	})
	return b, err
}

func (k *Keeper) syncSecret(ctx context.Context) (Bundle, error) {
	secrets := k.client.CoreV1().Secrets(k.cfg.Namespace)
	now := k.cfg.Now()
	s, err := secrets.Get(ctx, k.cfg.SecretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return k.createSecret(ctx, now)
	}
	if err != nil {
		return Bundle{}, fmt.Errorf("read Secret %s/%s: %w", k.cfg.Namespace, k.cfg.SecretName, err)
	}
	have := fromData(s.Data)
	r, err := Renew(have, k.names(), now, k.cfg.Validity)
	if err != nil {
		return Bundle{}, fmt.Errorf("renew the certificates of Secret %s/%s: %w", k.cfg.Namespace, k.cfg.SecretName, err)
	}
	if !r.Changed(have) {
		return have, nil
	}
	for _, problem := range r.Unusable {
		k.log.Info("certificate Secret unusable; re-issuing", "secret", k.cfg.SecretName, "problem", problem.Error(), "newCA", r.NewCA)
	}
	s.Data = toData(r.Bundle)
	if _, err := secrets.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		return Bundle{}, fmt.Errorf("update Secret %s/%s: %w", k.cfg.Namespace, k.cfg.SecretName, err)
	}
	if r.NewServing {
		k.log.Info("rotated serving certificate", "serial", Serial(r.Bundle.Cert), "newCA", r.NewCA)
	} else {
		k.log.Info("dropped expired CAs from the Secret", "secret", k.cfg.SecretName)
	}
	return r.Bundle, nil
}

func (k *Keeper) createSecret(ctx context.Context, now time.Time) (Bundle, error) {
	r, err := Renew(Bundle{}, k.names(), now, k.cfg.Validity)
	if err != nil {
		return Bundle{}, err
	}
	owners, err := k.owners(ctx)
	if err != nil {
		return Bundle{}, err
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: k.cfg.SecretName, Namespace: k.cfg.Namespace,
			Labels:          map[string]string{"app.kubernetes.io/managed-by": "peergroup"},
			OwnerReferences: owners,
		},
		Type: corev1.SecretTypeTLS,
		Data: toData(r.Bundle),
	}
	if _, err := k.client.CoreV1().Secrets(k.cfg.Namespace).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		return Bundle{}, fmt.Errorf("create Secret %s/%s: %w", k.cfg.Namespace, k.cfg.SecretName, err)
	}
	k.log.Info("created CA and serving certificate", "secret", k.cfg.SecretName)
	return r.Bundle, nil
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
