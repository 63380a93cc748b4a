// Package certs creates and checks the webhook's serving certificates.
//
// Written on crypto/x509 rather than on open-policy-agent/cert-controller:
// cert-controller's rotator owns the Secret format, the webhook patching and
// the readiness gate together and reads the wall clock, while peergroup
// needs each piece separately (a pure issuer with time passed in, a Secret
// store shared by replicas, a caBundle keeper), and the x509 part is small.
package certs

import (
	"bytes"
	"crypto"
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
	"net"
	"slices"
	"time"
)

// Secret keys: the kubernetes.io/tls pair plus the CA, as cert-manager
// writes them, so tools that read one understand the other.
const (
	CACertKey = "ca.crt"
	CAKeyKey  = "ca.key"
	CertKey   = "tls.crt"
	KeyKey    = "tls.key"
)

// Bundle is a CA and a serving certificate signed by it, PEM encoded.
type Bundle struct {
	// CACert may hold more than one CA during a CA rotation; the first is
	// the one that signs.
	CACert, CAKey, Cert, Key []byte
}

// ServiceDNSNames are the names the API server may use for the webhook
// Service.
func ServiceDNSNames(service, namespace string) []string {
	return []string{
		service,
		service + "." + namespace,
		service + "." + namespace + ".svc",
		service + "." + namespace + ".svc.cluster.local",
	}
}

// NewCA creates a self-signed CA valid from now for validity.
func NewCA(commonName string, now time.Time, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-skew(validity)),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign CA: %w", err)
	}
	keyPEM, err = encodeKey(key)
	return encodeCert(der), keyPEM, err
}

// NewServing issues a serving certificate for names (DNS names or IPs),
// signed by the first CA in caCertPEM.
func NewServing(caCertPEM, caKeyPEM []byte, names []string, now time.Time, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	ca, caKey, err := parsePair(caCertPEM, caKeyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("load CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate serving key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    now.Add(-skew(validity)),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	if tmpl.NotAfter.After(ca.NotAfter) {
		tmpl.NotAfter = ca.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("sign serving certificate: %w", err)
	}
	keyPEM, err = encodeKey(key)
	return encodeCert(der), keyPEM, err
}

// Validate checks that certPEM chains to a CA in caPEM, covers every name
// and is valid at now for at least minRemaining more.
func Validate(certPEM, caPEM []byte, names []string, now time.Time, minRemaining time.Duration) error {
	cert, err := parseCert(certPEM)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return errors.New("no CA certificate in bundle")
	}
	for _, n := range names {
		if _, err := cert.Verify(x509.VerifyOptions{DNSName: n, Roots: pool, CurrentTime: now}); err != nil {
			return fmt.Errorf("certificate not valid for %q at %s: %w", n, now.Format(time.RFC3339), err)
		}
	}
	if left := cert.NotAfter.Sub(now); left < minRemaining {
		return fmt.Errorf("certificate expires in %s, less than %s", left.Round(time.Second), minRemaining)
	}
	return nil
}

// RenewAt is when a certificate should be replaced: after two thirds of its
// lifetime, the rule cert-manager uses by default. Divided before it is
// multiplied, so a long lifetime cannot overflow time.Duration.
func RenewAt(certPEM []byte) (time.Time, error) {
	cert, err := parseCert(certPEM)
	if err != nil {
		return time.Time{}, err
	}
	life := cert.NotAfter.Sub(cert.NotBefore)
	return cert.NotBefore.Add(life / 3 * 2), nil
}

// CheckCA says why the first certificate of caCertPEM cannot sign with
// caKeyPEM at now: either does not parse, the certificate is no signing CA
// or is outside its validity, or the key is not the certificate's. nil
// means it can sign.
func CheckCA(caCertPEM, caKeyPEM []byte, now time.Time) error {
	ca, key, err := parsePair(caCertPEM, caKeyPEM)
	if err != nil {
		return err
	}
	if !ca.IsCA || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		return errors.New("ca.crt is not a signing CA")
	}
	if err := within(ca, now); err != nil {
		return fmt.Errorf("ca.crt: %w", err)
	}
	if !samePublicKey(ca.PublicKey, key.Public()) {
		return errors.New("ca.key is not the key of ca.crt")
	}
	return nil
}

// CheckServing says why certPEM and keyPEM cannot be served for names at
// now: the pair does not load the way crypto/tls (and so controller-runtime's
// certwatcher) loads it, or the certificate is not signed by the signing CA
// (the first of caPEM), or it is outside its validity. nil means servable.
func CheckServing(certPEM, keyPEM, caPEM []byte, names []string, now time.Time) error {
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return fmt.Errorf("tls.crt and tls.key do not load as a pair: %w", err)
	}
	signer, err := FirstCert(caPEM)
	if err != nil {
		return fmt.Errorf("ca.crt: %w", err)
	}
	if err := Validate(certPEM, signer, names, now, 0); err != nil {
		return fmt.Errorf("tls.crt is not a valid certificate of the signing CA: %w", err)
	}
	return nil
}

