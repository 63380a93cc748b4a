package server

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
)

// ClientAuth makes the webhook accept only callers that present a client
// certificate signed by the CA in CAFile (the API server's, given to it by
// its AdmissionConfiguration), and, when Names is set, whose subject
// common name or a DNS name is one of them. Anything else fails the TLS
// handshake, before a byte of a review is read.
type ClientAuth struct {
	CAFile string
	Names  []string
}

// Enabled says whether client certificates are required.
func (a ClientAuth) Enabled() bool { return a.CAFile != "" }

// clientVerifier checks client certificates against the CA file, read
// again when it changes (a mounted ConfigMap updated in place), so a new
// CA is trusted without a restart; a file that no longer parses keeps the
// CAs read last.
type clientVerifier struct {
	auth ClientAuth
	log  logr.Logger
	now  func() time.Time

	// self is a client certificate that exists only in this process, for
	// its own readiness check of the serving port: no one else can hold
	// its key, so accepting it opens nothing.
	self tls.Certificate

	mu       sync.Mutex
	pool     *x509.CertPool
	read     []byte
	rejected []byte
	checked  time.Time
	interval time.Duration
}

// newClientVerifier reads the CA file once: a webhook told to require
// client certificates does not start without a CA to check them against.
func newClientVerifier(a ClientAuth, log logr.Logger) (*clientVerifier, error) {
	v := &clientVerifier{auth: a, log: log, now: time.Now, interval: 10 * time.Second}
	data, err := os.ReadFile(a.CAFile)
	if err != nil {
		return nil, fmt.Errorf("--client-ca-file: %w", err)
	}
	pool, subjects, err := parseCAs(data)
	if err != nil {
		return nil, fmt.Errorf("--client-ca-file %s: %w", a.CAFile, err)
	}
	v.pool, v.read, v.checked = pool, data, v.now()
	log.Info("requiring client certificates", "file", a.CAFile, "cas", subjects, "names", a.Names)
	if v.self, err = selfClientCertificate(v.now()); err != nil {
		return nil, err
	}
	return v, nil
}

// selfClientCertificate makes a throwaway self-signed client certificate.
func selfClientCertificate(now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("ready-check client key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "peergroup-webhook-ready-check"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(100 * 365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("ready-check client certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// parseCAs reads every PEM block of data: each must be a CA certificate
// (a garbled or stray block fails the whole file, so an old-plus-new CA
// file during a migration never silently loses one of them).
func parseCAs(data []byte) (*x509.CertPool, []string, error) {
	pool := x509.NewCertPool()
	var subjects []string
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			if len(bytes.TrimSpace(rest)) > 0 {
				return nil, nil, errors.New("text after the last PEM block that is not PEM")
			}
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, nil, fmt.Errorf("a PEM block of type %q: want CERTIFICATE blocks only", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("certificate %d: %w", len(subjects)+1, err)
		}
		if !c.IsCA {
			return nil, nil, fmt.Errorf("certificate %q is not a CA (basicConstraints CA:TRUE)", c.Subject.CommonName)
		}
		pool.AddCert(c)
		subjects = append(subjects, fmt.Sprintf("%s (expires %s)", c.Subject.CommonName, c.NotAfter.Format(time.DateOnly)))
	}
	if len(subjects) == 0 {
		return nil, nil, errors.New("no PEM certificate in it")
	}
	return pool, subjects, nil
}

// current returns the CAs, re-reading the file at most every interval.
func (v *clientVerifier) current() *x509.CertPool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if now := v.now(); now.Sub(v.checked) >= v.interval {
		v.checked = now
		data, err := os.ReadFile(v.auth.CAFile)
		switch {
		case err != nil:
			v.log.Error(err, "client CA file unreadable; keeping the CAs read before", "file", v.auth.CAFile)
		case !bytes.Equal(data, v.read) && !bytes.Equal(data, v.rejected):
			if pool, subjects, err := parseCAs(data); err != nil {
				// Said once per content, not at every re-read.
				v.rejected = data
				v.log.Error(err, "client CA file changed but is not a CA bundle; keeping the CAs read before", "file", v.auth.CAFile)
			} else {
				v.pool, v.read, v.rejected = pool, data, nil
				v.log.Info("client CA file changed; trusting its CAs now (connections already open stay open)", "file", v.auth.CAFile, "cas", subjects)
			}
		}
	}
	return v.pool
}

// verify is tls.Config.VerifyPeerCertificate for RequireAnyClientCert:
// the chain must lead to the current CAs for client authentication, and
// the leaf must carry an accepted name.
func (v *clientVerifier) verify(raw [][]byte, _ [][]*x509.Certificate) error {
	// RequireAnyClientCert refused a handshake without a certificate
	// before this runs.
	if len(raw) == 1 && bytes.Equal(raw[0], v.self.Certificate[0]) {
		return nil // this process's own ready check (the handshake proved the key)
	}
	certs := make([]*x509.Certificate, 0, len(raw))
	for _, r := range raw {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return fmt.Errorf("client certificate: %w", err)
		}
		certs = append(certs, c)
	}
	leaf, intermediates := certs[0], x509.NewCertPool()
	for _, c := range certs[1:] {
		intermediates.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: v.current(), Intermediates: intermediates, CurrentTime: v.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return fmt.Errorf("client certificate %q: %w", leaf.Subject.CommonName, err)
	}
	if len(v.auth.Names) == 0 || slices.Contains(v.auth.Names, leaf.Subject.CommonName) ||
		slices.ContainsFunc(leaf.DNSNames, func(n string) bool { return slices.Contains(v.auth.Names, n) }) {
		return nil
	}
	return fmt.Errorf("client certificate %q (DNS names %v) is not one of the accepted names %v", leaf.Subject.CommonName, leaf.DNSNames, v.auth.Names)
}

// tlsOption requires and verifies client certificates on the serving
// port. Go's own verification (RequireAndVerifyClientCert) reads its CAs
// once; this one follows the file. No session resumption: Go does not
// call VerifyPeerCertificate on a resumed session, so a ticket would
// outlive the CA that let its client in.
func (v *clientVerifier) tlsOption(c *tls.Config) {
	c.ClientAuth = tls.RequireAnyClientCert
	c.VerifyPeerCertificate = v.verify
	c.SessionTicketsDisabled = true
}

// servingCheck is the readiness check of a server that requires client
// certificates (controller-runtime's StartedChecker presents none, so each
// probe would be refused and logged): a request over TLS with this
// process's own certificate; any answer means it serves.
func (v *clientVerifier) servingCheck(addr string) func(*http.Request) error {
	httpc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		// The served certificate is the certificate checks' business.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{v.self}, MinVersion: tls.VersionTLS12}, //nolint:gosec
	}}
	return func(*http.Request) error {
		resp, err := httpc.Get("https://" + addr + "/")
		if err != nil {
			return fmt.Errorf("webhook server not serving: %w", err)
		}
		return resp.Body.Close()
	}
}
