package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/test/framework"
)

// auditFixRules is the RBAC the README documents for peergroup audit
// --fix; the CLI runs with exactly these.
var auditFixRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"namespaces", "pods", "services", "limitranges"}, Verbs: []string{"list"}},
	{APIGroups: []string{"admissionregistration.k8s.io"}, Resources: []string{"mutatingwebhookconfigurations"}, Verbs: []string{"get", "list"}},
	// The replacement's server-side dry run.
	{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"create"}},
	{APIGroups: []string{""}, Resources: []string{"pods/eviction"}, Verbs: []string{"create"}},
}

// peergroup audit --fix against the API server: only uninjected members
// are evicted, through the Eviction API, so a PodDisruptionBudget that
// allows no disruption blocks one (429) while another goes, and so does
// one not processed yet, at once (its 429 asks to retry after 10 s, which
// client-go would do on its own for 100 s); a bare pod
// is skipped unless --include-bare; the dry run (also server-side) evicts
// nothing; an injected member and a non-member are never touched; and the
// README's RBAC is enough (without pods/eviction every eviction fails).
//
// There is no controller-manager here, so nothing recreates an evicted pod
// (the webhook injecting the new pod is what every other test shows).
func TestAuditFix(t *testing.T) {
	ctx := testContext(t)
	peergroup, err := framework.BuildBinary(ctx, "peergroup", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(t, nil)
	pods := createAuditFixPods(t, ctx, ns)
	guard := createPDB(t, ctx, ns, "guard", true)
	unprocessed := createPDB(t, ctx, ns, "unprocessed", false)

	admin := filepath.Join(t.TempDir(), "admin.kubeconfig")
	if err := cluster.WriteKubeconfig(admin); err != nil {
		t.Fatal(err)
	}
	documented := kubeconfigWithRules(t, ctx, admin, ns, "auditfix", auditFixRules)
	noEviction := kubeconfigWithRules(t, ctx, admin, ns, "auditfix-noevict", auditFixRules[:3])
	cli := func(kubeconfig string, args ...string) (int, string) {
		cmd := exec.CommandContext(ctx, peergroup, append([]string{"audit", "--kubeconfig", kubeconfig, "-n", ns}, args...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		start := time.Now()
		err := cmd.Run()
		if took := time.Since(start); took > 30*time.Second {
			t.Errorf("peergroup audit %s took %s", strings.Join(args, " "), took)
		}
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatalf("run peergroup: %v", err)
		}
		t.Logf("peergroup audit %s: exit %d\n%s", strings.Join(args, " "), cmd.ProcessState.ExitCode(), out.String())
		return cmd.ProcessState.ExitCode(), out.String()
	}
	blocked := "blocked " + ns + "/guarded: Cannot evict pod as it would violate the pod's disruption budget (The disruption budget " + guard + " needs 1 healthy pods and has 1 currently)"
	notYet := "blocked " + ns + "/unprocessed: Cannot evict pod as it would violate the pod's disruption budget (The disruption budget " + unprocessed + " is still being processed by the server)"
	steps := []struct {
		name       string
		kubeconfig string
		args       []string
		code       int
		lines      []string // in order; the last is the summary
		gone       []string // pods evicted by this step
	}{
		{"dry run", documented, []string{"--fix"}, 3, []string{
			"skipped " + ns + "/bare: no controller (a bare pod): evicting it deletes it for good; --include-bare evicts it anyway",
			"would evict " + ns + "/free",
			blocked,
			notYet,
			"dry run: 4 uninjected members: 1 would be evicted, 2 blocked, 0 failed, 1 skipped; nothing evicted (--yes evicts)",
		}, nil},
		// The dry run needs the same permission, so it finds a missing one.
		{"without pods/eviction", noEviction, []string{"--fix"}, 3, []string{
			"skipped " + ns + "/bare: no controller",
			"failed " + ns + `/free: pods "free" is forbidden: User "system:serviceaccount:` + ns + `:auditfix-noevict" cannot create resource "pods/eviction"`,
			"failed " + ns + "/guarded: ",
			"failed " + ns + "/unprocessed: ",
			"dry run: 4 uninjected members: 0 would be evicted, 0 blocked, 3 failed, 1 skipped",
		}, nil},
		{"evict", documented, []string{"--fix", "--yes"}, 3, []string{
			"skipped " + ns + "/bare: no controller",
			"evicted " + ns + "/free",
			blocked,
			notYet,
			"4 uninjected members: 1 evicted, 2 blocked, 0 failed, 1 skipped",
		}, []string{"free"}},
		{"evict bare pods too", documented, []string{"--fix", "--yes", "--include-bare"}, 3, []string{
			"evicted " + ns + "/bare",
			blocked,
			notYet,
			"3 uninjected members: 1 evicted, 2 blocked, 0 failed, 0 skipped",
		}, []string{"bare"}},
		{"audit", documented, nil, 1, []string{
			"4 pods checked: 2 group members without the injection",
			"",
			"namespace " + ns,
			"  guarded ",
			"  unprocessed ",
		}, nil},
	}
	gone := map[string]bool{}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			code, out := cli(step.kubeconfig, step.args...)
			if code != step.code {
				t.Errorf("exit %d, want %d", code, step.code)
			}
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if len(lines) != len(step.lines) {
				t.Errorf("%d lines, want %d", len(lines), len(step.lines))
			}
			for i := 0; i < len(lines) && i < len(step.lines); i++ {
				if !strings.HasPrefix(lines[i], step.lines[i]) {
					t.Errorf("line %d:\n  %s\nwant it to start with\n  %s", i+1, lines[i], step.lines[i])
				}
			}
			for _, name := range step.gone {
				gone[name] = true
			}
			requirePodsEvicted(t, ctx, ns, pods, gone)
		})
	}

	// --output json: each finding with what was done to it.
	t.Run("json", func(t *testing.T) {
		_, out := cli(documented, "--fix", "--output", "json")
		var results []struct {
			Pod, Group, Action, Detail string
			Recreate                   bool
		}
		if err := json.Unmarshal([]byte(out), &results); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if len(results) != 2 {
			t.Fatalf("json: %+v, want guarded and unprocessed", results)
		}
		for i, want := range []struct{ pod, budget string }{{"guarded", guard}, {"unprocessed", unprocessed}} {
			r := results[i]
			if r.Pod != want.pod || r.Group != "cassandra" || r.Action != "blocked" || !r.Recreate || !strings.Contains(r.Detail, "The disruption budget "+want.budget) {
				t.Errorf("json: %+v, want %s blocked by %s", r, want.pod, want.budget)
			}
		}
	})
}

