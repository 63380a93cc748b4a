// Package e2e drives peergroup through a real kube-apiserver: the chart's
// webhook configuration is registered by loopback URL and pods are created
// through the API server exactly as kubectl would.
package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/peergroup/peergroup/test/framework"
)

const releaseNamespace = "peergroup-system"

var (
	cluster  *framework.Cluster
	rendered *framework.Rendered
	hook     *framework.Webhook
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx := context.Background()
	var err error
	if cluster, err = framework.StartCluster(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer cluster.Stop()
	if _, err := cluster.CreateNamespace(ctx, releaseNamespace, nil); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	// certManager mode renders the same Deployment args and webhook entries
	// as the others; the loopback serving certificate stands in for the one
	// cert-manager would issue.
	rendered, err = framework.Render("peergroup", releaseNamespace, map[string]any{
		"certificates": map[string]any{"mode": "certManager"},
		"image":        map[string]any{"repository": "registry.example/peergroup", "tag": "e2e"},
		// A private registry's pull secret, added to every member pod.
		"seedDiscovery": map[string]any{"imagePullSecrets": []any{map[string]any{"name": "regcred"}}},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	// The webhook runs as the chart's ServiceAccount with the chart's RBAC
	// and nothing more, so every test also proves the ClusterRole suffices.
	if err := framework.ApplyIdentity(ctx, cluster, rendered); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	asChart := framework.ServiceAccountConfig(cluster.Config, releaseNamespace, "peergroup")
	if hook, err = framework.StartWebhook(ctx, cluster, rendered, releaseNamespace, framework.As(asChart)); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer hook.Stop()
	if _, err := framework.RegisterWebhook(ctx, cluster, rendered, hook.URL(), hook.CABundle); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	if err := framework.WaitForInjection(ctx, cluster, "default"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	return m.Run()
}
