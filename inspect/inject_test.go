package inspect

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/peergroup/peergroup/webhook/admit"
)

var update = flag.Bool("update", false, "rewrite the golden files under inspect/testdata/inject")

const injectFixtureDir = "testdata/inject"

// TestInjectGolden runs `peergroup inject`'s library over real-world
// manifests and compares the output, as objects, with the golden files
// (go test ./inspect -run InjectGolden -update rewrites them).
func TestInjectGolden(t *testing.T) {
	cases := []struct {
		name, input, nsGroup string
		injected             []string
		services             int
	}{
		{"cassandra-statefulset", "../docs/examples/cassandra-statefulset.yaml", "", []string{"StatefulSet/cassandra"}, 1},
		{"akka-deployment", "../docs/examples/akka-deployment.yaml", "", []string{"Deployment/akka"}, 1},
		{"cronjob", injectFixtureDir + "/cronjob.yaml", "", []string{"CronJob/db/cassandra-repair"}, 1},
		{"list", injectFixtureDir + "/list.yaml", "", []string{"StatefulSet/search/es"}, 1},
		{"redis-pod-namespace-group", injectFixtureDir + "/redis-pod.json", "redis", []string{"Pod/redis-0"}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in, err := os.ReadFile(tc.input)
			if err != nil {
				t.Fatal(err)
			}
			cfg := admit.DefaultConfig()
			cfg.Version = "0.1.0"
			out, res, err := InjectManifests(in, InjectOptions{Config: cfg, NamespaceGroup: tc.nsGroup, DefaultNamespace: "default"})
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(res.Injected, ",") != strings.Join(tc.injected, ",") || len(res.Services) != tc.services {
				t.Errorf("injected %v, %d Services; want %v, %d", res.Injected, len(res.Services), tc.injected, tc.services)
			}
			golden := filepath.Join(injectFixtureDir, tc.name+".golden.yaml")
			if *update {
				if err := os.WriteFile(golden, out, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got, exp := documents(t, out), documents(t, want); !equality.Semantic.DeepEqual(got, exp) {
				t.Errorf("output differs from %s:\n%s", golden, out)
			}
			// The output is the webhook's own result: injecting it again
			// changes nothing.
			again, res2, err := InjectManifests(out, InjectOptions{Config: cfg, NamespaceGroup: tc.nsGroup, DefaultNamespace: "default"})
			if err != nil || !bytes.Equal(again, out) || len(res2.Injected) != 0 {
				t.Errorf("injecting the output again changed it (%v, injected %v)", err, res2.Injected)
			}
		})
	}
}

// documents reads a stream with kubectl's own decoder, independent of the
// splitter under test.
func documents(t *testing.T, stream []byte) []any {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(stream), 4096)
	var out []any
	for {
		var v any
		if err := dec.Decode(&v); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatal(err)
		}
		if v != nil {
			out = append(out, v)
		}
	}
}