// createAuditFixPods creates, in an unlabelled namespace (so the webhook
// leaves them alone), members-to-be owned by a ReplicaSet ("guarded",
// "unprocessed", "free"), a bare one, and an opted-out one; labels the namespace with a
// group, which makes the first three uninjected members as if created
// before peergroup; then creates an injected member. It returns the UIDs.
func createAuditFixPods(t *testing.T, ctx context.Context, ns string) map[string]types.UID {
	t.Helper()
	// Nothing runs the ReplicaSet here; it is the pods' controller of
	// record, so they count as recreated by a controller.
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "members"}}
	rs.Spec.Replicas = ptr.To[int32](4)
	rs.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "members"}}
	rs.Spec.Template.Labels = map[string]string{"app": "members"}
	rs.Spec.Template.Spec.Containers = []corev1.Container{{Name: "app", Image: "busybox"}}
	if err := cluster.Client.Create(ctx, rs); err != nil {
		t.Fatal(err)
	}
	owned := func(pod *corev1.Pod) *corev1.Pod {
		pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: ptr.To(true)}}
		return pod
	}
	before := []*corev1.Pod{
		owned(plainPod(ns, "guarded", map[string]string{"app": "members", "budget": "guard"})),
		owned(plainPod(ns, "unprocessed", map[string]string{"app": "members", "budget": "unprocessed"})),
		owned(plainPod(ns, "free", map[string]string{"app": "members"})),
		plainPod(ns, "bare", nil),
		owned(plainPod(ns, "outsider", map[string]string{"app": "members", contract.InjectLabel: "false"})),
	}
	for _, pod := range before {
		if err := cluster.Client.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
		requireUntouched(t, pod)
	}
	// The API server ignores a PodDisruptionBudget for a Pending pod, and
	// lets an unready one go while the budget is met: the pods under a
	// budget run and are ready, as a kubelet would report.
	for _, pod := range before[:2] {
		pod.Status.Phase = corev1.PodRunning
		pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		if err := cluster.Client.Status().Update(ctx, pod); err != nil {
			t.Fatalf("pod %s's status: %v", pod.Name, err)
		}
	}

	nsObj := &corev1.Namespace{}
	if err := cluster.Client.Get(ctx, client.ObjectKey{Name: ns}, nsObj); err != nil {
		t.Fatal(err)
	}
	nsObj.Labels[contract.GroupLabel] = "cassandra"
	if err := cluster.Client.Update(ctx, nsObj); err != nil {
		t.Fatal(err)
	}
	// The API server matches the namespaceSelector against its own
	// namespace cache, which may not have the label yet.
	eventually(t, 10*time.Second, "the namespace's label seen by the API server", func() bool {
		probe := plainPod(ns, "probe", nil)
		return cluster.Client.Create(ctx, probe, client.DryRunAll) == nil && initContainerCount(probe, contract.InitContainerName) == 1
	})
	injected := owned(plainPod(ns, "injected", map[string]string{"app": "members"}))
	if err := cluster.Client.Create(ctx, injected); err != nil {
		t.Fatal(err)
	}
	requireInjected(t, injected)

	uids := map[string]types.UID{injected.Name: injected.UID}
	for _, pod := range before {
		uids[pod.Name] = pod.UID
	}
	return uids
}

