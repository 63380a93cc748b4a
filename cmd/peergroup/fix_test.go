package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/peergroup/peergroup/inspect"
)

// evictionCall is one eviction fixFindings asked for.
type evictionCall struct {
	pod    string
	dryRun bool
}

// fakeEvict stands in for the Eviction API: it records each call and
// answers with answers[pod name] (nil: evicted). The request itself is
// tested against a fake API server (TestEvictRequest).
func fakeEvict(answers map[string]error) (evictFunc, *[]evictionCall) {
	var calls []evictionCall
	return func(_ context.Context, pod *corev1.Pod, dryRun bool) error {
		calls = append(calls, evictionCall{pod: pod.Name, dryRun: dryRun})
		return answers[pod.Name]
	}, &calls
}

// pdbRefusal is the API server's answer when a PodDisruptionBudget allows
// no disruption (checkAndDecrement in the eviction REST handler).
func pdbRefusal() error {
	err := apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 0)
	err.ErrStatus.Details.Causes = append(err.ErrStatus.Details.Causes, metav1.StatusCause{
		Type: policyv1.DisruptionBudgetCause, Message: "The disruption budget db-pdb needs 1 healthy pods and has 1 currently",
	})
	return err
}

// The request evict posts, against a fake API server: a policy/v1
// Eviction to the pod's eviction subresource with the pod's UID as a
// precondition, dryRun=All as a query parameter for a dry run, and one
// request only, even for a 429 asking to retry after 10 s (client-go
// would repeat it for over 100 s).
func TestEvictRequest(t *testing.T) {
	budgetPending := metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure, Code: http.StatusTooManyRequests,
		Reason: metav1.StatusReasonTooManyRequests, Message: "Cannot evict pod as it would violate the pod's disruption budget.",
		Details: &metav1.StatusDetails{RetryAfterSeconds: 10, Causes: []metav1.StatusCause{{Type: policyv1.DisruptionBudgetCause, Message: "The disruption budget db-pdb is still being processed by the server."}}}}
	success := metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess, Code: http.StatusCreated}
	cases := []struct {
		name   string
		dryRun bool
		answer metav1.Status
		want   fixAction
		detail string
	}{
		{"evicted", false, success, fixEvicted, ""},
		{"dry run", true, success, fixWouldEvict, ""},
		{"blocked, retry after 10s", false, budgetPending, fixBlocked, "Cannot evict pod as it would violate the pod's disruption budget (The disruption budget db-pdb is still being processed by the server)"},
		{"blocked in a dry run", true, budgetPending, fixBlocked, "still being processed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var requests []*http.Request
			var bodies []policyv1.Eviction
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var e policyv1.Eviction
				if err := json.NewDecoder(r.Body).Decode(&e); err != nil {
					t.Errorf("body: %v", err)
				}
				requests, bodies = append(requests, r), append(bodies, e)
				w.Header().Set("Content-Type", "application/json")
				if tc.answer.Details != nil && tc.answer.Details.RetryAfterSeconds > 0 {
					w.Header().Set("Retry-After", "10")
				}
				w.WriteHeader(int(tc.answer.Code))
				_ = json.NewEncoder(w).Encode(tc.answer)
			}))
			defer srv.Close()
			evict, err := newEvictor(&rest.Config{Host: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "a", UID: "uid-a"}}
			start := time.Now()
			action, detail := outcome(evict(context.Background(), pod, tc.dryRun), tc.dryRun)
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("took %s: the 429 was retried", took)
			}
			if action != tc.want || !strings.Contains(detail, tc.detail) || (tc.detail == "" && detail != "") {
				t.Errorf("%s: %q, want %s: %q", action, detail, tc.want, tc.detail)
			}
			if len(requests) != 1 {
				t.Fatalf("%d requests, want 1", len(requests))
			}
			r, e := requests[0], bodies[0]
			wantDryRun := map[bool]string{true: "All", false: ""}[tc.dryRun]
			if r.Method != http.MethodPost || r.URL.Path != "/api/v1/namespaces/db/pods/a/eviction" || r.URL.Query().Get("dryRun") != wantDryRun {
				t.Errorf("request %s %s, want POST /api/v1/namespaces/db/pods/a/eviction with dryRun=%q", r.Method, r.URL, wantDryRun)
			}
			if e.APIVersion != "policy/v1" || e.Kind != "Eviction" || e.Namespace != "db" || e.Name != "a" ||
				e.DeleteOptions == nil || e.DeleteOptions.Preconditions == nil || ptr.Deref(e.DeleteOptions.Preconditions.UID, "") != "uid-a" {
				t.Errorf("eviction %+v, want policy/v1 Eviction db/a with UID precondition uid-a", e)
			}
		})
	}
}

