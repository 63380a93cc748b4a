package admit

import (
	"context"
	"encoding/json"
	"flag"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Fixed IDs off (OpenShift): the init container keeps runAsNonRoot and
// every other restricted setting, without runAsUser and runAsGroup.
func TestFixedIDs(t *testing.T) {
	for _, fixed := range []bool{true, false} {
		cfg := DefaultConfig()
		cfg.FixedIDs = fixed
		p := memberPod()
		d := decideWith(t, cfg, p, nil, nil)
		if d.Verdict != VerdictInjected {
			t.Fatal(summary(d))
		}
		sc := injectedContainer(d.Mutated).SecurityContext
		if (sc.RunAsUser != nil) != fixed || (sc.RunAsGroup != nil) != fixed || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot ||
			!*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || sc.SeccompProfile == nil || len(sc.Capabilities.Drop) != 1 {
			t.Errorf("fixed IDs %v: securityContext %+v", fixed, sc)
		}
	}
	// A pod that pins root, with fixed IDs off: the container would inherit
	// root and its runAsNonRoot refuse to start it, so it gets 65532.
	cfg := DefaultConfig()
	cfg.FixedIDs = false
	for _, uid := range []int64{0, 1000} {
		p := memberPod()
		p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: &uid}
		d := decideWith(t, cfg, p, nil, nil)
		sc := injectedContainer(d.Mutated).SecurityContext
		if pinned := sc.RunAsUser != nil && *sc.RunAsUser == 65532; pinned != (uid == 0) {
			t.Errorf("pod runAsUser %d: container runAsUser %v", uid, sc.RunAsUser)
		}
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	cfg = DefaultConfig()
	finish := RegisterFlags(fs, &cfg)
	if err := fs.Parse([]string{"--seed-discovery-fixed-ids=false"}); err != nil {
		t.Fatal(err)
	}
	finish()
	if cfg.FixedIDs {
		t.Error("--seed-discovery-fixed-ids=false not honoured")
	}
}

// The configured pull secrets are added to member pods, after the pod's
// own and without duplicates, by both patch paths.
func TestImagePullSecrets(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ImagePullSecrets = []string{"regcred", "mirror"}
	for _, tc := range []struct {
		name string
		have []string
		want string
	}{
		{"none of its own", nil, "regcred,mirror"},
		{"its own first, one already there", []string{"own", "mirror"}, "own,mirror,regcred"},
		{"both there", []string{"mirror", "regcred"}, "mirror,regcred"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := memberPod()
			for _, n := range tc.have {
				p.Spec.ImagePullSecrets = append(p.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: n})
			}
			d := decideWith(t, cfg, p, nil, nil)
			if d.Verdict != VerdictInjected {
				t.Fatal(summary(d))
			}
			if got := secretNames(d.Mutated.Spec.ImagePullSecrets); got != tc.want {
				t.Errorf("imagePullSecrets %s, want %s", got, tc.want)
			}
			if got := secretNames(p.Spec.ImagePullSecrets); got != strings.Join(tc.have, ",") {
				t.Errorf("the input pod changed: %s", got)
			}
			// The direct patch applied to the pod gives the same list.
			patched := applyPatch(t, p, d.Patch)
			if got := secretNames(patched.Spec.ImagePullSecrets); got != tc.want {
				t.Errorf("patched imagePullSecrets %s, want %s", got, tc.want)
			}
		})
	}
	bad := DefaultConfig()
	bad.ImagePullSecrets = []string{"Not_A_Name"}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), `--seed-discovery-image-pull-secrets: "Not_A_Name" is not a Secret name`) {
		t.Errorf("Validate: %v", err)
	}
}

func secretNames(refs []corev1.LocalObjectReference) string {
	names := make([]string, len(refs))
	for i, r := range refs {
		names[i] = r.Name
	}
	return strings.Join(names, ",")
}

// An injected pod without the configured pull secrets (injected offline,
// or from a template copied from a live pod) gets them on admission; one
// that has them is left alone.
func TestCompleteAddsPullSecrets(t *testing.T) {
	cfg := DefaultConfig()
	injected, _, err := Mutate(memberPod(), cassandra, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ImagePullSecrets = []string{"regcred"}
	d := decideWith(t, cfg, injected, nil, nil)
	if d.Reason != ReasonCompleted || secretNames(d.Mutated.Spec.ImagePullSecrets) != "regcred" {
		t.Fatalf("%s", summary(d))
	}
	if again := decideWith(t, cfg, d.Mutated, nil, nil); again.Reason != ReasonAlreadyInjected {
		t.Errorf("with the secret: %s", summary(again))
	}
}

// With fixed IDs off, pods of one group differ in the init container's IDs
// (pinned only for a pod that pins root): the init-container cache must not
// give one pod's encoding to the other, in either order.
func TestInitContainerCacheKeepsIDsApart(t *testing.T) {
	cfg := DefaultConfig()
	cfg.FixedIDs = false
	root := func() *corev1.Pod {
		p := memberPod()
		p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: new(int64)}
		return p
	}
	for _, order := range [][]func() *corev1.Pod{{root, memberPod}, {memberPod, root}} {
		svc := DesiredService(memberPod(), "db", cassandra)
		d := &Decider{Config: cfg, Namespaces: staticNamespaces(nil), Services: &staticServices{Existing: svc, Known: true}, InitContainers: &InitContainerCache{}}
		for _, make := range order {
			p := make()
			dec := d.Decide(context.Background(), Request{Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: "db", Operation: admissionv1.Create, DryRun: true, Pod: p})
			sc := injectedContainer(applyPatch(t, p, dec.Patch)).SecurityContext
			wantPinned := p.Spec.SecurityContext != nil
			if pinned := sc.RunAsUser != nil && *sc.RunAsUser == 65532; pinned != wantPinned {
				t.Errorf("pod pins root %v: the patched init container's runAsUser is %v", wantPinned, sc.RunAsUser)
			}
		}
	}
}

// applyPatch applies a decision's patch to pod, as the API server would.
func applyPatch(t *testing.T, pod *corev1.Pod, patch []byte) *corev1.Pod {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	ops, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		t.Fatalf("decode patch %s: %v", patch, err)
	}
	out, err := ops.Apply(raw)
	if err != nil {
		t.Fatal(err)
	}
	patched := &corev1.Pod{}
	if err := json.Unmarshal(out, patched); err != nil {
		t.Fatal(err)
	}
	return patched
}

// Validate accepts every Secret name the API server accepts and refuses
// the others, naming the flag.
func TestConfigValidatePullSecretNames(t *testing.T) {
	for _, tc := range []struct {
		names []string
		ok    bool
	}{
		{nil, true},
		{[]string{"regcred"}, true},
		{[]string{"regcred", "mirror.example-2", strings.Repeat("a", 253)}, true},
		{[]string{"RegCred"}, false},
		{[]string{"regcred", "bad_name"}, false},
		{[]string{strings.Repeat("a", 254)}, false},
	} {
		cfg := DefaultConfig()
		cfg.ImagePullSecrets = tc.names
		err := cfg.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%q: %v, want ok=%v", tc.names, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "--seed-discovery-image-pull-secrets") {
			t.Errorf("%q: %v does not name the flag", tc.names, err)
		}
	}
}
