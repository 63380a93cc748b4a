package framework

import (
	"bytes"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"

	certutil "k8s.io/client-go/util/cert"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// APIServerBridgePort is where pods of the real node reach the API server:
// RealNodeBridgeIP:APIServerBridgePort, a proxy to its loopback port. In
// a cluster without kube-proxy the `kubernetes` Service's cluster IP leads
// nowhere, so a pod that talks to the API server (the chart's webhook) is
// given this address (chart value extraEnv: KUBERNETES_SERVICE_HOST/PORT),
// as clusters that replace kube-proxy do.
const APIServerBridgePort = 6443

// serveOnBridge gives the API server a serving certificate that also names
// the bridge address (envtest's names only localhost and its listen
// address), signed by a CA of the test's own that becomes the cluster's
// CA: clients, the controllers' root CA ConfigMap and so the pods trust it.
// It also turns on aggregator routing, so the API server calls a webhook
// registered by Service at its endpoint's pod IP, never a cluster IP.
func serveOnBridge(env *envtest.Environment, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey("localhost",
		[]net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(RealNodeBridgeIP)}, []string{"localhost"})
	if err != nil {
		return fmt.Errorf("API server certificate: %w", err)
	}
	// The PEM holds the serving certificate, then the CA that signed it.
	first, rest := pem.Decode(certPEM)
	if first == nil || len(bytes.TrimSpace(rest)) == 0 {
		return fmt.Errorf("API server certificate: no CA after the serving certificate")
	}
	saCert, saKey, err := certutil.GenerateSelfSignedCertKey("service-accounts", nil, nil)
	if err != nil {
		return fmt.Errorf("service account signing key: %w", err)
	}
	for name, data := range map[string][]byte{
		"apiserver.crt": certPEM, "apiserver.key": keyPEM,
		// envtest's names for the service account signing pair.
		"sa-signer.crt": saCert, "sa-signer.key": saKey,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}
	api := env.ControlPlane.GetAPIServer()
	api.CertDir = dir
	api.SecureServing.CA = bytes.TrimSpace(rest)
	api.Configure().Set("enable-aggregator-routing", "true")
	return nil
}
