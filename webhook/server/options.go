// Package server wires the peergroup webhook into a controller-runtime
// manager: flags into Options (the injection's own flags live beside
// admit.Config), Options into a running server.
package server

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"k8s.io/client-go/rest"

	"github.com/peergroup/peergroup/certs"
	"github.com/peergroup/peergroup/internal/listflag"
	"github.com/peergroup/peergroup/webhook"
	"github.com/peergroup/peergroup/webhook/admit"
)

// Options is the webhook process configuration (docs/install.md, "Webhook flags").
type Options struct {
	Host                   string
	Port                   int
	CertDir                string
	MetricsBindAddress     string
	HealthProbeBindAddress string
	// ShutdownDelay is how long the server keeps serving after SIGTERM,
	// with readiness failing; DrainTimeout bounds the admissions in flight
	// after that (docs/install.md, "Upgrades without refusals").
	ShutdownDelay time.Duration
	DrainTimeout  time.Duration
	// Namespace is the webhook's own namespace (POD_NAMESPACE); its pods are
	// never injected.
	Namespace string
	// LogLevel: 0 info, higher is more verbose.
	LogLevel int
	// Mutation is passed to the handler unchanged.
	Mutation admit.Config
	// SelfSigned makes the webhook manage its own CA and certificate.
	SelfSigned bool
	Certs      certs.KeeperConfig
	// ValidationSettle is how long peergroup's ValidatingWebhookConfiguration
	// must have been seen before the mutating phase leaves a missing Service
	// to the validating phase (webhook.ValidationWatch).
	ValidationSettle time.Duration
	// ClientAuth, when enabled, requires the caller's client certificate.
	ClientAuth       ClientAuth
	clientNamesGiven bool
	// RestConfig, when set, is used instead of KUBECONFIG / in-cluster
	// config; tests set it to run the server in-process.
	RestConfig *rest.Config
}

// ParseFlags turns a command line into Options. A flag given twice takes
// its last value, so a wrapper can append overrides to the chart's args.
func ParseFlags(args []string, getenv func(string) string, version string, stderr io.Writer) (Options, error) {
	o := Options{Mutation: admit.DefaultConfig()}
	o.Mutation.Version = version
	fs := flag.NewFlagSet("peergroup-webhook", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Host, "host", "", "address the webhook server binds to (empty: all interfaces)")
	fs.IntVar(&o.Port, "port", 9443, "port the webhook server listens on")
	fs.StringVar(&o.CertDir, "cert-dir", "/tmp/k8s-webhook-server/serving-certs", "directory holding tls.crt and tls.key; reloaded when the files change")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint (0 disables it)")
	fs.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	fs.DurationVar(&o.ShutdownDelay, "shutdown-delay", 10*time.Second, "after SIGTERM, keep serving this long with /readyz failing, so endpoints drop the pod before it stops accepting (0 stops at once)")
	fs.DurationVar(&o.DrainTimeout, "drain-timeout", 15*time.Second, "after the shutdown delay, wait at most this long for admissions in flight; at least the webhook's timeoutSeconds")
	fs.IntVar(&o.LogLevel, "v", 0, "log verbosity")
	finishMutation := admit.RegisterFlags(fs, &o.Mutation)
	fs.BoolVar(&o.SelfSigned, "self-signed", false, "create, store (Secret), rotate and inject (caBundle) the serving certificate")
	fs.StringVar(&o.Certs.SecretName, "tls-secret-name", "", "selfSigned: Secret in the webhook's namespace holding CA and certificate")
	fs.StringVar(&o.Certs.WebhookConfigName, "webhook-config-name", "", "name of peergroup's Mutating- and ValidatingWebhookConfiguration: Services are created at validation while the latter calls "+webhook.ValidatePath+"; selfSigned keeps both caBundles in step (empty: Services are created at mutation)")
	fs.DurationVar(&o.ValidationSettle, "validation-settle", 10*time.Second, "how long the ValidatingWebhookConfiguration must have been seen, and called, before the mutating phase leaves a missing Service to it (every API server must have loaded it)")
	fs.StringVar(&o.Certs.ServiceName, "service-name", "", "selfSigned: the webhook Service, for the certificate's DNS names")
	fs.DurationVar(&o.Certs.Validity, "cert-validity", 8760*time.Hour, "selfSigned: serving certificate validity, 10s to 87600h and at least 8x --cert-resync-interval (renewed at two thirds; the CA lives 10x longer)")
	fs.DurationVar(&o.Certs.Resync, "cert-resync-interval", time.Minute, "selfSigned: how often the Secret is re-read for rotation")
	fs.StringVar(&o.ClientAuth.CAFile, "client-ca-file", "", "require callers (the API server) to present a client certificate signed by a CA in this PEM file; re-read when it changes (empty: no client certificate asked)")
	clientNames := ""
	fs.StringVar(&clientNames, "client-cert-names", "", "with --client-ca-file: comma-separated names, one of which the client certificate's common name or a DNS name must be (empty: any certificate of the CA)")
	sans := ""
	fs.StringVar(&sans, "cert-extra-sans", "", "selfSigned: extra comma-separated DNS names or IPs in the certificate (e.g. 127.0.0.1 for a local API server)")
	if err := fs.Parse(args); err != nil {
		return Options{}, err
	}
	if fs.NArg() > 0 {
		return Options{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	finishMutation()
	o.Certs.ExtraSANs = listflag.Split(sans)
	o.ClientAuth.Names = listflag.Split(clientNames)
	fs.Visit(func(f *flag.Flag) { o.clientNamesGiven = o.clientNamesGiven || f.Name == "client-cert-names" })
	o.Certs.CertDir = o.CertDir
	o.Namespace = getenv("POD_NAMESPACE")
	o.Certs.Namespace = o.Namespace
	if o.Namespace != "" {
		o.Mutation.ExcludedNamespaces = append(o.Mutation.ExcludedNamespaces, o.Namespace)
	}
	return o, o.validate()
}

func (o Options) validate() error {
	errs := []error{o.Mutation.Validate()}
	if o.Port < 1 || o.Port > 65535 {
		errs = append(errs, fmt.Errorf("--port %d is not a port number", o.Port))
	}
	if o.ShutdownDelay < 0 {
		errs = append(errs, fmt.Errorf("--shutdown-delay %s must not be negative", o.ShutdownDelay))
	}
	if o.ValidationSettle < 0 {
		errs = append(errs, fmt.Errorf("--validation-settle %s must not be negative", o.ValidationSettle))
	}
	if o.DrainTimeout < time.Second {
		errs = append(errs, fmt.Errorf("--drain-timeout %s must be at least 1s: admissions in flight need time to finish", o.DrainTimeout))
	}
	if o.clientNamesGiven && len(o.ClientAuth.Names) == 0 {
		errs = append(errs, errors.New("--client-cert-names gives no name: an empty list would accept any certificate of the CA (omit the flag for that)"))
	}
	if len(o.ClientAuth.Names) > 0 && !o.ClientAuth.Enabled() {
		errs = append(errs, errors.New("--client-cert-names needs --client-ca-file: names are checked on certificates the CA signed"))
	}
	if o.CertDir == "" {
		errs = append(errs, errors.New("--cert-dir must not be empty"))
	}
	// Checked whatever the mode: a value the keeper cannot keep (a CA
	// lifetime past time.Duration, a certificate expiring between two
	// resyncs) is a wrong command line, not a surprise at the first rotation.
	errs = append(errs, certs.CheckValidity(o.Certs.Validity, o.Certs.Resync))
	return errors.Join(errs...)
}
