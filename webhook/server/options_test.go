package server

import (
	"bytes"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
		"is not a port number":          {"--port=0"},
		"must not be empty":             {"--seed-discovery-image="},
		"must be Always":                {"--seed-discovery-image-pull-policy=Sometimes"},
		"is not name=quantity":          {"--seed-discovery-limits=cpu"},
		"quantity for memory":           {"--seed-discovery-limits=memory=lots"},
		"unexpected arguments":          {"extra"},
		"flag provided but not defined": {"--nope"},
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
	svc.Spec.Ports = []corev1.ServicePort{{Port: 1}}
	got, err := trimCached(svc)
	if err != nil {
		t.Fatal(err)
	}
	trimmed := got.(*corev1.Service)
	if trimmed.Name != "cassandra" || trimmed.Namespace != "db" || trimmed.Spec.ClusterIP != "None" || trimmed.Annotations != nil || trimmed.ManagedFields != nil || trimmed.Spec.Ports != nil {
		t.Errorf("trimmed Service %+v", trimmed)
	}
	ns := &metav1.PartialObjectMetadata{}
	ns.Name, ns.Labels, ns.Annotations = "db", map[string]string{"peergroup.dev/group": "cassandra"}, map[string]string{"a": "b"}
	got, _ = trimCached(ns)
	if m := got.(*metav1.PartialObjectMetadata); m.Labels["peergroup.dev/group"] != "cassandra" || m.Annotations != nil {
		t.Errorf("trimmed namespace %+v", m)
	}
}
