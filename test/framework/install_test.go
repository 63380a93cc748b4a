package framework

import (
	"slices"
	"strings"
	"testing"
)

func TestDocCommands(t *testing.T) {
	doc := "# Title\n\n## Use it\n\n```sh\n# a comment line\nhelm install a \\\n  --wait   # trailing\n\n  #indented comment\nkubectl get pods\n```\n\n" +
		"### Upgrade and uninstall\nText.\n\n```sh\nhelm upgrade a --version 2\n```\n\n## Other\n\n```sh\necho other\n```\n" +
		"## Empty\n\n## Later\n```sh\necho later\n```\n"
	for _, tc := range []struct {
		heading string
		want    []string
		err     bool
	}{
		{"## Use it", []string{"helm install a --wait", "kubectl get pods"}, false},
		{"### Upgrade and uninstall", []string{"helm upgrade a --version 2"}, false},
		{"## Other", []string{"echo other"}, false},
		// A heading without a block of its own never takes the next
		// section's.
		{"## Empty", nil, true},
		{"## Missing", nil, true},
	} {
		got, err := docCommands(strings.NewReader(doc), "doc.md", tc.heading)
		if (err != nil) != tc.err || !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, %v; want %q (error %v)", tc.heading, got, err, tc.want, tc.err)
		}
	}
}
