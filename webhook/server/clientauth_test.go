package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/peergroup/peergroup/certs"
)

// testCA is a CA that signs client certificates for the tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return testCA{cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca testCA) client(t *testing.T, cn string, dns []string, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn}, DNSNames: dns,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// serve starts a TLS listener configured as the webhook server is (hardened,
// then the client verifier) and returns its address and the result of each
// accepted connection's handshake.
func serve(t *testing.T, v *clientVerifier) (string, <-chan error) {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", servingTLS(t, v))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	results := make(chan error, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			err = c.(*tls.Conn).Handshake()
			if err == nil {
				_, err = c.Write([]byte("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
			}
			results <- err
			c.Close()
		}
	}()
	return l.Addr().String(), results
}

// serveHTTP is an HTTP server (404 to every request) with the webhook
// server's TLS options and v's client verification: one that answers a
// request once it is read, as the webhook's does (serve answers at the
// handshake, before the request: an HTTP client may take that answer
// for one it never asked).
func serveHTTP(t *testing.T, v *clientVerifier) string {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", servingTLS(t, v))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.NotFoundHandler(), ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String()
}

// servingTLS is the webhook server's TLS configuration with v's client
// verification and a serving certificate of its own.
func servingTLS(t *testing.T, v *clientVerifier) *tls.Config {
	t.Helper()
	caPEM, caKey, err := certs.NewCA("serving", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := certs.NewServing(caPEM, caKey, []string{"localhost"}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}}
	for _, opt := range append(TLSOptions(), v.tlsOption) {
		opt(cfg)
	}
	return cfg
}

