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
	"slices"
	"strconv"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/util/retry"
)

// patchCABundle merges what this replica trusts (its Secret's bundle and
// the CA of the pair it serves) into the caBundle of every webhook of both
// configurations (MergeCABundle: it only adds, and drops only expired CAs),
// and records what is live: the CAs every existing configuration trusts.
// A missing configuration is no error: nothing calls the webhook through
// it, and the watch patches it once it appears.
func (k *Keeper) patchCABundle(ctx context.Context) error {
	k.patchMu.Lock()
	defer k.patchMu.Unlock()
	known := k.known()
	var lives [][]byte
	for _, c := range k.configs() {
		live, found, err := k.patchConfig(ctx, c, known)
		if err != nil {
			return err
		}
		if found {
			lives = append(lives, live)
		}
	}
	k.observe(commonCAs(lives), len(lives) == 0, k.cfg.Now())
	return nil
}

// configKind is one kind of webhook configuration, as the keeper reads
// and writes it.
type configKind struct {
	kind string
	// optional: a configuration the webhook may not be allowed to read
	// (the validating one, under RBAC from before it existed).
	optional bool
	// get returns the configuration's client configs to read and set, and
	// update writes them back; found is false when it does not exist.
	get   func(ctx context.Context) (clients []*admissionregistrationv1.WebhookClientConfig, update func(context.Context) error, found bool, err error)
	watch func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

func (k *Keeper) configs() []configKind {
	mwcs := k.client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	vwcs := k.client.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	return []configKind{
		{kind: "MutatingWebhookConfiguration", watch: mwcs.Watch,
			get: getter(k.cfg.WebhookConfigName, mwcs.Get, mwcs.Update, func(c *admissionregistrationv1.MutatingWebhookConfiguration) []*admissionregistrationv1.WebhookClientConfig {
				out := make([]*admissionregistrationv1.WebhookClientConfig, len(c.Webhooks))
				for i := range c.Webhooks {
					out[i] = &c.Webhooks[i].ClientConfig
				}
				return out
			})},
		{kind: "ValidatingWebhookConfiguration", watch: vwcs.Watch, optional: true,
			get: getter(k.cfg.WebhookConfigName, vwcs.Get, vwcs.Update, func(c *admissionregistrationv1.ValidatingWebhookConfiguration) []*admissionregistrationv1.WebhookClientConfig {
				out := make([]*admissionregistrationv1.WebhookClientConfig, len(c.Webhooks))
				for i := range c.Webhooks {
					out[i] = &c.Webhooks[i].ClientConfig
				}
				return out
			})},
	}
}

// getter is configKind.get for one kind: read the configuration named
// name, hand out its client configs, write it back on update.
func getter[T any](name string, get func(context.Context, string, metav1.GetOptions) (T, error), update func(context.Context, T, metav1.UpdateOptions) (T, error),
	clients func(T) []*admissionregistrationv1.WebhookClientConfig) func(context.Context) ([]*admissionregistrationv1.WebhookClientConfig, func(context.Context) error, bool, error) {
	return func(ctx context.Context) ([]*admissionregistrationv1.WebhookClientConfig, func(context.Context) error, bool, error) {
		cfg, err := get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, nil, false, err
		}
		write := func(ctx context.Context) error { _, err := update(ctx, cfg, metav1.UpdateOptions{}); return err }
		return clients(cfg), write, true, nil
	}
}