// createPDB covers the pods labelled budget=name with a budget that
// allows no disruption. No disruption controller runs here: processed
// writes its status as that controller would (one pod, healthy, needed);
// otherwise the API server sees a budget not processed yet.
func createPDB(t *testing.T, ctx context.Context, ns, name string, processed bool) string {
	t.Helper()
	pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	pdb.Spec.MinAvailable = ptr.To(intstr.FromInt32(1))
	pdb.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"budget": name}}
	if err := cluster.Client.Create(ctx, pdb); err != nil {
		t.Fatal(err)
	}
	if !processed {
		return pdb.Name
	}
	pdb.Status = policyv1.PodDisruptionBudgetStatus{
		ObservedGeneration: pdb.Generation,
		DisruptionsAllowed: 0, CurrentHealthy: 1, DesiredHealthy: 1, ExpectedPods: 1,
	}
	if err := cluster.Client.Status().Update(ctx, pdb); err != nil {
		t.Fatalf("PDB status: %v", err)
	}
	return pdb.Name
}

// kubeconfigWithRules writes a kubeconfig for a ServiceAccount bound to a
// ClusterRole of rules, removed when the test ends.
func kubeconfigWithRules(t *testing.T, ctx context.Context, admin, ns, name string, rules []rbacv1.PolicyRule) string {
	t.Helper()
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: ns + "-" + name}, Rules: rules}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: name}},
	}
	for _, obj := range []client.Object{role, binding} {
		if err := cluster.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cluster.Client.Delete(context.Background(), obj) })
	}
	path := filepath.Join(t.TempDir(), name+".kubeconfig")
	if err := cluster.WriteKubeconfigAs(admin, path, ns, name); err != nil {
		t.Fatal(err)
	}
	return path
}