// Non-members pass through byte for byte, comments and layout included.
func TestInjectLeavesNonMembersByteIdentical(t *testing.T) {
	in, err := os.ReadFile(filepath.Join(injectFixtureDir, "non-members.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out, res, err := InjectManifests(in, InjectOptions{Config: admit.DefaultConfig(), DefaultNamespace: "default"})
	if err != nil || !bytes.Equal(in, out) || len(res.Injected) != 0 {
		t.Errorf("non-members changed (%v):\n%s", err, out)
	}
	// In a mixed stream, the untouched documents keep their bytes too.
	mixed := append(append([]byte{}, in...), []byte("---\napiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {peergroup.dev/group: g}}\nspec: {containers: [{name: c, image: x}]}\n")...)
	out, _, err = InjectManifests(mixed, InjectOptions{Config: admit.DefaultConfig(), DefaultNamespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range []string{"name: web   # trailing comment kept", "spec: {selector: {app: web}, ports: [{port: 80}]}"} {
		if !bytes.Contains(out, []byte(part)) {
			t.Errorf("untouched document lost %q:\n%s", part, out)
		}
	}
}

// Bad members stop the whole run with the object named; nothing is output.
func TestInjectErrorsNameTheObject(t *testing.T) {
	cases := map[string]string{
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: apps}\nspec: {template: {metadata: {labels: {peergroup.dev/group: Bad}}, spec: {containers: [{name: c}]}}}\n": `Deployment/apps/d: peergroup: pod label peergroup.dev/group value "Bad" is invalid`,
		"apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {peergroup.dev/group: g}, annotations: {peergroup.dev/seed-count: \"0\"}}\nspec: {containers: [{name: c}]}\n":                "Pod/p: peergroup: annotation peergroup.dev/seed-count",
		"apiVersion: example.com/v1\nkind: Pod\nmetadata: {name: p, labels: {peergroup.dev/group: g}}\nspec: {containers: [{name: c}]}\n":                                                    `apiVersion "example.com/v1" kind Pod is not a v1 Pod`,
		"kind: Pod\nmetadata: [1, 2]\n": "document 1",
		"\tnot: [yaml":                  "document 1",
	}
	for in, want := range cases {
		out, _, err := InjectManifests([]byte(in), InjectOptions{Config: admit.DefaultConfig(), DefaultNamespace: "default"})
		if err == nil || !strings.Contains(err.Error(), want) || out != nil {
			t.Errorf("%q: %v, want an error containing %q and no output", in, err, want)
		}
	}
}

// Every document read comes out: a concatenated JSON stream (two pods of
// one group, and a non-member) gives the Service and all three objects,
// counted by kubectl's decoder; a comment on a separator line is kept.
func TestInjectKeepsEveryDocument(t *testing.T) {
	pod := func(name string, labels string) string {
		return `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"` + name + `","labels":{` + labels + `}},"spec":{"containers":[{"name":"c","image":"x"}]}}`
	}
	member := `"peergroup.dev/group":"g"`
	cases := map[string]struct {
		in       string
		objects  int
		contains []string
	}{
		"concatenated JSON":          {pod("a", member) + pod("b", member) + "\n" + pod("c", ""), 4, nil},
		"JSON objects on lines":      {pod("a", member) + "\n" + pod("b", member) + "\n", 3, nil},
		"comment on a separator":     {"--- # the first pod\n" + pod("a", member) + "\n--- # the second\n" + pod("b", "") + "\n", 3, []string{"--- # the first pod\n", "--- # the second\n"}},
		"JSON, then a YAML document": {pod("a", member) + "\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: b}\nspec: {containers: [{name: c, image: x}]}\n", 3, nil},
		"null documents":             {"null\n---\n" + pod("a", member) + "\n---\n~\n", 2, nil},
		"YAML with an empty trailer": {"apiVersion: v1\nkind: Pod\nmetadata: {name: a, labels: {peergroup.dev/group: g}}\nspec: {containers: [{name: c, image: x}]}\n---\n# nothing\n", 2, nil},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			out, res, err := InjectManifests([]byte(tc.in), InjectOptions{Config: admit.DefaultConfig(), DefaultNamespace: "db"})
			if err != nil {
				t.Fatal(err)
			}
			if got := len(documents(t, out)); got != tc.objects {
				t.Errorf("%d objects out, want %d (the Service and every object in):\n%s", got, tc.objects, out)
			}
			if len(res.Services) != 1 {
				t.Errorf("services %v", res.Services)
			}
			for _, c := range tc.contains {
				if !strings.Contains(string(out), c) {
					t.Errorf("output lacks %q:\n%s", c, out)
				}
			}
		})
	}
}

// The CLI decides on a template as the webhook will on its pods: a
// Deployment's pods come from a ReplicaSet, so founding ordinal0 is refused
// by inject and explain as the webhook refuses it; a StatefulSet's is not.
func TestTemplatesDecidedAsTheirPods(t *testing.T) {
	workload := func(kind string) []byte {
		return []byte("apiVersion: apps/v1\nkind: " + kind + "\nmetadata: {name: w, namespace: db}\nspec:\n  template:\n    metadata:\n      labels: {peergroup.dev/group: g}\n      annotations: {peergroup.dev/founding: ordinal0}\n    spec: {containers: [{name: c, image: x}]}\n")
	}
	if _, _, err := InjectManifests(workload("Deployment"), InjectOptions{Config: admit.DefaultConfig()}); err == nil || !strings.Contains(err.Error(), "ordinal0 needs StatefulSet pods") {
		t.Errorf("inject of a Deployment with ordinal0: %v", err)
	}
	if _, res, err := InjectManifests(workload("StatefulSet"), InjectOptions{Config: admit.DefaultConfig()}); err != nil || len(res.Injected) != 1 {
		t.Errorf("inject of a StatefulSet with ordinal0: %v %v", res.Injected, err)
	}
	// A reference written into the template is not what the controller
	// sets: the StatefulSet's pods still come from the StatefulSet.
	stray := strings.Replace(string(workload("StatefulSet")), "      labels:", "      ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: x, uid: u, controller: true}]\n      labels:", 1)
	if _, res, err := InjectManifests([]byte(stray), InjectOptions{Config: admit.DefaultConfig()}); err != nil || len(res.Injected) != 1 {
		t.Errorf("a StatefulSet template carrying a stray controller reference: %v %v", res.Injected, err)
	}
	pod, err := PodFromManifest(workload("Deployment"))
	if err != nil {
		t.Fatal(err)
	}
	if e := Explain(ExplainInput{Pod: pod, Config: admit.DefaultConfig()}); e.Verdict != VerdictDenied || !strings.Contains(e.Reason, "ordinal0") {
		t.Errorf("explain: %s: %s", e.Verdict, e.Reason)
	}
	// Hostname seeds: an Indexed Job names each pod <job>-<index>, a
	// plain Job's pods share the template's name.
	job := func(mode string) []byte {
		return []byte("apiVersion: batch/v1\nkind: Job\nmetadata: {name: train, namespace: db}\nspec:\n  completionMode: " + mode + "\n  template:\n    metadata:\n      labels: {peergroup.dev/group: g}\n      annotations: {peergroup.dev/seed-address: hostname}\n    spec: {subdomain: g, restartPolicy: Never, containers: [{name: c, image: x}]}\n")
	}
	out, res, err := InjectManifests(job("Indexed"), InjectOptions{Config: admit.DefaultConfig()})
	if err != nil || len(res.Injected) != 1 {
		t.Errorf("inject of an Indexed Job with hostname seeds: %v %v", res.Injected, err)
	}
	if strings.Contains(string(out), "hostname: train-0") || strings.Contains(string(out), "job-completion-index") {
		t.Errorf("the controller's hostname or index written into the template:\n%s", out)
	}
	shared := strings.Replace(string(job("NonIndexed")), "subdomain: g,", "hostname: train, subdomain: g,", 1)
	if _, _, err := InjectManifests([]byte(shared), InjectOptions{Config: admit.DefaultConfig()}); err == nil || !strings.Contains(err.Error(), "a pod created by a Job") {
		t.Errorf("inject of a non-indexed Job with hostname seeds: %v", err)
	}
}

// explain reads the namespace's LimitRanges as the webhook does.
func TestExplainSeesLimitRanges(t *testing.T) {
	pod, err := PodFromManifest([]byte("apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: db, labels: {peergroup.dev/group: g}}\nspec: {containers: [{name: c, image: x}]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	small := corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "small"}, Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
		Type: corev1.LimitTypeContainer, Max: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m")},
	}}}}
	e := Explain(ExplainInput{Pod: pod, Config: admit.DefaultConfig(), LimitRanges: []corev1.LimitRange{small}})
	if e.Verdict != VerdictDenied || !strings.Contains(e.Reason, "LimitRange db/small would reject") {
		t.Errorf("%s: %s", e.Verdict, e.Reason)
	}
}

// explain warns about configured pull secrets the pod's namespace lacks.
func TestExplainWarnsAboutMissingPullSecrets(t *testing.T) {
	pod, err := PodFromManifest([]byte("apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: db, labels: {peergroup.dev/group: g}}\nspec: {containers: [{name: c, image: x}]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := admit.DefaultConfig()
	cfg.ImagePullSecrets = []string{"regcred", "mirror", "there"}
	e := Explain(ExplainInput{Pod: pod, Config: cfg, PullSecrets: map[string]string{"regcred": "missing", "mirror": "not checked: forbidden"}})
	want := []string{`imagePullSecret "regcred" does not exist in namespace db`, `imagePullSecret "mirror" in namespace db not checked: forbidden`}
	if e.Verdict != VerdictInjected || len(e.Warnings) != 2 || !strings.Contains(e.Warnings[0], want[0]) || !strings.Contains(e.Warnings[1], want[1]) {
		t.Errorf("%s, warnings %q; want %q", e.Verdict, e.Warnings, want)
	}
}