// MergeCABundle is the caBundle to write when live is in the webhook
// configuration and known holds the CAs this replica trusts (its Secret's
// bundle and the CA of the certificate it serves). Invariants:
//   - it only grows: every CA of live stays until it has expired at now, so
//     a replica never removes a CA that another replica may serve from;
//   - a CA of known is added only while it is valid for longer than margin,
//     so a replica whose clock lags by less than margin does not put back a
//     CA that a replica with a faster clock has just dropped as expired;
//   - the order is canonical (newest first, then by bytes), so replicas that
//     merge the same set write the same bytes: no replica's merge undoes
//     another's, and merging again changes nothing.
//
// Data in live that is not a certificate is dropped: it verifies nothing.
func MergeCABundle(live, known []byte, now time.Time, margin time.Duration) []byte {
	byDER := map[string]*x509.Certificate{}
	for _, c := range parseAll(live) {
		if !now.After(c.NotAfter) {
			byDER[string(c.Raw)] = c
		}
	}
	for _, c := range parseAll(known) {
		if c.NotAfter.After(now.Add(margin)) {
			byDER[string(c.Raw)] = c
		}
	}
	certs := make([]*x509.Certificate, 0, len(byDER))
	for _, c := range byDER {
		certs = append(certs, c)
	}
	slices.SortFunc(certs, func(a, b *x509.Certificate) int {
		if c := b.NotBefore.Compare(a.NotBefore); c != 0 {
			return c
		}
		return bytes.Compare(a.Raw, b.Raw)
	})
	out := []byte{}
	for _, c := range certs {
		out = append(out, encodeCert(c.Raw)...)
	}
	return out
}

// Trusts reports whether the bundle holds the first certificate of caPEM.
func Trusts(bundle, caPEM []byte) bool {
	ca, err := parseCert(caPEM)
	if err != nil {
		return false
	}
	return slices.ContainsFunc(parseAll(bundle), func(c *x509.Certificate) bool { return c.Equal(ca) })
}

// FirstCert returns the first certificate of a PEM bundle.
func FirstCert(bundle []byte) ([]byte, error) {
	block, _ := pem.Decode(bundle)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return pem.EncodeToMemory(block), nil
}

// AppendUnique appends the PEM certificates of more to bundle, skipping
// duplicates and expired ones (at now).
func AppendUnique(bundle, more []byte, now time.Time) []byte {
	out := []byte{}
	seen := map[string]bool{}
	rest := append(append([]byte{}, bundle...), more...)
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return out
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil || now.After(cert.NotAfter) || seen[string(block.Bytes)] {
			continue
		}
		seen[string(block.Bytes)] = true
		out = append(out, pem.EncodeToMemory(block)...)
	}
}

// Serial returns the serial number of the first certificate, for logs and
// tests that follow rotations.
func Serial(certPEM []byte) string {
	cert, err := parseCert(certPEM)
	if err != nil {
		return ""
	}
	return cert.SerialNumber.Text(16)
}

// SameCA reports whether two bundles start with the same CA.
func SameCA(a, b []byte) bool {
	x, errX := FirstCert(a)
	y, errY := FirstCert(b)
	return errX == nil && errY == nil && bytes.Equal(x, y)
}

func parseCert(certPEM []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	return cert, nil
}

// parseAll returns the certificates of a PEM bundle that parse, skipping
// anything else.
func parseAll(bundle []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for rest := bundle; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			return out
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(block.Bytes); err == nil {
			out = append(out, c)
		}
	}
}

func parsePair(certPEM, keyPEM []byte) (*x509.Certificate, crypto.Signer, error) {
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("ca.crt: %w", err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("ca.key: %w", err)
	}
	return cert, key, nil
}

// parseKey reads the SEC 1 EC key this package writes, or a PKCS #8 key.
func parseKey(keyPEM []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("no PEM key")
	}
	if key, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		return key, nil
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key of type %T cannot sign", key)
	}
	return signer, nil
}

func samePublicKey(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}

func within(c *x509.Certificate, now time.Time) error {
	if now.Before(c.NotBefore) || now.After(c.NotAfter) {
		return fmt.Errorf("not valid at %s (valid from %s to %s)", now.Format(time.RFC3339),
			c.NotBefore.Format(time.RFC3339), c.NotAfter.Format(time.RFC3339))
	}
	return nil
}

// skew backdates certificates for clock skew between replicas and the API
// server, without eating a short test validity.
func skew(validity time.Duration) time.Duration {
	return min(time.Minute, validity/10)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return n
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}
