package admit

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/internal/listflag"
)

// Config is everything the decision needs besides the pod and the cluster.
// It is built once from flags (RegisterFlags) and passed in; nothing reads
// globals.
type Config struct {
	// Version is written to the peergroup.dev/injected annotation.
	Version string
	// SeedDiscoveryImage is the init container's image.
	SeedDiscoveryImage string
	// SeedDiscoveryCommand is the init container's command. The release image
	// carries both binaries, so its entrypoint is the webhook and the command
	// must name seed-discovery.
	SeedDiscoveryCommand []string
	// ImagePullPolicy of the init container.
	ImagePullPolicy corev1.PullPolicy
	// Resources of the init container.
	Resources corev1.ResourceRequirements
	// ClusterDomain, when set, is passed to seed-discovery; empty lets it read
	// the search line of the pod's resolv.conf.
	ClusterDomain string
	// ExcludedNamespaces never get injected (the webhook's own namespace and
	// kube-system), even if a webhook configuration sends their pods here.
	ExcludedNamespaces []string
	// FixedIDs sets runAsUser and runAsGroup 65532 on the init container.
	// Off, they are left to the platform: OpenShift's restricted-v2 SCC
	// assigns a UID from the namespace's range and rejects a fixed one
	// outside it; runAsNonRoot stays, and the image's numeric USER passes
	// it where nothing assigns one.
	FixedIDs bool
	// ImagePullSecrets are added to member pods (by name, without
	// duplicates) so the kubelet can pull the init container's image from
	// a private registry.
	ImagePullSecrets []string
}

// DefaultConfig returns the defaults the chart also documents.
func DefaultConfig() Config {
	return Config{
		Version:              "dev",
		SeedDiscoveryImage:   "ghcr.io/peergroup/peergroup:dev",
		SeedDiscoveryCommand: []string{"/usr/local/bin/seed-discovery"},
		ImagePullPolicy:      corev1.PullIfNotPresent,
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("10m"),
				corev1.ResourceMemory: resource.MustParse("16Mi"),
			},
			Limits: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("100m"),
				corev1.ResourceMemory: resource.MustParse("32Mi"),
			},
		},
		ExcludedNamespaces: []string{"kube-system"},
		FixedIDs:           true,
	}
}

// Excluded reports whether pods in namespace ns are never injected.
func (c Config) Excluded(ns string) bool { return slices.Contains(c.ExcludedNamespaces, ns) }

// Validate reports every unusable injection setting, named by its flag.
func (c Config) Validate() error {
	var errs []error
	if c.SeedDiscoveryImage == "" {
		errs = append(errs, errors.New("--seed-discovery-image must not be empty"))
	}
	if len(c.SeedDiscoveryCommand) == 0 {
		errs = append(errs, errors.New("--seed-discovery-command must not be empty"))
	}
	if c.ClusterDomain != "" {
		if err := contract.ValidClusterDomain(c.ClusterDomain); err != nil {
			errs = append(errs, fmt.Errorf("--cluster-domain: %w", err))
		}
	}
	for _, s := range c.ImagePullSecrets {
		if msgs := validation.IsDNS1123Subdomain(s); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("--seed-discovery-image-pull-secrets: %q is not a Secret name: %s", s, strings.Join(msgs, "; ")))
		}
	}
	switch c.ImagePullPolicy {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		errs = append(errs, fmt.Errorf("--seed-discovery-image-pull-policy %q must be Always, IfNotPresent or Never", c.ImagePullPolicy))
	}
	return errors.Join(errs...)
}

// RegisterFlags registers on fs the flags that shape the injection, with
// c's values as defaults; finish stores the parsed values into c. The
// webhook and the CLI share them, so offline injection is configured
// exactly as the webhook is.
func RegisterFlags(fs *flag.FlagSet, c *Config) (finish func()) {
	fs.StringVar(&c.SeedDiscoveryImage, "seed-discovery-image", c.SeedDiscoveryImage, "image of the injected seed-discovery init container")
	cmd := strings.Join(c.SeedDiscoveryCommand, " ")
	fs.StringVar(&cmd, "seed-discovery-command", cmd, "command of the seed-discovery init container, space separated")
	pull := string(c.ImagePullPolicy)
	fs.StringVar(&pull, "seed-discovery-image-pull-policy", pull, "imagePullPolicy of the init container: Always, IfNotPresent or Never")
	fs.Var((*resourceListFlag)(&c.Resources.Requests), "seed-discovery-requests", "resource requests of the init container, e.g. cpu=10m,memory=16Mi")
	fs.Var((*resourceListFlag)(&c.Resources.Limits), "seed-discovery-limits", "resource limits of the init container, e.g. cpu=100m,memory=32Mi")
	fs.StringVar(&c.ClusterDomain, "cluster-domain", c.ClusterDomain, "cluster DNS domain passed to seed-discovery (empty: it reads the pod's resolv.conf)")
	excluded := strings.Join(c.ExcludedNamespaces, ",")
	fs.StringVar(&excluded, "excluded-namespaces", excluded, "comma-separated namespaces never injected, besides the webhook's own")
	fs.BoolVar(&c.FixedIDs, "seed-discovery-fixed-ids", c.FixedIDs, "set runAsUser and runAsGroup 65532 on the init container (false on OpenShift, whose SCC assigns them)")
	secrets := strings.Join(c.ImagePullSecrets, ",")
	fs.StringVar(&secrets, "seed-discovery-image-pull-secrets", secrets, "comma-separated Secrets added to member pods' imagePullSecrets, to pull the init container's image")
	return func() {
		c.SeedDiscoveryCommand = strings.Fields(cmd)
		c.ImagePullPolicy = corev1.PullPolicy(pull)
		c.ExcludedNamespaces = listflag.Split(excluded)
		c.ImagePullSecrets = listflag.Split(secrets)
	}
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
	for _, kv := range listflag.Split(s) {
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
