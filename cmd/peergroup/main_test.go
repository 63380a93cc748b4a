package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/inspect"
	"github.com/peergroup/peergroup/internal/release"
	"github.com/peergroup/peergroup/test/framework"
	"github.com/peergroup/peergroup/webhook"
	"github.com/peergroup/peergroup/webhook/admit"
)

// The CLI against a real kube-apiserver: audit finds exactly the
// uninjected members, explain reads the live webhook configuration,
// namespace labels and Services, and inject's output is accepted by the
// API server as kubectl apply would send it.
func TestCLIAgainstAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a kube-apiserver")
	}
	ctx := context.Background()
	cluster, err := framework.StartCluster()
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Stop()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := cluster.WriteKubeconfig(kubeconfig); err != nil {
		t.Fatal(err)
	}
	cli := func(stdin string, args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(ctx, args, strings.NewReader(stdin), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	for ns, labels := range map[string]map[string]string{"db": {contract.GroupLabel: "cassandra"}, "apps": nil, "search": nil, "peergroup-system": nil} {
		if _, err := cluster.CreateNamespace(ctx, ns, labels); err != nil {
			t.Fatal(err)
		}
	}

	// No webhook registered yet: pods are admitted as they are.
	pod := func(ns, name string, labels map[string]string) *corev1.Pod {
		p := &corev1.Pod{}
		p.Namespace, p.Name, p.Labels = ns, name, labels
		p.Spec.Containers = []corev1.Container{{Name: "c", Image: "registry.example/app:1"}}
		return p
	}
	injectedYAML, _, err := inspect.InjectManifests([]byte("apiVersion: v1\nkind: Pod\nmetadata: {name: done, namespace: db}\nspec: {containers: [{name: c, image: registry.example/app:1}]}\n"),
		inspect.InjectOptions{Config: admit.DefaultConfig(), NamespaceGroup: "cassandra"})
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range append(decodeAll(t, injectedYAML),
		pod("db", "missed", nil),
		pod("apps", "labelled", map[string]string{contract.GroupLabel: "akka"}),
		pod("apps", "plain", nil),
		pod("apps", "opted-out", map[string]string{contract.InjectLabel: "false"}),
		pod("peergroup-system", "own", map[string]string{contract.GroupLabel: "x"}),
	) {
		if err := cluster.Client.Create(ctx, obj); err != nil {
			t.Fatalf("create %s: %v", obj.GetName(), err)
		}
	}

	t.Run("audit", func(t *testing.T) {
		code, out, stderr := cli("", "audit", "--kubeconfig", kubeconfig)
		if code != 1 || !strings.Contains(out, "2 group members without the injection") ||
			!strings.Contains(out, "namespace apps") || !strings.Contains(out, "\n  labelled ") || !strings.Contains(out, "\n  missed ") ||
			strings.Contains(out, "\n  plain") || strings.Contains(out, "\n  opted-out") || strings.Contains(out, "\n  done") || strings.Contains(out, "\n  own") {
			t.Errorf("audit: exit %d\n%s%s", code, out, stderr)
		}
		code, out, _ = cli("", "audit", "--kubeconfig", kubeconfig, "-n", "apps", "--output", "json")
		var findings []inspect.Finding
		if err := json.Unmarshal([]byte(out), &findings); err != nil || code != 1 || len(findings) != 1 || findings[0].Pod != "labelled" || findings[0].Group != "akka" {
			t.Errorf("audit -n apps --output json: exit %d %v\n%s", code, err, out)
		}
		for _, name := range []string{"missed"} {
			_ = cluster.Client.Delete(ctx, pod("db", name, nil))
		}
		if code, out, _ := cli("", "audit", "--kubeconfig", kubeconfig, "-n", "db"); code != 0 || !strings.Contains(out, "every group member carries the injection") {
			t.Errorf("audit of a clean namespace: exit %d\n%s", code, out)
		}
	})

	// The chart's webhook configuration, as installed (it is only read).
	rendered, err := framework.Render("peergroup", "peergroup-system", map[string]any{"certificates": map[string]any{"mode": "certManager"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := framework.RegisterWebhook(ctx, cluster, rendered, "https://127.0.0.1:1"+webhook.Path, nil); err != nil {
		t.Fatal(err)
	}
	web := &corev1.Service{Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	web.Namespace, web.Name = "db", "web"
	if err := cluster.Client.Create(ctx, web); err != nil {
		t.Fatal(err)
	}

	t.Run("explain", func(t *testing.T) {
		cases := []struct {
			name  string
			args  []string
			stdin string
			code  int
			says  []string
		}{
			{"injected pod in the cluster", []string{"db/done"}, "", 0, []string{"pod db/done: already injected", "service: cassandra (exists, headless: used as is)", "webhook entry pod-label.peergroup.dev matches"}},
			{"namespace member from a file", []string{"-f", "-", "--namespace", "db"}, "apiVersion: v1\nkind: Pod\nmetadata: {name: new}\nspec: {containers: [{name: c, image: x, ports: [{containerPort: 7000}]}]}\n", 0,
				[]string{"pod db/new: would be injected", "group: cassandra (from the namespace label)", "service: cassandra (exists, headless: used as is)", "webhook entry namespace-label.peergroup.dev matches", "webhook entry pod-label.peergroup.dev does not match: objectSelector"}},
			{"group of a non-headless Service", []string{"-f", "-"}, "apiVersion: v1\nkind: Pod\nmetadata: {name: w, namespace: db, labels: {peergroup.dev/group: web}}\nspec: {containers: [{name: c, image: x}]}\n", 1,
				[]string{"would be denied", "Service db/web exists and is not headless"}},
			{"not a member", []string{"-f", "-", "--namespace", "apps"}, "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {template: {metadata: {labels: {app: d}}, spec: {containers: [{name: c, image: x}]}}}\n", 0,
				[]string{"pod apps/d-*: not injected", "no peergroup.dev/group label on the pod or its namespace", "does not match: namespaceSelector"}},
			{"invalid group", []string{"-f", "-", "--namespace", "apps"}, "apiVersion: v1\nkind: Pod\nmetadata: {name: b, labels: {peergroup.dev/group: B}}\nspec: {containers: [{name: c, image: x}]}\n", 1,
				[]string{"would be denied", `value "B" is invalid`}},
			{"excluded namespace", []string{"--excluded-namespaces", "kube-system,peergroup-system", "peergroup-system/own"}, "", 0, []string{"not injected", "namespace peergroup-system is excluded"}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				code, out, stderr := cli(tc.stdin, append([]string{"explain", "--kubeconfig", kubeconfig}, tc.args...)...)
				if code != tc.code {
					t.Errorf("exit %d, want %d\n%s%s", code, tc.code, out, stderr)
				}
				for _, s := range tc.says {
					if !strings.Contains(out, s) {
						t.Errorf("output does not say %q:\n%s%s", s, out, stderr)
					}
				}
			})
		}
	})

	t.Run("inject output accepted", func(t *testing.T) {
		// As on a fresh install: the Services inject emits do not exist yet.
		existing := &corev1.Service{}
		existing.Namespace, existing.Name = "db", "cassandra"
		if err := cluster.Client.Delete(ctx, existing); err != nil {
			t.Fatal(err)
		}
		inputs := []string{"../../docs/examples/cassandra-statefulset.yaml", "../../docs/examples/akka-deployment.yaml", "../../inspect/testdata/inject/cronjob.yaml", "../../inspect/testdata/inject/list.yaml"}
		for _, in := range inputs {
			code, out, stderr := cli("", "inject", "-f", in)
			if code != 0 {
				t.Fatalf("inject -f %s: exit %d: %s", in, code, stderr)
			}
			for _, obj := range decodeAll(t, []byte(out)) {
				if obj.GetNamespace() == "" {
					obj.SetNamespace("apps")
				}
				if err := cluster.Client.Create(ctx, obj, client.DryRunAll); err != nil {
					t.Errorf("%s: %s %s refused by the API server: %v", in, obj.GetObjectKind().GroupVersionKind().Kind, obj.GetName(), err)
				}
			}
		}
	})
}

// decodeAll decodes a YAML stream into objects, unwrapping Lists as
// kubectl apply does.
func decodeAll(t *testing.T, stream []byte) []client.Object {
	t.Helper()
	path := filepath.Join(t.TempDir(), "objects.yaml")
	if err := os.WriteFile(path, stream, 0o600); err != nil {
		t.Fatal(err)
	}
	docs, err := framework.DecodeFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []client.Object
	for _, d := range docs {
		if d.IsList() {
			if err := d.EachListItem(func(o runtime.Object) error {
				out = append(out, o.(*unstructured.Unstructured))
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		out = append(out, d)
	}
	if len(out) == 0 {
		t.Fatalf("no objects in %s", stream)
	}
	return out
}

// Bad usage exits 2 with a message naming the problem.
func TestCLIUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		says string
	}{
		{nil, "usage: peergroup"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"inject"}, "manifests are required: -f FILE, FILE, or - for standard input"},
		{[]string{"inject", "-f", "a.yaml", "b.yaml"}, "give one source of manifests"},
		{[]string{"inject", "a.yaml", "b.yaml"}, "give one source of manifests"},
		{[]string{"audit", "db"}, `unexpected arguments ["db"] (the namespace is -n NAMESPACE)`},
		{[]string{"check", "db"}, `unexpected arguments ["db"]`},
		{[]string{"inject", "-f", "/nonexistent.yaml"}, "read /nonexistent.yaml"},
		{[]string{"inject", "-f", "-", "--seed-discovery-image-pull-policy", "Sometimes"}, `"Sometimes" must be Always, IfNotPresent or Never`},
		{[]string{"explain"}, "give either a file (-f FILE, FILE, or - for standard input) or NAMESPACE/NAME"},
		{[]string{"explain", "-f", "-", "ns/name"}, "give either a file"},
		{[]string{"explain", "/nonexistent.yaml"}, "read /nonexistent.yaml"},
		{[]string{"explain", "--offline", "ns/name"}, "--offline needs -f"},
		{[]string{"explain", "--offline", "-f", "-"}, "no object in the input"},
		{[]string{"audit", "--output", "yaml"}, `--output "yaml": want text or json`},
	}
	for _, tc := range cases {
		var out, errOut bytes.Buffer
		code := run(context.Background(), tc.args, strings.NewReader(""), &out, &errOut)
		if code != 2 || !strings.Contains(errOut.String(), tc.says) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, errOut.String(), tc.says)
		}
	}
}

// kubectl habits: the manifest as the argument (inject FILE, explain FILE,
// - for standard input), flags before or after it, "--" ending the flags;
// and with no image flag, inject writes the image and version of the
// release the CLI was built as (the chart's), not ":dev".
func TestCLIArgumentsAnywhere(t *testing.T) {
	dir := t.TempDir()
	pod := filepath.Join(dir, "pod.yaml")
	if err := os.WriteFile(pod, []byte("apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: db, labels: {peergroup.dev/group: cassandra}}\nspec: {containers: [{name: c, image: x}]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	manifest, err := os.ReadFile(pod)
	if err != nil {
		t.Fatal(err)
	}
	cli := func(stdin string, args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	injectCases := [][]string{
		{"inject", pod},
		{"inject", pod, "--namespace", "db"},
		{"inject", "--namespace", "db", pod},
		{"inject", "-f", pod, "--namespace=db"},
		{"inject", "--namespace", "db", "--", pod},
	}
	var first string
	for _, args := range injectCases {
		code, out, errOut := cli("", args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		if first == "" {
			first = out
		} else if out != first {
			t.Errorf("%v printed other manifests than %v", args, injectCases[0])
		}
	}
	if code, out, errOut := cli(string(manifest), "inject", "-"); code != 0 || out != first {
		t.Errorf("inject - (stdin): exit %d %s", code, errOut)
	}
	wantImage := "image: " + release.Image(version)
	if !strings.Contains(first, wantImage) || !strings.Contains(first, contract.InjectedAnnotation+": "+release.Version) {
		t.Errorf("inject's default image and version are not the release's (%s, %s):\n%s", wantImage, release.Version, first)
	}
	for _, args := range [][]string{
		{"explain", pod, "--offline"},
		{"explain", "--offline", pod},
		{"explain", "--offline", "-f", pod},
	} {
		if code, out, errOut := cli("", args...); code != 0 || !strings.Contains(out, "would be injected") {
			t.Errorf("%v: exit %d, out %q, err %q", args, code, out, errOut)
		}
	}
}