func TestFixOnePod(t *testing.T) {
	managed := func(name string, edit ...func(*corev1.Pod)) corev1.Pod {
		p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: name, UID: types.UID("uid-" + name),
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: "rs-uid", Controller: ptr.To(true)}}}}
		p.Status.Phase = corev1.PodRunning
		for _, e := range edit {
			e(&p)
		}
		return p
	}
	bare := func(p *corev1.Pod) { p.OwnerReferences = nil }
	// Not a controller: an owner alone does not recreate the pod.
	ownedNotControlled := func(p *corev1.Pod) { p.OwnerReferences[0].Controller = nil }
	mirror := func(p *corev1.Pod) {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: "n1", UID: "n", Controller: ptr.To(true)}}
		p.Annotations = map[string]string{corev1.MirrorPodAnnotationKey: "hash"}
	}
	terminating := func(p *corev1.Pod) {
		p.DeletionTimestamp = ptr.To(metav1.Now())
		p.Finalizers = []string{"example.com/hold"} // the fake client refuses a deletionTimestamp without one
	}
	succeeded := func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }
	podsResource := schema.GroupResource{Resource: "pods"}

	cases := []struct {
		name        string
		pod         corev1.Pod
		noRecreate  bool // the finding's Recreate is false
		answer      error
		cfg         fixConfig
		want        fixAction
		detail      string
		wantEvicted bool // an eviction was posted
	}{
		{"managed, --yes", managed("a"), false, nil, fixConfig{Fix: true, Evict: true}, fixEvicted, "", true},
		{"managed, dry run", managed("a"), false, nil, fixConfig{Fix: true}, fixWouldEvict, "", true},
		{"PDB allows no disruption", managed("a"), false, pdbRefusal(), fixConfig{Fix: true, Evict: true}, fixBlocked,
			"Cannot evict pod as it would violate the pod's disruption budget (The disruption budget db-pdb needs 1 healthy pods and has 1 currently)", true},
		{"PDB, dry run", managed("a"), false, pdbRefusal(), fixConfig{Fix: true}, fixBlocked, "The disruption budget db-pdb", true},
		{"PDB still being processed", managed("a"), false, apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 10), fixConfig{Fix: true, Evict: true}, fixBlocked,
			"Cannot evict pod as it would violate the pod's disruption budget", true},
		{"no RBAC", managed("a"), false, apierrors.NewForbidden(schema.GroupResource{Resource: "pods/eviction"}, "a", errors.New("RBAC: denied")), fixConfig{Fix: true}, fixFailed,
			`pods/eviction "a" is forbidden: RBAC: denied`, true},
		{"more than one PDB", managed("a"), false, &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: 500,
			Message: "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."}}, fixConfig{Fix: true, Evict: true}, fixFailed,
			"This pod has more than one PodDisruptionBudget, which the eviction subresource does not support", true},
		{"gone since the audit", managed("a"), false, apierrors.NewNotFound(podsResource, "a"), fixConfig{Fix: true, Evict: true}, fixSkipped, "gone since the audit", true},
		{"recreated since the audit", managed("a"), false, apierrors.NewConflict(podsResource, "a", errors.New("Precondition failed: UID in precondition: uid-a, UID in object meta: uid-b")),
			fixConfig{Fix: true, Evict: true}, fixSkipped, "recreated under the same name since the audit", true},
		{"bare pod", managed("a", bare), false, nil, fixConfig{Fix: true, Evict: true}, fixSkipped, "no controller (a bare pod): evicting it deletes it for good; --include-bare evicts it anyway", false},
		{"owned, no controller", managed("a", ownedNotControlled), false, nil, fixConfig{Fix: true, Evict: true}, fixSkipped, "no controller", false},
		{"bare pod, --include-bare", managed("a", bare), false, nil, fixConfig{Fix: true, Evict: true, IncludeBare: true}, fixEvicted, "", true},
		{"mirror pod", managed("a", mirror), false, nil, fixConfig{Fix: true, Evict: true, IncludeBare: true}, fixSkipped, "the mirror of a static pod", false},
		{"terminating", managed("a", terminating), false, nil, fixConfig{Fix: true, Evict: true}, fixSkipped, "already terminating", false},
		{"finished", managed("a", succeeded), false, nil, fixConfig{Fix: true, Evict: true}, fixSkipped, "finished (Succeeded)", false},
		{"replacement would be denied", managed("a"), true, nil, fixConfig{Fix: true, Evict: true}, fixSkipped, "a new pod would not be injected either: member of group g", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			evict, calls := fakeEvict(map[string]error{tc.pod.Name: tc.answer})
			f := inspect.Finding{Namespace: "db", Pod: tc.pod.Name, Group: "g", Reason: "member of group g", Recreate: !tc.noRecreate}
			var reported []fixResult
			results, err := fixFindings(context.Background(), evict, admitsAll, []corev1.Pod{tc.pod}, []inspect.Finding{f}, tc.cfg, func(r fixResult) { reported = append(reported, r) })
			if err != nil {
				t.Fatal(err)
			}
			if len(results) != 1 || len(reported) != 1 {
				t.Fatalf("results %+v, reported %+v: want one of each", results, reported)
			}
			r := results[0]
			if r.Action != tc.want || !strings.Contains(r.Detail, tc.detail) || (tc.detail == "" && r.Detail != "") {
				t.Errorf("got %q, want action %q with detail %q", r, tc.want, tc.detail)
			}
			if !tc.wantEvicted {
				if len(*calls) != 0 {
					t.Errorf("evictions posted for a skipped pod: %+v", *calls)
				}
				return
			}
			want := evictionCall{pod: tc.pod.Name, dryRun: !tc.cfg.Evict}
			if len(*calls) != 1 || (*calls)[0] != want {
				t.Errorf("evictions %+v, want exactly %+v", *calls, want)
			}
		})
	}
}

