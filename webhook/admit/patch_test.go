package admit

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/test/fixtures"
)

// applyBoth patches raw with the oracle's patch (jsonpatch's diff) and the
// direct patch and returns both results decoded, as the API server would
// store them.
func applyBoth(t testing.TB, raw []byte, m Membership) (ref, direct *corev1.Pod, ok bool) {
	in := &corev1.Pod{}
	if err := json.Unmarshal(raw, in); err != nil {
		return nil, nil, false
	}
	out, _, err := Mutate(in, m, fuzzConfig(raw))
	if err != nil {
		return nil, nil, false
	}
	// The oracle: the diff of the two encoded pods, as
	// admission.PatchResponseFromRaw (gomodules.xyz/jsonpatch/v2) makes it.
	mutated, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	resp := admission.PatchResponseFromRaw(raw, mutated)
	if !resp.Allowed {
		t.Fatalf("oracle: %s", resp.Result.Message)
	}
	diff, err := json.Marshal(resp.Patches)
	if err != nil {
		t.Fatal(err)
	}
	directOps, err := directPatch(in, out, &sharedInitCache)
	if err != nil {
		t.Fatalf("direct: %v", err)
	}
	apply := func(name string, p []byte) *corev1.Pod {
		patch, err := jsonpatch.DecodePatch(p)
		if err != nil {
			t.Fatalf("%s: decode patch: %v", name, err)
		}
		patched, err := patch.Apply(raw)
		if err != nil {
			t.Fatalf("%s: apply: %v\npatch %s\nraw %s", name, err, p, raw)
		}
		pod := &corev1.Pod{}
		if err := json.Unmarshal(patched, pod); err != nil {
			t.Fatal(err)
		}
		return pod
	}
	return apply("oracle", diff), apply("direct", directOps), true
}

var fuzzGroup = Membership{Group: "cassandra", Service: "cassandra", Source: SourceNamespace}

// fuzzConfig varies the configuration with the input, so the equivalence
// tests also cover what only a non-default configuration changes: pull
// secrets (appends to imagePullSecrets) and no fixed IDs.
func fuzzConfig(raw []byte) Config {
	cfg := DefaultConfig()
	if len(raw)%2 == 1 {
		cfg.ImagePullSecrets = []string{"regcred", "mirror"}
		cfg.FixedIDs = false
	}
	return cfg
}

func TestPatchEquivalence(t *testing.T) {
	pods := fixtures.MutatePods(t)
	extra := []string{
		`{"metadata":{"name":"bare"},"spec":{"containers":[{"name":"a","image":"x"}]}}`,
		`{"metadata":{"name":"slashes","labels":{"a/b":"1","c~d":"2"},"annotations":{"x/y~z":"3"}},"spec":{"containers":[{"name":"a","image":"x","env":[{"name":"CASSANDRA_SERVICE","value":"other"}],"volumeMounts":[{"name":"v","mountPath":"/v"}]},{"name":"b","image":"y"}],"volumes":[{"name":"v","emptyDir":{}}],"initContainers":[{"name":"i","image":"z"}]}}`,
		`{"metadata":{"name":"same-label","labels":{"peergroup.dev/group":"other"}},"spec":{"containers":[{"name":"a","image":"x"}]}}`,
		`{"metadata":{"name":"user-emptydir"},"spec":{"volumes":[{"name":"peergroup-seeds","emptyDir":{"medium":"Memory"}}],"containers":[{"name":"a","image":"x","volumeMounts":[{"name":"peergroup-seeds","mountPath":"/var/run/peergroup"}]}]}}`,
		// seed-discovery first (an insert at 0), as a sidecar, with hostname seeds.
		`{"metadata":{"name":"init-first","annotations":{"peergroup.dev/init-first":"true","peergroup.dev/refresh":"30s"}},"spec":{"initContainers":[{"name":"istio-init","image":"i"},{"name":"m","image":"m"}],"containers":[{"name":"a","image":"x"}]}}`,
		`{"metadata":{"name":"init-first-alone","annotations":{"peergroup.dev/init-first":"true"}},"spec":{"containers":[{"name":"a","image":"x"}]}}`,
		`{"metadata":{"name":"cassandra-0","annotations":{"peergroup.dev/seed-address":"hostname"}},"spec":{"hostname":"cassandra-0","subdomain":"cassandra","containers":[{"name":"a","image":"x"}]}}`,
	}
	for _, e := range extra {
		pods = append(pods, []byte(e))
	}
	checked := 0
	for _, p := range pods {
		raw, ok := fixtures.APIServerForm(p)
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
			t.Errorf("direct patch differs from the oracle's for %s\noracle:\n%s\ndirect:\n%s", raw, a, b)
		}
	}
	if checked < 5 {
		t.Fatalf("only %d pods checked", checked)
	}
}

// FuzzPatchEquivalence: for any pod the API server could send, the direct
// patch yields exactly the pod PatchResponseFromRaw's patch yields.
func FuzzPatchEquivalence(f *testing.F) {
	for _, p := range fixtures.MutatePods(f) {
		f.Add(p)
	}
	f.Add([]byte(`{"metadata":{"labels":{"x/y":"1"}},"spec":{"containers":[{"name":"a","env":[{"name":"A"}]}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		raw, ok := fixtures.APIServerForm(data)
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

// Values that parse but are megabytes long (leading zeros, fraction
// digits) are denied by the contract's length bound, so they never reach
// the init container, its cache, or the patch buffers sized from it; and
// the cache takes no encoding over its size bound whatever the config.
func TestCacheAndTuningBounded(t *testing.T) {
	for _, v := range []string{"10." + strings.Repeat("0", 1<<20) + "s", strings.Repeat("0", 40) + "3"} {
		pod := memberPod()
		pod.Annotations = map[string]string{contract.Timeout.Annotation: v, contract.SeedCount.Annotation: "3"}
		if strings.HasSuffix(v, "3") {
			pod.Annotations = map[string]string{contract.SeedCount.Annotation: v}
		}
		if d := decideT(t, pod, nil, nil); d.Verdict != VerdictDenied || d.Reason != ReasonInvalidTuning || len(d.Message) > 1024 {
			t.Errorf("%d-byte value: %s (%d-byte message)", len(v), d.Verdict, len(d.Message))
		}
	}
	cache := &InitContainerCache{}
	big := corev1.Container{Name: contract.InitContainerName, Image: strings.Repeat("i", maxCachedEncoding)}
	var buf bytes.Buffer
	if err := cache.write(&buf, big); err != nil || buf.Len() <= maxCachedEncoding {
		t.Fatalf("write: %v (%d bytes)", err, buf.Len())
	}
	if cache.Len() != 0 || cache.largest() != 0 {
		t.Errorf("an encoding of %d bytes was cached (%d entries, largest %d)", buf.Len(), cache.Len(), cache.largest())
	}
}

// Two init containers that differ only in a resource other than CPU and
// memory never share a cached encoding.
func TestCacheKeyCoversEveryResource(t *testing.T) {
	ic := func(storage string) corev1.Container {
		return corev1.Container{Name: contract.InitContainerName, Image: "x", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceEphemeralStorage: resource.MustParse(storage)},
		}}
	}
	if initContainerKey(ptrTo(ic("1Mi"))) == initContainerKey(ptrTo(ic("10Mi"))) {
		t.Error("ephemeral-storage is not part of the key")
	}
	// Quantities that differ below a milli-unit are different containers.
	if initContainerKey(ptrTo(ic("9500u"))) == initContainerKey(ptrTo(ic("10m"))) {
		t.Error("the key rounds quantities")
	}
}

func ptrTo[T any](v T) *T { return &v }