// patchConfig merges known into one configuration's caBundles and returns
// what it trusts after.
func (k *Keeper) patchConfig(ctx context.Context, c configKind, known []byte) (live []byte, found bool, err error) {
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		clients, update, ok, err := c.get(ctx)
		if apierrors.IsNotFound(err) {
			found, live = false, nil
			return nil
		}
		if apierrors.IsForbidden(err) && c.optional {
			// RBAC from before the validating configuration: it cannot be
			// kept, and must not keep the mutating one's from counting.
			k.log.Info("cannot read the webhook configuration: its caBundle is not kept (does the webhook's RBAC allow get and update on it?)", "kind", c.kind, "name", k.cfg.WebhookConfigName, "reason", err.Error())
			found, live = false, nil
			return nil
		}
		if err != nil {
			return err
		}
		found = ok
		live = MergeCABundle(liveCABundle(clients), known, k.cfg.Now(), skew(k.cfg.Validity))
		if !setCABundle(clients, live) {
			return nil
		}
		if err := update(ctx); err != nil {
			return err
		}
		k.log.Info("patched caBundle", "kind", c.kind, "name", k.cfg.WebhookConfigName, "webhooks", len(clients), "caSerials", serials(live))
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("patch caBundle of %s %s: %w", c.kind, k.cfg.WebhookConfigName, err)
	}
	return live, found, nil
}

// commonCAs is the bundle of the CAs every one of bundles holds: what the
// API server trusts whichever configuration it calls through.
func commonCAs(bundles [][]byte) []byte {
	if len(bundles) == 0 {
		return nil
	}
	var out []byte
	for _, c := range parseAll(bundles[0]) {
		inAll := true
		for _, b := range bundles[1:] {
			inAll = inAll && slices.ContainsFunc(parseAll(b), func(o *x509.Certificate) bool { return bytes.Equal(o.Raw, c.Raw) })
		}
		if inAll {
			out = append(out, encodeCert(c.Raw)...)
		}
	}
	return out
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
func liveCABundle(clients []*admissionregistrationv1.WebhookClientConfig) []byte {
	var all []byte
	for _, c := range clients {
		all = append(all, c.CABundle...)
		all = append(all, '\n')
	}
	return all
}

// setCABundle sets every webhook's caBundle and reports whether one changed.
func setCABundle(clients []*admissionregistrationv1.WebhookClientConfig, bundle []byte) bool {
	changed := false
	for _, c := range clients {
		if !bytes.Equal(c.CABundle, bundle) {
			c.CABundle = bundle
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

// Start keeps things in step until ctx ends: it watches both webhook
// configurations (a helm upgrade or a GitOps sync resets caBundle, another
// replica adds a CA) and re-reads the Secret every Resync for rotation.
func (k *Keeper) Start(ctx context.Context) error {
	for _, c := range k.configs() {
		go k.watchWebhookConfig(ctx, c)
	}
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

func (k *Keeper) watchWebhookConfig(ctx context.Context, c configKind) {
	for ctx.Err() == nil {
		w, err := c.watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + k.cfg.WebhookConfigName})
		if err != nil {
			k.log.Error(err, "watch webhook configuration failed", "kind", c.kind)
			retry := 2 * time.Second
			if apierrors.IsForbidden(err) {
				retry = time.Minute // RBAC is not repaired in seconds; the resync patches meanwhile
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(retry):
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
// live caBundle verifies for the Service's name. client, when set, is the
// certificate it presents (a server that requires one).
func (k *Keeper) ReadyCheck(addr string, client *tls.Certificate) func(*http.Request) error {
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
		cfg := &tls.Config{
			RootCAs:    pool,
			ServerName: k.cfg.ServiceName + "." + k.cfg.Namespace + ".svc",
			MinVersion: tls.VersionTLS12,
		}
		if client != nil {
			cfg.Certificates = []tls.Certificate{*client}
		}
		// A request, not only a handshake: under TLS 1.3 the server judges
		// a client certificate after the client's side is done, so only
		// an answer shows the server took this connection.
		httpc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
			DialContext: d.DialContext, TLSClientConfig: cfg, DisableKeepAlives: true,
		}}
		resp, err := httpc.Get("https://" + addr + "/")
		if err != nil {
			return fmt.Errorf("served certificate not verified by the caBundle, or this check's connection refused: %w", err)
		}
		return resp.Body.Close()
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
