package contract

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// ClusterDomainRule says in words what ValidClusterDomain accepts; its
// errors quote it, and flag help may too.
const ClusterDomainRule = "a DNS subdomain such as cluster.local (lowercase letters, digits, '-' and '.'; " +
	"labels of 1 to 63 characters, each starting and ending with a letter or digit; at most 253 characters), " +
	"optionally with one trailing dot"

// ValidClusterDomain checks a cluster DNS domain ("cluster.local"): after
// one trailing dot is trimmed it must be a DNS-1123 subdomain whose labels
// are DNS labels (IsDNS1123Subdomain alone lets a label exceed the 63 bytes
// DNS can encode, RFC 1035 2.3.4). Why:
// seed-discovery appends it to "<service>.<namespace>.svc." and queries the
// result as an absolute name, so an empty label (".cluster.local",
// "cluster..local", "cluster.local..") or a character DNS names cannot hold
// gives a name no resolver answers, and seed-discovery would retry until its
// timeout instead of failing as a configuration error.
//
// The empty string is invalid here; callers that treat empty as "not set"
// (seed-discovery falls back to resolv.conf) check that first. The chart's
// values.schema.json (seedDiscovery.clusterDomain) holds the same rule as a
// pattern; TestSchemaClusterDomainAgrees keeps the two in step.
func ValidClusterDomain(s string) error {
	d := strings.TrimSuffix(s, ".")
	valid := len(validation.IsDNS1123Subdomain(d)) == 0
	for label := range strings.SplitSeq(d, ".") {
		valid = valid && len(label) <= validation.DNS1123LabelMaxLength
	}
	if valid {
		return nil
	}
	return fmt.Errorf("cluster domain %q is invalid: it must be %s", s, ClusterDomainRule)
}
