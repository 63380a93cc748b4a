package e2e

import (
	"path/filepath"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/test/framework"
)

// Every object the chart renders, in every certificate mode, is accepted
// by the real API server (server-side dry-run, cert-manager CRDs installed).
func TestChartObjectsAcceptedByAPIServer(t *testing.T) {
	ctx := testContext(t)
	// Its own release, so nothing collides with the installed webhook.
	ns := newNamespace(t, nil)
	for mode, certs := range map[string]map[string]any{
		"selfSigned":  {"mode": "selfSigned"},
		"certManager": {"mode": "certManager"},
		"provided":    {"mode": "provided", "provided": map[string]any{"secretName": "my-tls", "caBundle": "Y2E="}},
	} {
		t.Run(mode, func(t *testing.T) {
			r, err := framework.Render("dry-run", ns, map[string]any{"certificates": certs})
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Objects) < 8 {
				t.Fatalf("suspiciously few objects: %v", r.Kinds())
			}
			for _, obj := range r.Objects {
				if err := cluster.Client.Create(ctx, obj.DeepCopy(), client.DryRunAll); err != nil {
					t.Errorf("%s %s rejected: %v", obj.GetKind(), obj.GetName(), err)
				}
			}
		})
	}
}

// The documented examples are workloads the API server accepts
// (server-side dry-run; their pods need a controller, issue 5).
func TestExamplesAccepted(t *testing.T) {
	ctx := testContext(t)
	ns := newNamespace(t, nil)
	for _, file := range []string{"cassandra-statefulset.yaml", "akka-deployment.yaml"} {
		objs, err := framework.DecodeFile(filepath.Join(framework.RepoRoot(), "docs", "examples", file))
		if err != nil {
			t.Fatal(err)
		}
		for _, obj := range objs {
			obj.SetNamespace(ns)
			if err := cluster.Client.Create(ctx, obj, client.DryRunAll); err != nil {
				t.Errorf("%s: %s %s rejected: %v", file, obj.GetKind(), obj.GetName(), err)
			}
		}
	}
}
