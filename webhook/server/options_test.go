package server

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParseFlagsLastWins(t *testing.T) {
	o, err := ParseFlags([]string{
		"--port=9443", "--seed-discovery-image=a:1",
		"--seed-discovery-requests=cpu=10m,memory=16Mi",
		"--port=10443", "--seed-discovery-image=b:2",
		"--seed-discovery-requests=memory=8Mi",
	}, env(nil), "v1", &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.Port != 10443 || o.Mutation.SeedDiscoveryImage != "b:2" {
		t.Errorf("last flag must win: port=%d image=%s", o.Port, o.Mutation.SeedDiscoveryImage)
	}
	if len(o.Mutation.Resources.Requests) != 1 || o.Mutation.Resources.Requests.Memory().String() != "8Mi" {
		t.Errorf("a repeated resource flag must replace the list: %v", o.Mutation.Resources.Requests)
	}
	if o.Mutation.Version != "v1" {
		t.Errorf("version %q", o.Mutation.Version)
	}
}

func TestParseFlagsNamespaceExcluded(t *testing.T) {
	o, err := ParseFlags([]string{"--excluded-namespaces=kube-system,infra"}, env(map[string]string{"POD_NAMESPACE": "peergroup-system"}), "v", &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(o.Mutation.ExcludedNamespaces, ","); got != "kube-system,infra,peergroup-system" {
		t.Errorf("excluded = %s", got)
	}
}

func TestParseFlagsErrors(t *testing.T) {
	cases := map[string][]string{
		"is not a port number": {"--port=0"},
		"must not be empty":    {"--seed-discovery-image="},
		"must be Always":       {"--seed-discovery-image-pull-policy=Sometimes"},
		`--cluster-domain: cluster domain ".cluster.local" is invalid`: {"--cluster-domain=.cluster.local"},
		`cluster domain "cluster..local" is invalid`:                   {"--cluster-domain=cluster..local"},
		"is not name=quantity":                                         {"--seed-discovery-limits=cpu"},
		"quantity for memory":                                          {"--seed-discovery-limits=memory=lots"},
		"unexpected arguments":                                         {"extra"},
		"flag provided but not defined":                                {"--nope"},
		// A 30-year certificate makes a 300-year CA: time.Duration overflows.
		"--cert-validity 262800h0m0s is outside":     {"--cert-validity=262800h"},
		"--cert-validity 5s is outside":              {"--cert-validity=5s", "--cert-resync-interval=100ms"},
		"at least 8 times":                           {"--cert-validity=1m", "--cert-resync-interval=10s"},
		"must be positive":                           {"--cert-resync-interval=0s"},
		"--client-cert-names needs --client-ca-file": {"--client-cert-names=kube-apiserver"},
		"--client-cert-names gives no name":          {"--client-ca-file=/ca.crt", "--client-cert-names= , "},
	}
	for want, args := range cases {
		var stderr bytes.Buffer
		_, err := ParseFlags(args, env(nil), "v", &stderr)
		if err == nil || !strings.Contains(err.Error()+stderr.String(), want) {
			t.Errorf("args %q: error %v, want %q", args, err, want)
		}
	}
}

func TestTrimCached(t *testing.T) {
	svc := &corev1.Service{}
	svc.Name, svc.Namespace, svc.ResourceVersion = "cassandra", "db", "7"
	svc.Annotations = map[string]string{"big": strings.Repeat("x", 1000)}
	svc.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	svc.Spec.ClusterIP = "None"
	svc.Spec.Ports = []corev1.ServicePort{{Name: "gossip", Port: 1, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(7), AppProtocol: ptr.To("x")}}
	got, err := trimCached(svc)
	if err != nil {
		t.Fatal(err)
	}
	trimmed := got.(*corev1.Service)
	if trimmed.Name != "cassandra" || trimmed.Namespace != "db" || trimmed.Spec.ClusterIP != "None" || trimmed.Annotations != nil || trimmed.ManagedFields != nil ||
		!reflect.DeepEqual(trimmed.Spec.Ports, []corev1.ServicePort{{Name: "gossip", Port: 1, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(7)}}) {
		t.Errorf("trimmed Service %+v", trimmed)
	}
	ns := &metav1.PartialObjectMetadata{}
	ns.Name, ns.Labels, ns.Annotations = "db", map[string]string{"peergroup.dev/group": "cassandra"}, map[string]string{"a": "b"}
	got, _ = trimCached(ns)
	if m := got.(*metav1.PartialObjectMetadata); m.Labels["peergroup.dev/group"] != "cassandra" || m.Annotations != nil {
		t.Errorf("trimmed namespace %+v", m)
	}
	// A peer pod's metadata keeps its deletionTimestamp (TerminatingPeers),
	// its creationTimestamp and the Service annotation (MissingServices).
	now := metav1.Now()
	pod := &metav1.PartialObjectMetadata{}
	pod.Name, pod.DeletionTimestamp, pod.CreationTimestamp, pod.Annotations = "m", &now, now, map[string]string{"a": "b"}
	got, _ = trimCached(pod)
	if m := got.(*metav1.PartialObjectMetadata); m.DeletionTimestamp == nil || m.CreationTimestamp != now || m.Annotations != nil {
		t.Errorf("trimmed pod metadata %+v", m)
	}
	pod.Annotations = map[string]string{"a": "b", "peergroup.dev/service": "shared"}
	got, _ = trimCached(pod)
	if m := got.(*metav1.PartialObjectMetadata); !reflect.DeepEqual(m.Annotations, map[string]string{"peergroup.dev/service": "shared"}) {
		t.Errorf("trimmed pod annotations %v", m.Annotations)
	}
}

// The bounds of --cert-validity: the extremes a user may give are accepted,
// and so are the short values tests rotate with.
func TestParseFlagsCertValidityBounds(t *testing.T) {
	for _, args := range [][]string{
		{"--cert-validity=87600h"},
		{"--cert-validity=1h"},
		{"--cert-validity=10s", "--cert-resync-interval=1s"},
		{"--cert-validity=12s", "--cert-resync-interval=300ms"},
	} {
		if _, err := ParseFlags(args, env(nil), "v", &bytes.Buffer{}); err != nil {
			t.Errorf("args %q: %v", args, err)
		}
	}
}

func TestParseFlagsClientAuth(t *testing.T) {
	o, err := ParseFlags([]string{"--client-ca-file=/etc/peergroup/client-ca/ca.crt", "--client-cert-names=a, b"}, env(nil), "v", &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if !o.ClientAuth.Enabled() || o.ClientAuth.CAFile != "/etc/peergroup/client-ca/ca.crt" || strings.Join(o.ClientAuth.Names, "|") != "a|b" {
		t.Errorf("client auth %+v", o.ClientAuth)
	}
	if o, _ := ParseFlags(nil, env(nil), "v", &bytes.Buffer{}); o.ClientAuth.Enabled() {
		t.Error("client certificates required by default")
	}
}
