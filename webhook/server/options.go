// Package server wires the peergroup webhook into a controller-runtime
// manager: flags into Options, Options into a running server.
package server

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/rest"

	"github.com/peergroup/peergroup/certs"
	"github.com/peergroup/peergroup/webhook"
)

// Options is the webhook process configuration (DESIGN.md section 6).
type Options struct {
	Host                   string
	Port                   int
	CertDir                string
	MetricsBindAddress     string
	HealthProbeBindAddress string
	// Namespace is the webhook's own namespace (POD_NAMESPACE); its pods are
	// never injected.
	Namespace string
	// LogLevel: 0 info, higher is more verbose.
	LogLevel int
	// Mutation is passed to the handler unchanged.
	Mutation webhook.Config
	// SelfSigned makes the webhook manage its own CA and certificate.
	SelfSigned bool
	Certs      certs.KeeperConfig
	// RestConfig, when set, is used instead of KUBECONFIG / in-cluster
	// config; tests set it to run the server in-process.
	RestConfig *rest.Config
}

// ParseFlags turns a command line into Options. A flag given twice takes
// its last value, so a wrapper can append overrides to the chart's args.
func ParseFlags(args []string, getenv func(string) string, version string, stderr io.Writer) (Options, error) {
	o := Options{Mutation: webhook.DefaultConfig()}
	o.Mutation.Version = version
	fs := flag.NewFlagSet("peergroup-webhook", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Host, "host", "", "address the webhook server binds to (empty: all interfaces)")
	fs.IntVar(&o.Port, "port", 9443, "port the webhook server listens on")
	fs.StringVar(&o.CertDir, "cert-dir", "/tmp/k8s-webhook-server/serving-certs", "directory holding tls.crt and tls.key; reloaded when the files change")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint (0 disables it)")
	fs.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	fs.IntVar(&o.LogLevel, "v", 0, "log verbosity")
	finishMutation := MutationFlags(fs, &o.Mutation)
	patchMode := string(webhook.PatchDirect)
	fs.StringVar(&patchMode, "patch-mode", patchMode, "how the JSON patch is made: direct (operations written from the mutation; proven equal by a fuzz test) or diff (admission.PatchResponseFromRaw)")
	fs.BoolVar(&o.SelfSigned, "self-signed", false, "create, store (Secret), rotate and inject (caBundle) the serving certificate")
	fs.StringVar(&o.Certs.SecretName, "tls-secret-name", "", "selfSigned: Secret in the webhook's namespace holding CA and certificate")
	fs.StringVar(&o.Certs.WebhookConfigName, "webhook-config-name", "", "selfSigned: MutatingWebhookConfiguration whose caBundle is kept in step")
	fs.StringVar(&o.Certs.ServiceName, "service-name", "", "selfSigned: the webhook Service, for the certificate's DNS names")
	fs.DurationVar(&o.Certs.Validity, "cert-validity", 8760*time.Hour, "selfSigned: serving certificate validity (renewed at two thirds; the CA lives 10x longer)")
	fs.DurationVar(&o.Certs.Resync, "cert-resync-interval", time.Minute, "selfSigned: how often the Secret is re-read for rotation")
	sans := ""
	fs.StringVar(&sans, "cert-extra-sans", "", "selfSigned: extra comma-separated DNS names or IPs in the certificate (e.g. 127.0.0.1 for a local API server)")
	if err := fs.Parse(args); err != nil {
		return Options{}, err
	}
	if fs.NArg() > 0 {
		return Options{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	finishMutation()
	o.Mutation.PatchMode = webhook.PatchMode(patchMode)
	o.Certs.ExtraSANs = splitList(sans)
	o.Certs.CertDir = o.CertDir
	o.Namespace = getenv("POD_NAMESPACE")
	o.Certs.Namespace = o.Namespace
	if o.Namespace != "" {
		o.Mutation.ExcludedNamespaces = append(o.Mutation.ExcludedNamespaces, o.Namespace)
	}
	return o, o.validate()
}

// MutationFlags registers on fs the flags that shape the injection, with
// cfg's values as defaults; finish stores the parsed values into cfg. The
// webhook and `peergroup inject` share them, so offline injection is
// configured exactly as the webhook is.
func MutationFlags(fs *flag.FlagSet, cfg *webhook.Config) (finish func()) {
	fs.StringVar(&cfg.SeedDiscoveryImage, "seed-discovery-image", cfg.SeedDiscoveryImage, "image of the injected seed-discovery init container")
	cmd := strings.Join(cfg.SeedDiscoveryCommand, " ")
	fs.StringVar(&cmd, "seed-discovery-command", cmd, "command of the seed-discovery init container, space separated")
	pull := string(cfg.ImagePullPolicy)
	fs.StringVar(&pull, "seed-discovery-image-pull-policy", pull, "imagePullPolicy of the init container: Always, IfNotPresent or Never")
	fs.Var((*resourceListFlag)(&cfg.Resources.Requests), "seed-discovery-requests", "resource requests of the init container, e.g. cpu=10m,memory=16Mi")
	fs.Var((*resourceListFlag)(&cfg.Resources.Limits), "seed-discovery-limits", "resource limits of the init container, e.g. cpu=100m,memory=32Mi")
	fs.StringVar(&cfg.ClusterDomain, "cluster-domain", cfg.ClusterDomain, "cluster DNS domain passed to seed-discovery (empty: it reads the pod's resolv.conf)")
	excluded := strings.Join(cfg.ExcludedNamespaces, ",")
	fs.StringVar(&excluded, "excluded-namespaces", excluded, "comma-separated namespaces never injected, besides the webhook's own")
	return func() {
		cfg.SeedDiscoveryCommand = strings.Fields(cmd)
		cfg.ImagePullPolicy = corev1.PullPolicy(pull)
		cfg.ExcludedNamespaces = splitList(excluded)
	}
}

// ValidateMutation reports every unusable injection setting.
func ValidateMutation(cfg webhook.Config) error {
	var errs []error
	if cfg.SeedDiscoveryImage == "" {
		errs = append(errs, errors.New("--seed-discovery-image must not be empty"))
	}
	if len(cfg.SeedDiscoveryCommand) == 0 {
		errs = append(errs, errors.New("--seed-discovery-command must not be empty"))
	}
	switch cfg.ImagePullPolicy {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		errs = append(errs, fmt.Errorf("--seed-discovery-image-pull-policy %q must be Always, IfNotPresent or Never", cfg.ImagePullPolicy))
	}
	return errors.Join(errs...)
}

func (o Options) validate() error {
	errs := []error{ValidateMutation(o.Mutation)}
	if o.Port < 1 || o.Port > 65535 {
		errs = append(errs, fmt.Errorf("--port %d is not a port number", o.Port))
	}
	if o.CertDir == "" {
		errs = append(errs, errors.New("--cert-dir must not be empty"))
	}
	if m := o.Mutation.PatchMode; m != webhook.PatchDirect && m != webhook.PatchDiff {
		errs = append(errs, fmt.Errorf("--patch-mode %q must be direct or diff", m))
	}
	return errors.Join(errs...)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// resourceListFlag parses "cpu=10m,memory=16Mi"; each use replaces the
// whole list (last flag wins).
type resourceListFlag corev1.ResourceList

func (f *resourceListFlag) String() string {
	if f == nil {
		return ""
	}
	var parts []string
	for k, v := range *f {
		parts = append(parts, string(k)+"="+v.String())
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func (f *resourceListFlag) Set(s string) error {
	list := corev1.ResourceList{}
	for _, kv := range splitList(s) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("%q is not name=quantity", kv)
		}
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return fmt.Errorf("quantity for %s: %w", k, err)
		}
		list[corev1.ResourceName(k)] = q
	}
	*f = resourceListFlag(list)
	return nil
}
