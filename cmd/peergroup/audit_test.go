package main

import (
	"context"
	"os"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

// The chart names its configuration after the release: with the default
// name absent, the one labelled as peergroup's is taken; several are an
// error naming them; none is NotFound; a name given is only that name.
func TestWebhookConfigFollowsTheRelease(t *testing.T) {
	mwc := func(name string, labelled bool) client.Object {
		m := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if labelled {
			m.Labels = map[string]string{"app.kubernetes.io/name": "peergroup"}
		}
		return m
	}
	for _, tc := range []struct {
		name     string
		objects  []client.Object
		ask      string
		want     string // the configuration found; "" for an error
		notFound bool
		err      string
	}{
		{"the default name", []client.Object{mwc("peergroup", true), mwc("pg-peergroup", true)}, "peergroup", "peergroup", false, ""},
		{"a release named otherwise", []client.Object{mwc("pg-peergroup", true), mwc("other", false)}, "peergroup", "pg-peergroup", false, ""},
		{"two releases", []client.Object{mwc("a-peergroup", true), mwc("b-peergroup", true)}, "peergroup", "", false, "2 peergroup webhook configurations (a-peergroup, b-peergroup): name one with --webhook-config"},
		{"none", []client.Object{mwc("other", false)}, "peergroup", "", true, ""},
		{"a name given is that name only", []client.Object{mwc("pg-peergroup", true)}, "mine", "", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(tc.objects...).Build()
			got, err := webhookConfig(context.Background(), c, tc.ask)
			switch {
			case tc.want != "" && (err != nil || got.Name != tc.want):
				t.Errorf("got %v, %v; want %s", got, err, tc.want)
			case tc.notFound && !apierrors.IsNotFound(err):
				t.Errorf("err %v, want NotFound", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("err %v, want %q", err, tc.err)
			}
		})
	}
}

// explain's one argument: a file when it is "-", an existing file, or a
// manifest name that cannot be NAMESPACE/NAME; a pod name may end in .json.
func TestExplainArgument(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/pod.yaml"
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for arg, want := range map[string]bool{
		"-": true, file: true, "pod.yaml": true, "missing.yml": true, "./pod.json": true,
		"db/cassandra-0": false, "db/x.json": false, dir: false, "db/Pod.yaml": true,
	} {
		if got := isManifestArg(arg); got != want {
			t.Errorf("isManifestArg(%q) = %v, want %v", arg, got, want)
		}
	}
}
