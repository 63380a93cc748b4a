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
	"sigs.k8s.io/yaml"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/test/fixtures"
)

// applyBoth patches raw with the reference (diff) and the direct patch and
// returns both results decoded, as the API server would store them.
func applyBoth(t testing.TB, raw []byte, m Membership) (ref, direct *corev1.Pod, ok bool) {
	in := &corev1.Pod{}
	if err := json.Unmarshal(raw, in); err != nil {
		return nil, nil, false
	}
	out, _, err := Mutate(in, m, fuzzConfig(raw))
	if err != nil {
		return nil, nil, false
	}
	apply := func(mode PatchMode) *corev1.Pod {
		d := &Decider{Config: Config{PatchMode: mode}}
		fallback := raw
		if mode == PatchDirect {
			fallback = nil // as with the fast path's decode: no raw object to fall back on
		}
		p, err := d.patch(fallback, in, out, &sharedInitCache)
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		patch, err := jsonpatch.DecodePatch(p)
		if err != nil {
			t.Fatalf("%s: decode patch: %v", mode, err)
		}
		patched, err := patch.Apply(raw)
		if err != nil {
			t.Fatalf("%s: apply: %v\npatch %s\nraw %s", mode, err, p, raw)
		}
		pod := &corev1.Pod{}
		if err := json.Unmarshal(patched, pod); err != nil {
			t.Fatal(err)
		}
		return pod
	}
	return apply(PatchDiff), apply(PatchDirect), true
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

// If the direct patch cannot be built, the answer falls back to the diff
// when the raw object is there, and is an error when it is not (the fast
// path's decode): never a patch computed against nothing.
func TestPatchDirectFailure(t *testing.T) {
	in := memberPod()
	in.Spec.Containers = append(in.Spec.Containers, corev1.Container{Name: "extra"})
	out := memberPod() // one container fewer: the direct patch refuses
	raw, _ := json.Marshal(in)
	d := &Decider{Config: Config{PatchMode: PatchDirect}}
	if p, err := d.patch(raw, in, out, nil); err != nil || len(p) == 0 {
		t.Errorf("with the raw object the diff must answer: %s %v", p, err)
	}
	if _, err := d.patch(nil, in, out, nil); err == nil || !strings.Contains(err.Error(), "build JSON patch") {
		t.Errorf("without the raw object: %v", err)
	}
}

// FuzzAdmittedPodEquivalence: for any pod, deciding on the fields
// AdmittedPod decodes gives the same decision as deciding on the whole
// pod: the same verdict, reason, message, warnings and direct patch byte
// for byte, and the same Service.
func FuzzAdmittedPodEquivalence(f *testing.F) {
	for _, p := range fixtures.MutatePods(f) {
		f.Add(p, "")
		f.Add(p, "cassandra")
	}
	f.Add([]byte(`{"metadata":{"name":"x","labels":{"peergroup.dev/group":"g"},"ownerReferences":[{"apiVersion":"v1","kind":"ReplicationController","name":"rc","uid":"u","controller":true}]},"spec":{"dnsPolicy":"ClusterFirst","volumes":[{"name":"peergroup-seeds","hostPath":{"path":"/"}}],"containers":[{"name":"a","image":"x","resources":{"limits":{"cpu":"1"}},"env":[{"name":"G_SERVICE","valueFrom":{"fieldRef":{"fieldPath":"metadata.name"}}}]}]}}`), "")
	f.Add([]byte(`{"metadata":{"labels":{"peergroup.dev/group":"g"}},"spec":{"os":{"name":"windows"},"containers":[{"name":"a"}]}}`), "")
	f.Add([]byte(`{"spec":{"nodeSelector":{"kubernetes.io/os":"windows","zone":"a"},"containers":[{"name":"a"}]}}`), "g")
	f.Fuzz(func(t *testing.T, raw []byte, nsGroup string) {
		full := &corev1.Pod{}
		if err := json.Unmarshal(raw, full); err != nil {
			return
		}
		var nsLabels map[string]string
		if nsGroup != "" {
			nsLabels = map[string]string{contract.GroupLabel: nsGroup}
		}
		decideBoth(t, full, nsLabels, nil)
	})
}

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
		if d := decideBoth(t, pod, nil, nil); d.Verdict != VerdictDenied || d.Reason != ReasonInvalidTuning || len(d.Message) > 1024 {
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
