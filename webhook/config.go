package webhook

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Config is everything the mutation needs besides the pod. It is built once
// from flags by cmd/peergroup-webhook and passed in; nothing reads globals.
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
	// PatchMode: PatchDiff (the reference) or PatchDirect (faster, proven
	// equivalent); empty means PatchDiff.
	PatchMode PatchMode
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
		PatchMode:          PatchDirect,
	}
}

func (c Config) excluded(ns string) bool {
	for _, e := range c.ExcludedNamespaces {
		if e == ns {
			return true
		}
	}
	return false
}
