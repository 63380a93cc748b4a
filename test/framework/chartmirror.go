package framework

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// ChartRegistryHost is where users install the chart from
// (oci://ghcr.io/peergroup/charts/peergroup).
const ChartRegistryHost = "ghcr.io"

// RegistryMirror stands in for ghcr.io for Helm: an HTTPS server on
// 127.0.0.1 with a certificate for ghcr.io (signed by a CA of its own)
// in front of the loopback registry, reached through an HTTP CONNECT
// proxy on 127.0.0.1 that tunnels ghcr.io:443 there and refuses every
// other destination. A command given Env (HTTPS_PROXY, NO_PROXY for
// loopback, SSL_CERT_FILE the mirror's CA) installs
// oci://ghcr.io/peergroup/charts/peergroup as written, from the loopback
// registry; nothing leaves the machine.
type RegistryMirror struct {
	// Env is what a command needs to reach ghcr.io here.
	Env []string

	tlsLn, proxyLn net.Listener
	tlsSrv         *http.Server
	wg             sync.WaitGroup
	tunnels        atomic.Int64
}

// Tunnels counts the connections to ghcr.io it served: a command that
// pulled the chart went through it (and nowhere else: see Env).
func (m *RegistryMirror) Tunnels() int64 { return m.tunnels.Load() }

// StartRegistryMirror starts the mirror of ghcr.io for the registry at
// registryHost (plain HTTP), its CA written into dir.
func StartRegistryMirror(registryHost, dir string) (_ *RegistryMirror, err error) {
	caPEM, cert, err := mirrorCertificate(ChartRegistryHost)
	if err != nil {
		return nil, err
	}
	caFile := filepath.Join(dir, "ghcr-mirror-ca.crt")
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		return nil, err
	}
	// Only the mirror's CA is trusted: a request that reached the real
	// ghcr.io some other way would fail its TLS handshake.
	noCerts := filepath.Join(dir, "no-system-certs")
	if err := os.MkdirAll(noCerts, 0o755); err != nil {
		return nil, err
	}
	m := &RegistryMirror{}
	defer func() {
		if err != nil {
			m.Stop()
		}
	}()
	if m.tlsLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, err
	}
	target := &url.URL{Scheme: "http", Host: registryHost}
	m.tlsSrv = &http.Server{
		Handler:           httputil.NewSingleHostReverseProxy(target),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		_ = m.tlsSrv.ServeTLS(m.tlsLn, "", "")
	}()
	if m.proxyLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, err
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.serveConnect()
	}()
	proxy, direct := "http://"+m.proxyLn.Addr().String(), "127.0.0.1,localhost,"+RealNodeSubnet
	m.Env = []string{
		"HTTPS_PROXY=" + proxy, "https_proxy=" + proxy, "NO_PROXY=" + direct, "no_proxy=" + direct,
		// A proxy of the caller's environment would take the rest.
		"HTTP_PROXY=", "http_proxy=", "ALL_PROXY=", "all_proxy=",
		"SSL_CERT_FILE=" + caFile, "SSL_CERT_DIR=" + noCerts,
	}
	return m, nil
}

// serveConnect answers CONNECT ghcr.io:443 by tunnelling to the TLS
// mirror; anything else is refused (403): no connection leaves loopback.
func (m *RegistryMirror) serveConnect() {
	for {
		c, err := m.proxyLn.Accept()
		if err != nil {
			return
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.Method != http.MethodConnect || req.Host != ChartRegistryHost+":443" {
				fmt.Fprintf(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
				return
			}
			up, err := net.Dial("tcp", m.tlsLn.Addr().String())
			if err != nil {
				fmt.Fprintf(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
				return
			}
			defer up.Close()
			_ = c.SetDeadline(time.Time{})
			m.tunnels.Add(1)
			fmt.Fprintf(c, "HTTP/1.1 200 Connection Established\r\n\r\n")
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(up, br); done <- struct{}{} }()
			go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
			<-done
		}()
	}
}

// Stop closes the mirror and its proxy.
func (m *RegistryMirror) Stop() {
	if m.proxyLn != nil {
		_ = m.proxyLn.Close()
	}
	if m.tlsSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = m.tlsSrv.Shutdown(ctx)
	} else if m.tlsLn != nil {
		_ = m.tlsLn.Close()
	}
	m.wg.Wait()
}

// mirrorCertificate makes a CA and a serving certificate for host.
func mirrorCertificate(host string) (caPEM []byte, cert tls.Certificate, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, cert, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "peergroup tests' " + host + " mirror"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, cert, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, cert, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, cert, err
	}
	if ca == nil {
		return nil, cert, errors.New("mirror CA")
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
