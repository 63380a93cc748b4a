package admit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/peergroup/peergroup/contract"
)

// The envFrom warning names the variables peergroup added; a container
// whose user set them all gets none.
func TestEnvFromWarningOnlyForAddedVariables(t *testing.T) {
	envFrom := []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}}
	p := memberPod()
	p.Spec.Containers[0].EnvFrom = envFrom
	_, warnings, err := Mutate(p, cassandra, DefaultConfig())
	if err != nil || !strings.Contains(strings.Join(warnings, "\n"), "also takes env from envFrom") {
		t.Fatalf("warnings %q, err %v: want the envFrom warning", warnings, err)
	}
	done := memberPod()
	done.Spec.Containers[0].EnvFrom = envFrom
	done.Spec.Containers[0].Env = appEnv(cassandra)
	if _, warnings, err := Mutate(done, cassandra, DefaultConfig()); err != nil || strings.Contains(strings.Join(warnings, "\n"), "envFrom") {
		t.Errorf("warnings %q, err %v: nothing was added, so no envFrom warning", warnings, err)
	}
}

// An injected pod with every env var and the mount is complete: deciding
// it again names no incomplete container; one container without them is
// named.
func TestInjectedPodIsComplete(t *testing.T) {
	p := twoContainerPod()
	out, _, err := Mutate(p, cassandra, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if got := incompleteContainers(out, cassandra); len(got) != 0 {
		t.Errorf("incomplete containers of an injected pod: %v", got)
	}
	out.Spec.Containers = append(out.Spec.Containers, corev1.Container{Name: "late", Image: "x"})
	if got := incompleteContainers(out, cassandra); strings.Join(got, ",") != "late" {
		t.Errorf("incomplete containers: %v, want late", got)
	}
}

// spec.resources present but empty is no pod-level budget: the injected
// container keeps its own resources.
func TestEmptyPodLevelResourcesAreNone(t *testing.T) {
	p := memberPod()
	p.Spec.Resources = &corev1.ResourceRequirements{}
	out, _, err := Mutate(p, cassandra, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	ic := injectedContainer(out)
	if ic == nil || len(ic.Resources.Requests) == 0 || len(ic.Resources.Limits) == 0 {
		t.Fatalf("init container resources %+v, want the configured ones", ic)
	}
}

// The init-container cache holds at most maxInitContainerEntries
// encodings, whatever the number of distinct containers written.
func TestInitContainerCacheBounded(t *testing.T) {
	c := &InitContainerCache{}
	var buf bytes.Buffer
	for i := 0; i <= maxInitContainerEntries; i++ {
		ic := corev1.Container{Name: contract.InitContainerName, Image: fmt.Sprintf("registry.example/sd:%d", i)}
		if err := c.write(&buf, ic); err != nil {
			t.Fatal(err)
		}
		buf.Reset()
	}
	if got := c.Len(); got != maxInitContainerEntries {
		t.Errorf("%d entries cached after %d distinct containers, want %d", got, maxInitContainerEntries+1, maxInitContainerEntries)
	}
}

// An encoding of exactly maxCachedEncoding bytes is cached; one byte more
// is not.
func TestInitContainerCacheEncodingBound(t *testing.T) {
	for _, extra := range []int{0, 1} {
		ic := corev1.Container{Name: contract.InitContainerName, Image: "x"}
		base, err := json.Marshal(ic)
		if err != nil {
			t.Fatal(err)
		}
		ic.Image += strings.Repeat("x", maxCachedEncoding-len(base)+extra)
		if enc, _ := json.Marshal(ic); len(enc) != maxCachedEncoding+extra {
			t.Fatalf("encoding of %d bytes, want %d", len(enc), maxCachedEncoding+extra)
		}
		c := &InitContainerCache{}
		var buf bytes.Buffer
		if err := c.write(&buf, ic); err != nil {
			t.Fatal(err)
		}
		if want := 1 - extra; c.Len() != want {
			t.Errorf("%d bytes: %d cached, want %d", maxCachedEncoding+extra, c.Len(), want)
		}
	}
}

// A container with an env var of its own but none of peergroup's is
// incomplete, even with the seeds mount.
func TestContainerWithOtherEnvIsIncomplete(t *testing.T) {
	out, _, err := Mutate(twoContainerPod(), cassandra, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	out.Spec.Containers = append(out.Spec.Containers, corev1.Container{Name: "partial", Image: "x",
		Env:          []corev1.EnvVar{{Name: "FOO", Value: "1"}, {Name: "BAR", Value: "2"}},
		VolumeMounts: []corev1.VolumeMount{{Name: contract.SeedsVolumeName, MountPath: contract.SeedsMountPath, ReadOnly: true}}})
	if got := incompleteContainers(out, cassandra); strings.Join(got, ",") != "partial" {
		t.Errorf("incomplete containers: %v, want partial", got)
	}
}

// Pod-level limits alone are a pod-level budget: the injected container's
// limits are cut to the pod's.
func TestPodLevelLimitsAloneBoundTheInitContainer(t *testing.T) {
	p := memberPod()
	p.Spec.Resources = &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m")}}
	out, _, err := Mutate(p, cassandra, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	ic := injectedContainer(out)
	if q, ok := ic.Resources.Limits[corev1.ResourceCPU]; ok && q.Cmp(resource.MustParse("50m")) > 0 {
		t.Errorf("init container cpu limit %s above the pod's 50m", q.String())
	}
}