// One line per pod, in the findings' order, then the summary; the exit
// code says whether anything was refused (3), or left (1).
func TestFixLinesSummaryAndExitCode(t *testing.T) {
	pod := func(name string, owned bool) corev1.Pod {
		p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: name, UID: types.UID(name)}}
		if owned {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "s", UID: "s", Controller: ptr.To(true)}}
		}
		return p
	}
	finding := func(name string) inspect.Finding {
		return inspect.Finding{Namespace: "db", Pod: name, Group: "g", Reason: "member of group g", Recreate: true}
	}
	cases := []struct {
		name    string
		pods    []corev1.Pod
		answers map[string]error
		cfg     fixConfig
		lines   []string
		code    int
	}{
		{"all evicted", []corev1.Pod{pod("a", true), pod("b", true)}, nil, fixConfig{Fix: true, Evict: true},
			[]string{"evicted db/a", "evicted db/b", "2 uninjected members: 2 evicted, 0 blocked, 0 failed, 0 skipped"}, 0},
		{"dry run", []corev1.Pod{pod("a", true), pod("b", true)}, nil, fixConfig{Fix: true},
			[]string{"would evict db/a", "would evict db/b", "dry run: 2 uninjected members: 2 would be evicted, 0 blocked, 0 failed, 0 skipped; nothing evicted (--yes evicts)"}, exitRemaining},
		{"one blocked", []corev1.Pod{pod("a", true), pod("b", true)}, map[string]error{"a": pdbRefusal()}, fixConfig{Fix: true, Evict: true},
			[]string{"blocked db/a: Cannot evict pod as it would violate the pod's disruption budget (The disruption budget db-pdb needs 1 healthy pods and has 1 currently)",
				"evicted db/b", "2 uninjected members: 1 evicted, 1 blocked, 0 failed, 0 skipped"}, exitRefused},
		{"blocked in a dry run", []corev1.Pod{pod("a", true)}, map[string]error{"a": pdbRefusal()}, fixConfig{Fix: true},
			[]string{"blocked db/a: Cannot evict pod", "dry run: 1 uninjected members: 0 would be evicted, 1 blocked, 0 failed, 0 skipped"}, exitRefused},
		{"one skipped", []corev1.Pod{pod("a", true), pod("bare", false)}, nil, fixConfig{Fix: true, Evict: true},
			[]string{"evicted db/a", "skipped db/bare: no controller", "2 uninjected members: 1 evicted, 0 blocked, 0 failed, 1 skipped"}, exitRemaining},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			evict, _ := fakeEvict(tc.answers)
			var findings []inspect.Finding
			for _, p := range tc.pods {
				findings = append(findings, finding(p.Name))
			}
			var out bytes.Buffer
			results, err := fixFindings(context.Background(), evict, admitsAll, tc.pods, findings, tc.cfg, func(r fixResult) { out.WriteString(r.String() + "\n") })
			if err != nil {
				t.Fatal(err)
			}
			out.WriteString(fixSummary(results, tc.cfg) + "\n")
			got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			if len(got) != len(tc.lines) {
				t.Fatalf("output:\n%s\nwant %d lines", out.String(), len(tc.lines))
			}
			for i, want := range tc.lines {
				if !strings.HasPrefix(got[i], want) {
					t.Errorf("line %d: %q, want it to start with %q", i+1, got[i], want)
				}
			}
			if code := fixExitCode(results); code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
		})
	}
}