// requirePodsEvicted: the pods in gone no longer exist; every other pod
// is the one created (same UID), untouched.
func requirePodsEvicted(t *testing.T, ctx context.Context, ns string, uids map[string]types.UID, gone map[string]bool) {
	t.Helper()
	for name, uid := range uids {
		pod := &corev1.Pod{}
		err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, pod)
		switch {
		case gone[name] && !apierrors.IsNotFound(err):
			t.Errorf("pod %s should be evicted: %v (deletionTimestamp %v)", name, err, pod.DeletionTimestamp)
		case !gone[name] && err != nil:
			t.Errorf("pod %s: %v", name, err)
		case !gone[name] && (pod.UID != uid || pod.DeletionTimestamp != nil):
			t.Errorf("pod %s was touched: uid %s (created %s), deletionTimestamp %v", name, pod.UID, uid, pod.DeletionTimestamp)
		}
	}
}

// auditCLI runs the peergroup binary's audit in ns with kubeconfig and
// returns its exit code and output.
func auditCLI(t *testing.T, ctx context.Context, peergroup, kubeconfig, ns string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, peergroup, append([]string{"audit", "--kubeconfig", kubeconfig, "-n", ns}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run peergroup: %v", err)
	}
	t.Logf("peergroup audit %s: exit %d\n%s", strings.Join(args, " "), cmd.ProcessState.ExitCode(), out.String())
	return cmd.ProcessState.ExitCode(), out.String()
}

// audit --fix never evicts a member whose replacement would be refused:
// under a LimitRange the injected container breaks (min cpu 50m, common in
// multi-tenant clusters) the audit itself decides the replacement would
// be denied, and skips it saying why; where the audit cannot know (a
// validating policy refuses the pods), the replacement's dry run through
// the API server is refused, and the pod is reported blocked (exit 3).
// Before, --fix --yes evicted such a pod, printed "1 evicted", exited 0,
// and the webhook denied the replacement.
func TestAuditFixNeverEvictsARefusedReplacement(t *testing.T) {
	ctx := testContext(t)
	peergroup, err := framework.BuildBinary(ctx, "peergroup", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	admin := filepath.Join(t.TempDir(), "admin.kubeconfig")
	if err := cluster.WriteKubeconfig(admin); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		setup func(ns string)
		code  int
		line  string
	}{
		{"a LimitRange the injection breaks", func(ns string) {
			lr := &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tenant"}, Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
				Type: corev1.LimitTypeContainer, Min: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m")},
			}}}}
			if err := cluster.Client.Create(ctx, lr); err != nil {
				t.Fatal(err)
			}
		}, 1, "/free: a new pod would not be injected either: member of group cassandra that the webhook would deny: peergroup: LimitRange "},
		{"a policy refusing the replacement", func(ns string) {
			nsObj := &corev1.Namespace{}
			if err := cluster.Client.Get(ctx, client.ObjectKey{Name: ns}, nsObj); err != nil {
				t.Fatal(err)
			}
			nsObj.Labels["audit-fix-test"] = "refuse"
			if err := cluster.Client.Update(ctx, nsObj); err != nil {
				t.Fatal(err)
			}
			refusePodsIn(t, ctx, ns+"-refuse", "audit-fix-test", "refuse")
			eventually(t, 10*time.Second, "the policy enforced", func() bool {
				return cluster.Client.Create(ctx, plainPod(ns, "x", nil), client.DryRunAll) != nil
			})
		}, 3, "/free: its replacement would not be admitted injected: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNamespace(t, nil)
			pods := createAuditFixPods(t, ctx, ns)
			tc.setup(ns)
			kubeconfig := kubeconfigWithRules(t, ctx, admin, ns, "auditfix", auditFixRules)
			code, out := auditCLI(t, ctx, peergroup, kubeconfig, ns, "--fix", "--yes")
			if code != tc.code || !strings.Contains(out, tc.line) || strings.Contains(out, "evicted "+ns) {
				t.Errorf("exit %d, want %d, a line containing %q and no eviction:\n%s", code, tc.code, tc.line, out)
			}
			requirePodsEvicted(t, ctx, ns, pods, nil)
		})
	}
}
