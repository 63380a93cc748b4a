// Package cluster runs the whole scenario on a simulated cluster: real
// kube-apiserver, etcd, kube-controller-manager, kube-scheduler, kwok as the
// kubelet and CoreDNS, all on loopback; workloads are scaled and every
// pod's seed-discovery runs against CoreDNS. `go test -short` skips it.
package cluster

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/peergroup/peergroup/test/framework"
)

const releaseNamespace = "peergroup-system"

var (
	lc            *framework.LocalCluster
	rendered      *framework.Rendered
	hook          *framework.Webhook
	seedDiscovery string
	workDir       string
	images        framework.NodeImages
)

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// Every test here needs the cluster: run none (go test reports
		// "no tests to run"), rather than each failing on a nil cluster.
		fmt.Println("cluster: local-cluster suite skipped by -short")
		_ = flag.Set("test.run", "^$")
		os.Exit(m.Run())
	}
	os.Exit(run(m))
}

func run(m *testing.M) (code int) {
	ctx := context.Background()
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		return 1
	}
	// Runs last, once the cluster and its real node stopped: the node
	// leaves no process, mount, bridge, veth, cgroup or file behind.
	defer func() {
		if lc != nil && lc.Node != nil && len(lc.Node.Left) > 0 {
			fmt.Fprintln(os.Stderr, "cluster: the real node left:", strings.Join(lc.Node.Left, "; "))
			code = 1
		}
	}()
	var err error
	if workDir, err = os.MkdirTemp("", "peergroup-cluster-"); err != nil {
		return fail(err)
	}
	defer os.RemoveAll(workDir)
	if seedDiscovery, err = framework.BuildBinary(ctx, "seed-discovery", workDir); err != nil {
		return fail(err)
	}
	lc, err = framework.StartLocalCluster(ctx, framework.LocalClusterOptions{LogDir: filepath.Join(workDir, "logs"), Progress: os.Stdout, RealNode: true})
	if err != nil {
		return fail(err)
	}
	defer lc.Stop()
	fmt.Println("    real node: building and pushing the peergroup and NATS images")
	if images, err = framework.PushNodeImages(ctx, lc.Node); err != nil {
		return fail(err)
	}
	if _, err := lc.CreateNamespace(ctx, releaseNamespace, nil); err != nil {
		return fail(err)
	}
	rendered, err = framework.Render("peergroup", releaseNamespace, map[string]any{
		"certificates": map[string]any{"mode": "certManager"},
		// The init container the real node runs is the image `make
		// image` builds, pulled from the node's loopback registry.
		"image": map[string]any{"repository": images.Repository, "tag": images.Tag},
	})
	if err != nil {
		return fail(err)
	}
	// 5. The webhook runs as the chart's ServiceAccount with the chart's
	// RBAC only (impersonated): every test below proves it is enough.
	if err := framework.ApplyIdentity(ctx, lc.Cluster, rendered); err != nil {
		return fail(err)
	}
	asChart := framework.ServiceAccountConfig(lc.Config, releaseNamespace, "peergroup")
	if hook, err = framework.StartWebhook(ctx, lc.Cluster, rendered, releaseNamespace, framework.As(asChart)); err != nil {
		return fail(err)
	}
	defer func() { hook.Stop() }()
	if _, err := framework.RegisterWebhook(ctx, lc.Cluster, rendered, hook.URL(), hook.CABundle); err != nil {
		return fail(err)
	}
	if err := framework.WaitForInjection(ctx, lc.Cluster, "default"); err != nil {
		return fail(err)
	}
	code = m.Run()
	fmt.Println("cluster: real-node figures:", figures.summary())
	fmt.Println("cluster: real applications:", appFigures.summary())
	fmt.Println("cluster: NATS created at once:", scaleFigures.String())
	if code != 0 {
		dumpLogs(filepath.Join(workDir, "logs"))
	}
	return code
}

// dumpLogs prints the end of every component log, so a failed CI run shows
// what the controllers, kwok and CoreDNS were doing.
func dumpLogs(dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, f := range files {
		tail := framework.LogTail(f, 15)
		fmt.Fprintf(os.Stderr, "==> %s (last %d lines)\n%s\n", filepath.Base(f), strings.Count(tail, "\n")+1, tail)
	}
}
