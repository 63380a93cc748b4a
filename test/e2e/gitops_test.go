package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/test/framework"
)

// A GitOps controller applies the chart's rendered
// MutatingWebhookConfiguration, which in selfSigned mode carries no
// caBundle (the webhook writes it at run time), every 2 s, while pods are
// created continuously through the API server against the selfSigned
// webhook (failurePolicy Fail, registered by 127.0.0.1 URL). Four ways of
// applying, in turn, on one release:
//
//   - server-side apply (Argo CD ServerSideApply=true, Flux's
//     kustomize-controller and helm-controller's drift correction): the
//     applier never owned caBundle, so it is never removed;
//   - client-side apply (kubectl apply, Argo CD's default, Helm 3's
//     three-way upgrade): caBundle is neither in the last applied
//     configuration nor in the new one, so the patch leaves it;
//   - replace (Argo CD Replace=true, kubectl replace, helm upgrade --force)
//     with the chart's MutatingAdmissionPolicy: the replace writes an
//     empty caBundle, the API server keeps the old one at admission;
//   - the same replace with the policy's binding deleted (a cluster before
//     Kubernetes 1.36, or the policy removed): each replace empties the
//     caBundle until the webhook's watch re-patches it; pods admitted in
//     between are refused. Measured and bounded, not zero: the API server
//     reads the configuration it stored, and no re-patch can be faster
//     than a watch event plus a write.
//
// In the first three no caBundle is ever seen empty and no pod is refused.
func TestGitOpsCABundleResets(t *testing.T) {
	const release = "gitops"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r, ns := installForCluster(t, release)
	if r.Find("MutatingAdmissionPolicy", fullname(release)+"-keep-cabundle") == nil {
		t.Fatalf("the chart rendered no caBundle guard for an API server serving MutatingAdmissionPolicy v1: %v", r.Kinds())
	}
	w, err := framework.StartWebhook(ctx, cluster, r, ns, framework.As(asRelease(ns, release)))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	member := newNamespace(t, map[string]string{"peergroup.dev/group": "gitops"})
	pointAt(t, release, w.URL(), member)
	ca := secretCA(t, ns, release)
	eventually(t, 15*time.Second, "caBundle patched into every entry", func() bool {
		return caBundleState(webhookConfiguration(t, release).Webhooks, ca) == caTrusted
	})
	if err := framework.WaitForInjection(ctx, cluster, member); err != nil {
		t.Fatal(err)
	}
	// What Git holds: the chart's configuration with the test's loopback
	// URL and namespace (as pointAt wrote them), and no caBundle.
	desired := desiredWebhookConfig(t, r, release, w.URL(), member)
	eventually(t, 30*time.Second, "the API server enforces the caBundle guard", func() bool {
		return guardKeeps(t, ctx, desired)
	})
	states := watchCAStates(t, ctx, fullname(release), ca)

	phases := []struct {
		name     string
		apply    func(context.Context, *unstructured.Unstructured) error
		length   time.Duration
		unguard  bool
		mayReset bool
	}{
		{name: "server-side apply", apply: serverSideApply, length: 10 * time.Second},
		{name: "client-side apply", apply: clientSideApply, length: 10 * time.Second},
		{name: "replace, guarded", apply: replaceConfig, length: 20 * time.Second},
		{name: "replace, unguarded", apply: replaceConfig, length: 20 * time.Second, unguard: true, mayReset: true},
	}
	var report []string
	for _, p := range phases {
		if p.unguard {
			unbindGuard(t, ctx, release)
			eventually(t, 30*time.Second, "the API server no longer enforces the guard", func() bool {
				return !guardKeeps(t, ctx, desired)
			})
		}
		from := time.Now()
		load := startGitOpsLoad(t, member, 2)
		applies, applyErrs := 0, 0
		tick := time.NewTicker(2 * time.Second)
		for end := time.Now().Add(p.length); time.Now().Before(end); <-tick.C {
			applies++
			if err := p.apply(ctx, desired); err != nil {
				applyErrs++
				t.Errorf("%s: %v", p.name, err)
			}
		}
		tick.Stop()
		// A last reset's window closes within a second: then stop.
		time.Sleep(time.Second)
		load.stop()
		emptied, windows := states.since(from)
		line := fmt.Sprintf("%s: %d applies, %d pods created, %d refused, caBundle emptied %d times, empty for %s",
			p.name, applies, load.created.Load(), load.refused.Load(), emptied, windowSummary(windows))
		report = append(report, line)
		t.Log(line)
		for _, e := range load.sampleErrors() {
			t.Logf("%s: refused: %s", p.name, e)
		}
		if applyErrs > 0 || applies < int(p.length/(2*time.Second)) {
			t.Errorf("%s: %d applies, %d failed", p.name, applies, applyErrs)
		}
		if n := load.created.Load(); n < 50 {
			t.Errorf("%s: only %d pods created: the load did not run", p.name, n)
		}
		if n := load.notInjected.Load(); n != 0 {
			t.Errorf("%s: %d pods admitted without injection: they did not go through the selfSigned webhook", p.name, n)
		}
		if got := caBundleState(webhookConfiguration(t, release).Webhooks, ca); got != caTrusted {
			t.Errorf("%s: caBundle %s at the end, want the Secret's CA in every entry", p.name, got)
		}
		if !p.mayReset {
			if emptied != 0 || load.refused.Load() != 0 {
				t.Errorf("%s: caBundle emptied %d times, %d pods refused; want 0 and 0", p.name, emptied, load.refused.Load())
			}
			continue
		}
		// Unguarded replace: every replace empties the caBundle, the
		// webhook re-patches each time, the windows are short, and the
		// refusals are those windows' pods only.
		if emptied < applies-1 {
			t.Errorf("%s: caBundle emptied %d times by %d replaces: the actor did not reset it", p.name, emptied, applies)
		}
		if len(windows) != emptied {
			t.Errorf("%s: %d resets, %d re-patched", p.name, emptied, len(windows))
		}
		if longest := slices.Max(append(windows, 0)); longest > unguardedWindowMax {
			t.Errorf("%s: caBundle empty for %s at most, want under %s", p.name, longest, unguardedWindowMax)
		}
		if n := load.refused.Load(); n > int64(unguardedRefusalsPerReset*emptied) {
			t.Errorf("%s: %d pods refused for %d resets, want at most %d per reset", p.name, n, emptied, unguardedRefusalsPerReset)
		}
	}
	t.Log("summary:\n  " + strings.Join(report, "\n  "))
}

