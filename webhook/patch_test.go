package webhook

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/yaml"
)

// applyBoth patches raw with the reference (diff) and the direct patch and
// returns both results decoded, as the API server would store them.
func applyBoth(t testing.TB, raw []byte, m Membership) (ref, direct *corev1.Pod, ok bool) {
	in := &corev1.Pod{}
	if err := json.Unmarshal(raw, in); err != nil {
		return nil, nil, false
	}
	out, _, err := Mutate(in, m, DefaultConfig())
	if err != nil {
		return nil, nil, false
	}
	apply := func(mode PatchMode) *corev1.Pod {
		resp := patchResponse(mode, raw, in, out, &sharedInitCache)
		if !resp.Allowed {
			t.Fatalf("%s: not allowed: %v", mode, resp.Result)
		}
		if err := resp.Complete(podRequest(raw, "CREATE", false)); err != nil {
			t.Fatal(err)
		}
		patch, err := jsonpatch.DecodePatch(resp.Patch)
		if err != nil {
			t.Fatalf("%s: decode patch: %v", mode, err)
		}
		patched, err := patch.Apply(raw)
		if err != nil {
			t.Fatalf("%s: apply: %v\npatch %s\nraw %s", mode, err, resp.Patch, raw)
		}
		pod := &corev1.Pod{}
		if err := json.Unmarshal(patched, pod); err != nil {
			t.Fatal(err)
		}
		return pod
	}
	return apply(PatchDiff), apply(PatchDirect), true
}

// apiServerForm is how the API server sends an object: encoded from its
// typed form.
func apiServerForm(raw []byte) ([]byte, bool) {
	pod := &corev1.Pod{}
	if err := json.Unmarshal(raw, pod); err != nil {
		return nil, false
	}
	out, err := json.Marshal(pod)
	return out, err == nil
}

func fixturePods(t testing.TB) [][]byte {
	files, _ := filepath.Glob(filepath.Join(fixtureDir, "*.yaml"))
	var out [][]byte
	for _, f := range files {
		if strings.HasSuffix(f, ".golden.yaml") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var fx fixture
		if err := yaml.Unmarshal(data, &fx); err != nil {
			t.Fatal(err)
		}
		out = append(out, fx.Pod)
	}
	return out
}

var fuzzGroup = Membership{Group: "cassandra", Service: "cassandra", Source: SourceNamespace}

func TestPatchEquivalence(t *testing.T) {
	pods := fixturePods(t)
	extra := []string{
		`{"metadata":{"name":"bare"},"spec":{"containers":[{"name":"a","image":"x"}]}}`,
		`{"metadata":{"name":"slashes","labels":{"a/b":"1","c~d":"2"},"annotations":{"x/y~z":"3"}},"spec":{"containers":[{"name":"a","image":"x","env":[{"name":"CASSANDRA_SERVICE","value":"other"}],"volumeMounts":[{"name":"v","mountPath":"/v"}]},{"name":"b","image":"y"}],"volumes":[{"name":"v","emptyDir":{}}],"initContainers":[{"name":"i","image":"z"}]}}`,
		`{"metadata":{"name":"same-label","labels":{"peergroup.dev/group":"other"}},"spec":{"containers":[{"name":"a","image":"x"}]}}`,
		`{"metadata":{"name":"user-emptydir"},"spec":{"volumes":[{"name":"peergroup-seeds","emptyDir":{"medium":"Memory"}}],"containers":[{"name":"a","image":"x","volumeMounts":[{"name":"peergroup-seeds","mountPath":"/var/run/peergroup"}]}]}}`,
	}
	for _, e := range extra {
		pods = append(pods, []byte(e))
	}
	checked := 0
	for _, p := range pods {
		raw, ok := apiServerForm(p)
		if !ok {
			t.Fatalf("fixture does not decode: %s", p)
		}
		ref, direct, ok := applyBoth(t, raw, fuzzGroup)
		if !ok {
			continue
		}
		checked++
		if !equality.Semantic.DeepEqual(ref, direct) {
			a, _ := yaml.Marshal(ref)
			b, _ := yaml.Marshal(direct)
			t.Errorf("direct patch differs from the diff for %s\ndiff:\n%s\ndirect:\n%s", raw, a, b)
		}
	}
	if checked < 5 {
		t.Fatalf("only %d pods checked", checked)
	}
}

// FuzzPatchEquivalence: for any pod the API server could send, the direct
// patch yields exactly the pod PatchResponseFromRaw's patch yields.
func FuzzPatchEquivalence(f *testing.F) {
	for _, p := range fixturePods(f) {
		f.Add(p)
	}
	f.Add([]byte(`{"metadata":{"labels":{"x/y":"1"}},"spec":{"containers":[{"name":"a","env":[{"name":"A"}]}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		raw, ok := apiServerForm(data)
		if !ok {
			return
		}
		ref, direct, ok := applyBoth(t, raw, fuzzGroup)
		if !ok {
			return
		}
		if !equality.Semantic.DeepEqual(ref, direct) {
			t.Fatalf("direct patch differs from the diff for %s", raw)
		}
	})
}

// sharedInitCache is shared across cases so the equivalence checks also
// cover cache hits, not only first encodings.
var sharedInitCache InitContainerCache

// If the direct patch cannot be built, the answer falls back to the diff
// when the raw object is there, and is an error when it is not (one-pass
// decode): never a patch computed against nothing.
func TestPatchResponseDirectFailure(t *testing.T) {
	in := benchPod()
	in.Spec.Containers = append(in.Spec.Containers, corev1.Container{Name: "extra"})
	out := benchPod() // one container fewer: DirectPatch refuses
	raw, _ := json.Marshal(in)
	if resp := patchResponse(PatchDirect, raw, in, out, nil); !resp.Allowed || len(resp.Patches) == 0 {
		t.Errorf("with the raw object the diff must answer: %+v", resp.Result)
	}
	resp := patchResponse(PatchDirect, nil, in, out, nil)
	if resp.Allowed || resp.Result.Code != 500 || !strings.Contains(resp.Result.Message, "build JSON patch") {
		t.Errorf("without the raw object: allowed=%v %+v", resp.Allowed, resp.Result)
	}
}
