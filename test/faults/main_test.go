// Package faults breaks things around a running peergroup webhook, through
// a real kube-apiserver: RBAC taken away, quota exhausted, the API server
// unreachable, cut mid-request or slow, the webhook killed under load, two
// replicas racing on new groups, and an attacker with only pod create. Each
// test registers its own webhook configuration, limited to its own
// namespaces by a label, so one test's webhook never answers another's pods.
package faults

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/peergroup/peergroup/test/framework"
)

const releaseNamespace = "peergroup-system"

var (
	cluster  *framework.Cluster
	rendered *framework.Rendered
	// webhookBinary and chartKubeconfig run the webhook as a process, as
	// the chart's ServiceAccount.
	webhookBinary, chartKubeconfig string
)

func TestMain(m *testing.M) {
	// Informers list, then watch, as on every API server. (client-go
	// otherwise streams the initial list as a watch where the server
	// supports it; the chart still grants list for the servers that do not,
	// and TestClusterRoleMatchesCodeCalls must see it used.)
	os.Setenv("KUBE_FEATURE_WatchListClient", "false")
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx := context.Background()
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "faults:", err)
		return 1
	}
	var err error
	if cluster, err = framework.StartCluster(); err != nil {
		return fail(err)
	}
	defer cluster.Stop()
	if _, err := cluster.CreateNamespace(ctx, releaseNamespace, nil); err != nil {
		return fail(err)
	}
	rendered, err = framework.Render("peergroup", releaseNamespace, map[string]any{
		"certificates": map[string]any{"mode": "certManager"},
		"image":        map[string]any{"repository": "registry.example/peergroup", "tag": "faults"},
	})
	if err != nil {
		return fail(err)
	}
	if err := framework.ApplyIdentity(ctx, cluster, rendered); err != nil {
		return fail(err)
	}
	dir, err := os.MkdirTemp("", "peergroup-faults-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)
	if webhookBinary, err = framework.BuildBinary(ctx, "peergroup-webhook", dir); err != nil {
		return fail(err)
	}
	admin := filepath.Join(dir, "admin.kubeconfig")
	if err := cluster.WriteKubeconfig(admin); err != nil {
		return fail(err)
	}
	chartKubeconfig = filepath.Join(dir, "chart.kubeconfig")
	if err := cluster.WriteKubeconfigAs(admin, chartKubeconfig, releaseNamespace, "peergroup"); err != nil {
		return fail(err)
	}
	return m.Run()
}