// Bounds of the unguarded replace: on this 2-core machine the webhook's
// watch re-patched within 12-30 ms (median; 50 ms at most) and the load
// (two workers, 800-1050 creates in 20 s) had 2, 6 and 9 pods refused for
// 10 resets in three runs (docs/install.md, GitOps). The bounds leave room for a loaded
// machine while still failing a keeper that re-patched only at its resync
// (a minute) or a load refused for another reason.
const (
	unguardedWindowMax        = time.Second
	unguardedRefusalsPerReset = 5
)

// installForCluster renders the chart (default values: selfSigned) as
// `helm install` does against this API server, its Capabilities.APIVersions
// discovered from it, and creates every object. It deletes the cluster-scoped
// ones when the test ends.
func installForCluster(t *testing.T, release string) (*framework.Rendered, string) {
	t.Helper()
	ns := newNamespace(t, nil)
	cs, err := kubernetes.NewForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	caps := chartutil.DefaultCapabilities.Copy()
	caps.APIVersions = servedAPIVersions(t, cs)
	if v, err := cs.Discovery().ServerVersion(); err == nil {
		caps.KubeVersion = chartutil.KubeVersion{Version: v.GitVersion, Major: v.Major, Minor: v.Minor}
	}
	ch, err := loader.Load(framework.ChartDir())
	if err != nil {
		t.Fatal(err)
	}
	vals, err := chartutil.ToRenderValues(ch, nil, chartutil.ReleaseOptions{Name: release, Namespace: ns, IsInstall: true, Revision: 1}, caps)
	if err != nil {
		t.Fatal(err)
	}
	files, err := engine.Render(ch, vals)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(files))
	for name := range files {
		if strings.HasSuffix(name, ".yaml") {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	r := &framework.Rendered{}
	for _, name := range names {
		dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(files[name]), 4096)
		for {
			obj := map[string]any{}
			if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("decode %s: %v", name, err)
			}
			if len(obj) > 0 {
				r.Objects = append(r.Objects, &unstructured.Unstructured{Object: obj})
			}
		}
	}
	for _, obj := range r.Objects {
		if err := cluster.Client.Create(context.Background(), callingNoService(t, obj)); err != nil {
			t.Fatalf("create %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
		if obj.GetNamespace() == "" {
			gvk, name := obj.GroupVersionKind(), obj.GetName()
			t.Cleanup(func() {
				u := &unstructured.Unstructured{}
				u.SetGroupVersionKind(gvk)
				u.SetName(name)
				_ = cluster.Client.Delete(context.Background(), u)
			})
		}
	}
	return r, ns
}

// servedAPIVersions is what Helm's install puts in
// Capabilities.APIVersions (action.GetVersionSet): every group/version the
// API server serves, and group/version/Kind for each resource.
func servedAPIVersions(t *testing.T, cs kubernetes.Interface) chartutil.VersionSet {
	t.Helper()
	groups, resources, err := cs.Discovery().ServerGroupsAndResources()
	if err != nil {
		t.Fatal(err)
	}
	var versions chartutil.VersionSet
	for _, g := range groups {
		for _, gv := range g.Versions {
			versions = append(versions, gv.GroupVersion)
		}
	}
	for _, list := range resources {
		for _, res := range list.APIResources {
			versions = append(versions, list.GroupVersion+"/"+res.Kind)
		}
	}
	return versions
}

// desiredWebhookConfig is the configuration a GitOps controller applies:
// as rendered (no caBundle), with clientConfig and namespaceSelector as
// pointAt sets them, so the only difference from the live one is caBundle.
func desiredWebhookConfig(t *testing.T, r *framework.Rendered, release, url, member string) *unstructured.Unstructured {
	t.Helper()
	mwc := r.Find("MutatingWebhookConfiguration", fullname(release)).DeepCopy()
	hooks, _, _ := unstructured.NestedSlice(mwc.Object, "webhooks")
	for _, h := range hooks {
		hook := h.(map[string]any)
		hook["clientConfig"] = map[string]any{"url": url}
		sel := hook["namespaceSelector"].(map[string]any)
		sel["matchLabels"] = map[string]any{"kubernetes.io/metadata.name": member}
	}
	if err := unstructured.SetNestedSlice(mwc.Object, hooks, "webhooks"); err != nil {
		t.Fatal(err)
	}
	return mwc
}

func liveConfig(ctx context.Context, name string) (*unstructured.Unstructured, error) {
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(admissionregistrationv1.SchemeGroupVersion.WithKind("MutatingWebhookConfiguration"))
	return live, cluster.Client.Get(ctx, client.ObjectKey{Name: name}, live)
}

// serverSideApply is `kubectl apply --server-side --force-conflicts` as
// Argo CD runs it with ServerSideApply=true (field manager
// argocd-controller); Flux applies the same way.
func serverSideApply(ctx context.Context, desired *unstructured.Unstructured) error {
	return cluster.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(desired.DeepCopy()),
		client.FieldOwner("argocd-controller"), client.ForceOwnership)
}

