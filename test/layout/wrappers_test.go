package layout

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestApplicationsDocShowsTheWrappers: docs/applications.md shows each
// real server's wrapper exactly as the manifest the tests apply holds it,
// so the page a user copies from is what runs in CI.
func TestApplicationsDocShowsTheWrappers(t *testing.T) {
	doc, err := os.ReadFile("../../docs/applications.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"redis-cluster.yaml", "rabbitmq.yaml", "jgroups.yaml", "serf.yaml"} {
		data, err := os.ReadFile(filepath.Join("../../docs/examples", name))
		if err != nil {
			t.Fatal(err)
		}
		// StatefulSet and Deployment share the template's path.
		var w struct {
			Spec struct {
				Template struct {
					Spec struct {
						Containers []struct{ Args []string }
					}
				}
			}
		}
		if err := yaml.Unmarshal(data, &w); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(w.Spec.Template.Spec.Containers) == 0 || len(w.Spec.Template.Spec.Containers[0].Args) != 1 {
			t.Fatalf("%s: want one container whose one arg is the wrapper", name)
		}
		block := "```sh\n" + strings.TrimRight(w.Spec.Template.Spec.Containers[0].Args[0], "\n") + "\n```"
		if !strings.Contains(string(doc), block) {
			t.Errorf("docs/applications.md does not show the wrapper of docs/examples/%s as written:\n%s", name, block)
		}
	}
}