// call connects with client (nil: none) and returns the server's verdict:
// nil when it accepted the certificate.
func call(t *testing.T, addr string, results <-chan error, client *tls.Certificate) error {
	t.Helper()
	cfg := &tls.Config{InsecureSkipVerify: true} // the server's certificate is not under test
	if client != nil {
		cfg.Certificates = []tls.Certificate{*client}
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err == nil {
		// TLS 1.3: the server judges the client's certificate after the
		// client's side of the handshake is done; its verdict arrives here.
		buf := make([]byte, 2)
		_, readErr := conn.Read(buf)
		conn.Close()
		if (readErr == nil) != (string(buf) == "HT") {
			t.Fatalf("read %q with %v", buf, readErr)
		}
	}
	select {
	case serverErr := <-results:
		return serverErr
	case <-time.After(5 * time.Second):
		t.Fatal("no handshake on the server")
		return nil
	}
}

func writeCA(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestClientCertificates(t *testing.T) {
	apiServerCA, otherCA := newTestCA(t, "api-server-clients"), newTestCA(t, "someone-else")
	file := filepath.Join(t.TempDir(), "ca.crt")
	writeCA(t, file, apiServerCA.pem)
	for _, tc := range []struct {
		name   string
		names  []string
		client func() *tls.Certificate
		refuse string // empty: accepted
	}{
		{"no certificate", nil, func() *tls.Certificate { return nil }, "didn't provide a certificate"},
		{"another CA's certificate", nil, func() *tls.Certificate {
			c := otherCA.client(t, "kube-apiserver", nil, x509.ExtKeyUsageClientAuth)
			return &c
		}, "unknown authority"},
		{"the CA's server certificate", nil, func() *tls.Certificate {
			c := apiServerCA.client(t, "kube-apiserver", nil, x509.ExtKeyUsageServerAuth)
			return &c
		}, "incompatible key usage"},
		{"the CA's client certificate, any name", nil, func() *tls.Certificate {
			c := apiServerCA.client(t, "anything", nil, x509.ExtKeyUsageClientAuth)
			return &c
		}, ""},
		{"an accepted common name", []string{"kube-apiserver-webhook-client"}, func() *tls.Certificate {
			c := apiServerCA.client(t, "kube-apiserver-webhook-client", nil, x509.ExtKeyUsageClientAuth)
			return &c
		}, ""},
		{"an accepted DNS name", []string{"apiserver.example"}, func() *tls.Certificate {
			c := apiServerCA.client(t, "x", []string{"apiserver.example"}, x509.ExtKeyUsageClientAuth)
			return &c
		}, ""},
		{"a name not accepted", []string{"kube-apiserver-webhook-client"}, func() *tls.Certificate {
			c := apiServerCA.client(t, "system:node:evil", []string{"evil"}, x509.ExtKeyUsageClientAuth)
			return &c
		}, "is not one of the accepted names"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := newClientVerifier(ClientAuth{CAFile: file, Names: tc.names}, logr.Discard())
			if err != nil {
				t.Fatal(err)
			}
			addr, results := serve(t, v)
			err = call(t, addr, results, tc.client())
			switch {
			case tc.refuse == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.refuse != "" && (err == nil || !strings.Contains(err.Error(), tc.refuse)):
				t.Fatalf("got %v, want a refusal saying %q", err, tc.refuse)
			}
		})
	}

	t.Run("its own ready check's certificate, whatever the names", func(t *testing.T) {
		v, err := newClientVerifier(ClientAuth{CAFile: file, Names: []string{"only-this"}}, logr.Discard())
		if err != nil {
			t.Fatal(err)
		}
		addr, results := serve(t, v)
		if err := call(t, addr, results, &v.self); err != nil {
			t.Fatal(err)
		}
		other, _ := newClientVerifier(ClientAuth{CAFile: file}, logr.Discard())
		if err := call(t, addr, results, &other.self); err == nil {
			t.Fatal("another process's ready-check certificate was accepted")
		}
	})
}

// verifierOnClock is a verifier of the CA file it writes with caPEM, on a
// clock the test moves (*now).
func verifierOnClock(t *testing.T, caPEM []byte) (v *clientVerifier, file string, now *time.Time) {
	t.Helper()
	file = filepath.Join(t.TempDir(), "ca.crt")
	writeCA(t, file, caPEM)
	v, err := newClientVerifier(ClientAuth{CAFile: file}, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	v.now = func() time.Time { return clock }
	return v, file, &clock
}

// A CA file replaced in place (a ConfigMap update) is trusted after the
// re-read interval; one that does not parse keeps the CAs before it.
func TestClientCAFileFollowed(t *testing.T) {
	oldCA, newCA := newTestCA(t, "old"), newTestCA(t, "new")
	v, file, now := verifierOnClock(t, oldCA.pem)
	addr, results := serve(t, v)
	oldCert, newCert := oldCA.client(t, "a", nil, x509.ExtKeyUsageClientAuth), newCA.client(t, "a", nil, x509.ExtKeyUsageClientAuth)

	writeCA(t, file, newCA.pem)
	if err := call(t, addr, results, &oldCert); err != nil {
		t.Fatalf("before the interval the CA read first still holds: %v", err)
	}
	*now = now.Add(v.interval)
	if err := call(t, addr, results, &newCert); err != nil {
		t.Fatalf("the new CA is not trusted after the interval: %v", err)
	}
	if err := call(t, addr, results, &oldCert); err == nil {
		t.Fatal("the replaced CA is still trusted")
	}

	writeCA(t, file, []byte("not a certificate"))
	*now = now.Add(v.interval)
	if err := call(t, addr, results, &newCert); err != nil {
		t.Fatalf("a CA file that does not parse dropped the CAs before it: %v", err)
	}
}

func TestClientCAFileRequired(t *testing.T) {
	dir := t.TempDir()
	if _, err := newClientVerifier(ClientAuth{CAFile: filepath.Join(dir, "missing")}, logr.Discard()); err == nil || !strings.Contains(err.Error(), "--client-ca-file") {
		t.Fatalf("missing file: %v", err)
	}
	writeCA(t, filepath.Join(dir, "empty"), nil)
	if _, err := newClientVerifier(ClientAuth{CAFile: filepath.Join(dir, "empty")}, logr.Discard()); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("empty file: %v", err)
	}
	ca := newTestCA(t, "ok")
	leaf := ca.client(t, "leaf", nil, x509.ExtKeyUsageClientAuth)
	leafPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Certificate[0]})
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"a leaf beside the CA":          {append(append([]byte{}, ca.pem...), leafPEM...), `"leaf" is not a CA`},
		"a garbled second CA":           {append(append([]byte{}, ca.pem...), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")...), "certificate 2"},
		"a private key":                 {append(append([]byte{}, ca.pem...), []byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n")...), `type "EC PRIVATE KEY"`},
		"text after the last PEM block": {append(append([]byte{}, ca.pem...), []byte("trailing")...), "not PEM"},
	} {
		f := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		writeCA(t, f, tc.data)
		if _, err := newClientVerifier(ClientAuth{CAFile: f}, logr.Discard()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

// A session resumed from a ticket skips VerifyPeerCertificate in Go, so
// the server issues none: a client let in once is judged again at every
// connection (here: after its CA left the file, and without a certificate).
func TestClientCertificateJudgedAtEveryConnection(t *testing.T) {
	ca, other := newTestCA(t, "ca"), newTestCA(t, "other")
	v, file, now := verifierOnClock(t, ca.pem)
	addr, results := serve(t, v)
	sessions := tls.NewLRUClientSessionCache(8)
	good := ca.client(t, "a", nil, x509.ExtKeyUsageClientAuth)
	dial := func(cert *tls.Certificate) (resumed bool, serverErr error) {
		cfg := &tls.Config{InsecureSkipVerify: true, ClientSessionCache: sessions}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		conn, err := tls.Dial("tcp", addr, cfg)
		if err == nil {
			buf := make([]byte, 2)
			_, _ = conn.Read(buf)
			resumed = conn.ConnectionState().DidResume
			conn.Close()
		}
		return resumed, <-results
	}
	if _, err := dial(&good); err != nil {
		t.Fatal(err)
	}
	writeCA(t, file, other.pem)
	*now = now.Add(v.interval)
	resumed, err := dial(nil)
	if resumed || err == nil {
		t.Fatalf("a client without a certificate resumed (%v) or was let in (%v) after its CA left", resumed, err)
	}
}

func TestServingCheckPresentsItsCertificate(t *testing.T) {
	file := filepath.Join(t.TempDir(), "ca.crt")
	writeCA(t, file, newTestCA(t, "ca").pem)
	v, err := newClientVerifier(ClientAuth{CAFile: file, Names: []string{"only-the-api-server"}}, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	addr := serveHTTP(t, v)
	if err := v.servingCheck(addr)(nil); err != nil {
		t.Fatalf("the ready check of a serving webhook: %v", err)
	}
	other, _ := newClientVerifier(ClientAuth{CAFile: file}, logr.Discard())
	if err := other.servingCheck(addr)(nil); err == nil {
		t.Fatal("another process's ready check was answered: the check would pass whatever the server refuses")
	}
}