const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// clientSideApply is `kubectl apply`: a strategic three-way merge of the
// last applied configuration, the new one and the live object, recording
// the new one in the annotation.
func clientSideApply(ctx context.Context, desired *unstructured.Unstructured) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		applied, err := json.Marshal(desired.Object)
		if err != nil {
			return err
		}
		modified := desired.DeepCopy()
		annotations := modified.GetAnnotations()
		if annotations == nil {
			annotations = map[string]string{}
		}
		annotations[lastApplied] = string(applied)
		modified.SetAnnotations(annotations)
		modifiedJSON, err := json.Marshal(modified.Object)
		if err != nil {
			return err
		}
		live, err := liveConfig(ctx, desired.GetName())
		if err != nil {
			return err
		}
		liveJSON, err := json.Marshal(live.Object)
		if err != nil {
			return err
		}
		meta, err := strategicpatch.NewPatchMetaFromStruct(&admissionregistrationv1.MutatingWebhookConfiguration{})
		if err != nil {
			return err
		}
		patch, err := strategicpatch.CreateThreeWayMergePatch([]byte(live.GetAnnotations()[lastApplied]), modifiedJSON, liveJSON, meta, true)
		if err != nil {
			return err
		}
		if bytes.Contains(patch, []byte("caBundle")) {
			return fmt.Errorf("client-side apply patch touches caBundle: %s", patch)
		}
		// Optimistic, as kubectl's patch with the live resourceVersion.
		return cluster.Client.Patch(ctx, live, client.RawPatch(types.StrategicMergePatchType, patch), client.FieldOwner("kubectl-client-side-apply"))
	})
}

// replaceConfig is `kubectl replace` (Argo CD Replace=true, helm upgrade
// --force): the whole object as desired, at the live resourceVersion.
func replaceConfig(ctx context.Context, desired *unstructured.Unstructured) error {
	return replaceWith(ctx, desired)
}

func replaceWith(ctx context.Context, desired *unstructured.Unstructured, opts ...client.UpdateOption) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		live, err := liveConfig(ctx, desired.GetName())
		if err != nil {
			return err
		}
		obj := desired.DeepCopy()
		obj.SetResourceVersion(live.GetResourceVersion())
		return cluster.Client.Update(ctx, obj, opts...)
	})
}

