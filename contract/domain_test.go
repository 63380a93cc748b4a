package contract

import (
	"os"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chartutil"
)

// clusterDomains are the values ValidClusterDomain and the chart schema are
// held to, with the verdict both must give.
var clusterDomains = []struct {
	domain string
	valid  bool
}{
	{"cluster.local", true},
	{"cluster.local.", true},
	{"corp.example", true},
	{"k8s-1.corp.example", true},
	{"local", true},
	{"0.example", true},
	{strings.Repeat("a", 63) + ".local", true},
	{"local." + strings.Repeat("a", 63), true},
	{strings.Repeat("a.", 126) + "a", true}, // 253 characters
	{".cluster.local", false},
	{"cluster..local", false},
	{"cluster.local..", false},
	{".", false},
	{"..", false},
	{"Cluster.Local", false},
	{"cluster.local ", false},
	{" cluster.local", false},
	{"cluster_local", false},
	{"-cluster.local", false},
	{"cluster-.local", false},
	{"cluster.local/", false},
	{"cluster.local.svc\n", false},
	{strings.Repeat("a", 64) + ".local", false}, // a label DNS cannot encode
	{"local." + strings.Repeat("a", 64) + ".", false},
	{strings.Repeat("a.", 127), true},         // 254 characters: 253 once the trailing dot is trimmed
	{strings.Repeat("a.", 127) + "a", false},  // 255 characters
	{strings.Repeat("a.", 126) + "aa", false}, // 254 characters without a trailing dot
	{strings.Repeat("a.", 127) + ".", false},  // 255 characters ending in two dots
}

func TestValidClusterDomain(t *testing.T) {
	for _, tc := range clusterDomains {
		err := ValidClusterDomain(tc.domain)
		if (err == nil) != tc.valid {
			t.Errorf("ValidClusterDomain(%q) = %v, want valid %v", tc.domain, err, tc.valid)
		}
		if err != nil && !strings.Contains(err.Error(), ClusterDomainRule) {
			t.Errorf("error %q does not state the rule", err)
		}
	}
	if ValidClusterDomain("") == nil {
		t.Error("empty domain accepted")
	}
}

// The chart refuses at install what the webhook's --cluster-domain and
// seed-discovery refuse at run time: its schema's pattern for
// seedDiscovery.clusterDomain gives ValidClusterDomain's verdict, and empty
// (resolv.conf) passes.
func TestSchemaClusterDomainAgrees(t *testing.T) {
	schema, err := os.ReadFile("../charts/peergroup/values.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	validate := func(domain string) error {
		return chartutil.ValidateAgainstSingleSchema(chartutil.Values{"seedDiscovery": map[string]any{"clusterDomain": domain}}, schema)
	}
	if err := validate(""); err != nil {
		t.Errorf("schema refuses the empty default: %v", err)
	}
	for _, tc := range clusterDomains {
		if err := validate(tc.domain); (err == nil) != tc.valid {
			t.Errorf("schema on %q: %v, want valid %v", tc.domain, err, tc.valid)
		}
	}
}
