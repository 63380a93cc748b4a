package e2e

import (
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