// guardKeeps makes a server-side dry-run replace and reports whether the
// API server kept the caBundle (the chart's policy is in force).
func guardKeeps(t *testing.T, ctx context.Context, desired *unstructured.Unstructured) bool {
	t.Helper()
	var kept bool
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		live, err := liveConfig(ctx, desired.GetName())
		if err != nil {
			return err
		}
		obj := desired.DeepCopy()
		obj.SetResourceVersion(live.GetResourceVersion())
		if err := cluster.Client.Update(ctx, obj, client.DryRunAll); err != nil {
			return err
		}
		hooks, _, _ := unstructured.NestedSlice(obj.Object, "webhooks")
		kept = len(hooks) > 0
		for _, h := range hooks {
			if b, _, _ := unstructured.NestedString(h.(map[string]any), "clientConfig", "caBundle"); b == "" {
				kept = false
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("dry-run replace: %v", err)
	}
	return kept
}

// unbindGuard deletes the policy's binding, as on a cluster without it.
func unbindGuard(t *testing.T, ctx context.Context, release string) {
	t.Helper()
	b := &unstructured.Unstructured{}
	b.SetGroupVersionKind(admissionregistrationv1.SchemeGroupVersion.WithKind("MutatingAdmissionPolicyBinding"))
	b.SetName(fullname(release) + "-keep-cabundle")
	if err := cluster.Client.Delete(ctx, b); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
}

type caState string

const (
	caTrusted caState = "trusted"
	caEmpty   caState = "empty"
	caOther   caState = "other"
)

// caBundleState: every entry carries the Secret's CA (trusted), some entry
// has none (empty), or something else.
func caBundleState(hooks []admissionregistrationv1.MutatingWebhook, ca []byte) caState {
	state := caTrusted
	for _, h := range hooks {
		switch {
		case len(h.ClientConfig.CABundle) == 0:
			return caEmpty
		case !bytes.Equal(h.ClientConfig.CABundle, ca):
			state = caOther
		}
	}
	return state
}

// caStates records, as a watch delivers them, when the configuration's
// caBundle became empty and when it was trusted again.
type caStates struct {
	mu     sync.Mutex
	events []caEvent
}

type caEvent struct {
	at    time.Time
	state caState
}

func watchCAStates(t *testing.T, ctx context.Context, name string, ca []byte) *caStates {
	t.Helper()
	s := &caStates{}
	watchWebhookConfiguration(t, ctx, name, func(mwc *admissionregistrationv1.MutatingWebhookConfiguration) {
		s.mu.Lock()
		s.events = append(s.events, caEvent{at: time.Now(), state: caBundleState(mwc.Webhooks, ca)})
		s.mu.Unlock()
	})
	return s
}

// since counts the versions with an empty caBundle seen after from, and
// how long each stayed empty until the next version that was not.
func (s *caStates) since(from time.Time) (emptied int, windows []time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var emptySince time.Time
	for _, ev := range s.events {
		if ev.at.Before(from) {
			continue
		}
		switch {
		case ev.state == caEmpty && emptySince.IsZero():
			emptied++
			emptySince = ev.at
		case ev.state != caEmpty && !emptySince.IsZero():
			windows = append(windows, ev.at.Sub(emptySince))
			emptySince = time.Time{}
		}
	}
	return emptied, windows
}

func windowSummary(windows []time.Duration) string {
	if len(windows) == 0 {
		return "never"
	}
	sorted := slices.Clone(windows)
	slices.Sort(sorted)
	return fmt.Sprintf("median %s, max %s (per reset, as a watch saw it)",
		sorted[len(sorted)/2].Round(100*time.Microsecond), sorted[len(sorted)-1].Round(100*time.Microsecond))
}

// gitopsLoad creates pods continuously in the member namespace (real
// creates through the API server, each deleted once admitted, so the
// namespace does not fill up), counting the refused ones.
type gitopsLoad struct {
	created, refused, notInjected atomic.Int64

	mu   sync.Mutex
	errs []string
	workers
}

func startGitOpsLoad(t *testing.T, ns string, n int) *gitopsLoad {
	l := &gitopsLoad{workers: newWorkers()}
	for range n {
		l.run(func() {
			pod := plainPod(ns, "", nil)
			pod.GenerateName = "gitops-"
			if err := cluster.Client.Create(context.Background(), pod); err != nil {
				l.refused.Add(1)
				l.mu.Lock()
				if len(l.errs) < 5 {
					l.errs = append(l.errs, err.Error())
				}
				l.mu.Unlock()
				return
			}
			l.created.Add(1)
			if initContainerCount(pod, "seed-discovery") != 1 {
				l.notInjected.Add(1)
			}
			if err := cluster.Client.Delete(context.Background(), pod, client.GracePeriodSeconds(0)); err != nil && !apierrors.IsNotFound(err) {
				t.Logf("delete %s: %v", pod.Name, err)
			}
			time.Sleep(10 * time.Millisecond)
		})
	}
	return l
}

func (l *gitopsLoad) sampleErrors() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.errs)
}
