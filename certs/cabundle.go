package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/util/retry"
)

// patchCABundle merges what this replica trusts (its Secret's bundle and
// the CA of the pair it serves) into the caBundle of every webhook of the
// configuration (MergeCABundle: it only adds, and drops only expired CAs),
// and records what is live. A missing configuration is no error: nothing
// calls the webhook then, and the watch patches it once it appears.
func (k *Keeper) patchCABundle(ctx context.Context) error {
	k.patchMu.Lock()
	defer k.patchMu.Unlock()
	known := k.known()
	mwcs := k.client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	var live []byte
	found := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		mwc, err := mwcs.Get(ctx, k.cfg.WebhookConfigName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			found, live = false, nil
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		live = MergeCABundle(liveCABundle(mwc), known, k.cfg.Now(), skew(k.cfg.Validity))
		if !setCABundle(mwc, live) {
			return nil
		}
		if _, err := mwcs.Update(ctx, mwc, metav1.UpdateOptions{}); err != nil {
			return err
		}
		k.log.Info("patched caBundle", "webhookConfiguration", k.cfg.WebhookConfigName, "webhooks", len(mwc.Webhooks), "caSerials", serials(live))
		return nil
	})
	if err != nil {
		return fmt.Errorf("patch caBundle of MutatingWebhookConfiguration %s: %w", k.cfg.WebhookConfigName, err)
	}
	k.observe(live, !found, k.cfg.Now())
	return nil
}

// known is every CA this replica must keep trusted.
func (k *Keeper) known() []byte {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append(append([]byte{}, k.secret.CACert...), k.current.CACert...)
}

// observe records the live caBundle, and when each of its CAs was first
// seen there (for trustDelay).
func (k *Keeper) observe(live []byte, noConfig bool, now time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.live, k.noConfig = live, noConfig
	inLive := map[string]bool{}
	for _, c := range parseAll(live) {
		inLive[string(c.Raw)] = true
		if _, ok := k.seen[string(c.Raw)]; !ok {
			k.seen[string(c.Raw)] = now
		}
	}
	for der := range k.seen {
		if !inLive[der] {
			delete(k.seen, der)
		}
	}
}

// liveCABundle is every CA in any webhook of the configuration.
func liveCABundle(mwc *admissionregistrationv1.MutatingWebhookConfiguration) []byte {
	var all []byte
	for _, w := range mwc.Webhooks {
		all = append(all, w.ClientConfig.CABundle...)
		all = append(all, '\n')
	}
	return all
}

// setCABundle sets every webhook's caBundle and reports whether one changed.
func setCABundle(mwc *admissionregistrationv1.MutatingWebhookConfiguration, bundle []byte) bool {
	changed := false
	for i := range mwc.Webhooks {
		if !bytes.Equal(mwc.Webhooks[i].ClientConfig.CABundle, bundle) {
			mwc.Webhooks[i].ClientConfig.CABundle = bundle
			changed = true
		}
	}
	return changed
}

// mayServe says whether b's pair may replace what is served (see Keeper),
// and if not, why.
func (k *Keeper) mayServe(b Bundle, now time.Time) (bool, string) {
	k.mu.Lock()
	current, live, noConfig := k.current, k.live, k.noConfig
	firstSeen, seen := k.seen[firstDER(b.CACert)]
	k.mu.Unlock()
	switch {
	case bytes.Equal(current.Cert, b.Cert), noConfig, !k.servedTrusted(live, now):
		// Already served, nothing calls the webhook, or what is served is
		// not trusted either: serving b cannot break a call.
		return true, ""
	case !seen:
		return false, "its CA is not in the live caBundle yet"
	case now.Sub(firstSeen) < trustDelay(k.cfg.Validity):
		return false, fmt.Sprintf("its CA is in the live caBundle since %s only; the API server needs %s to load it",
			now.Sub(firstSeen), trustDelay(k.cfg.Validity))
	}
	return true, ""
}

// servedTrusted reports whether the pair in CertDir loads and verifies
// against live for every name at now.
func (k *Keeper) servedTrusted(live []byte, now time.Time) bool {
	pair, err := tls.LoadX509KeyPair(filepath.Join(k.cfg.CertDir, CertKey), filepath.Join(k.cfg.CertDir, KeyKey))
	if err != nil || len(live) == 0 {
		return false
	}
	return Validate(encodeCert(pair.Certificate[0]), live, k.names(), now, 0) == nil
}

// Start keeps things in step until ctx ends: it watches the webhook
// configuration (a helm upgrade or a GitOps sync resets caBundle, another
// replica adds a CA) and re-reads the Secret every Resync for rotation.
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
// live caBundle verifies for the Service's name.
func (k *Keeper) ReadyCheck(addr string) func(*http.Request) error {
	return func(*http.Request) error {
		k.mu.Lock()
		live := k.live
		k.mu.Unlock()
		if len(live) == 0 {
			return errors.New("caBundle not yet patched into the webhook configuration")
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(live)
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

// firstDER is the DER of the first certificate of a PEM bundle, "" if none.
func firstDER(bundle []byte) string {
	block, _ := pem.Decode(bundle)
	if block == nil {
		return ""
	}
	return string(block.Bytes)
}

// serials lists the serial numbers of a bundle's certificates, for logs.
func serials(bundle []byte) []string {
	var out []string
	for _, c := range parseAll(bundle) {
		out = append(out, c.SerialNumber.Text(16))
	}
	return out
}