// An interrupted run stops before the next eviction and says how far it got.
func TestFixStopsWhenInterrupted(t *testing.T) {
	pods := []corev1.Pod{{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "a"}}}
	evict, calls := fakeEvict(nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := fixFindings(ctx, evict, admitsAll, pods, []inspect.Finding{{Namespace: "db", Pod: "a", Recreate: true}}, fixConfig{Fix: true, Evict: true, IncludeBare: true}, func(fixResult) {})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "stopped after 0 of 1 pods") || len(*calls) != 0 {
		t.Errorf("err %v, evictions %+v; want a stop before any eviction", err, *calls)
	}
}

// --yes and --include-bare alone are usage errors: without --fix nothing
// would be evicted, and the user should not think otherwise.
func TestFixFlagsNeedFix(t *testing.T) {
	for _, args := range [][]string{{"audit", "--yes"}, {"audit", "--include-bare"}} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), args, strings.NewReader(""), &out, &errOut)
		if code != 2 || !strings.Contains(errOut.String(), "--yes and --include-bare need --fix") {
			t.Errorf("%v: exit %d, stderr %q", args, code, errOut.String())
		}
	}
}

// admitsAll stands for an API server that admits every replacement injected.
func admitsAll(context.Context, *corev1.Pod) string { return "" }

// A replacement the API server would not admit injected (a policy, a
// quota, an unreachable webhook) blocks the eviction: exit 3, the reason
// printed, nothing evicted (before: the pod was evicted and its
// replacement refused).
func TestFixBlockedByTheReplacementsAdmission(t *testing.T) {
	pod := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "a", UID: "u",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: "r", Controller: ptr.To(true)}}}}
	evict, calls := fakeEvict(nil)
	refuses := func(context.Context, *corev1.Pod) string { return "other: refused by a policy" }
	results, err := fixFindings(context.Background(), evict, refuses, []corev1.Pod{pod}, []inspect.Finding{{Namespace: "db", Pod: "a", Recreate: true}}, fixConfig{Fix: true, Evict: true}, func(fixResult) {})
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 1 || results[0].Action != fixBlocked || !strings.Contains(results[0].Detail, "its replacement would not be admitted injected: other: refused by a policy") {
		t.Fatalf("results %+v", results)
	}
	if len(*calls) != 0 {
		t.Errorf("evicted: %+v", *calls)
	}
	if code := fixExitCode(results); code != exitRefused {
		t.Errorf("exit %d, want %d", code, exitRefused)
	}
}
