package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/inspect"
	"github.com/peergroup/peergroup/probe"
	"github.com/peergroup/peergroup/webhook/admit"
)

// Exit codes of audit --fix besides 0 (nothing left uninjected) and 2
// (bad usage, or the audit itself failed).
const (
	// exitRemaining: uninjected members remain and nothing was refused: a
	// dry run, or pods skipped.
	exitRemaining = 1
	// exitRefused: an eviction was blocked by a PodDisruptionBudget or
	// failed (in a dry run: would be); run again later.
	exitRefused = 3
)

// fixConfig is what audit --fix was asked to do.
type fixConfig struct {
	// Fix turns the audit into evictions of its findings.
	Fix bool
	// Evict (--yes) evicts. Without it every eviction is a server-side dry
	// run: the API server checks the PodDisruptionBudgets and deletes
	// nothing, so the dry run says which evictions would be blocked.
	Evict bool
	// IncludeBare evicts pods without a controller too, which deletes them
	// for good: nothing recreates them.
	IncludeBare bool
}

// fixFlags registers --fix, --yes and --include-bare on fs.
func fixFlags(fs *flag.FlagSet) *fixConfig {
	cfg := &fixConfig{}
	fs.BoolVar(&cfg.Fix, "fix", false, "evict the uninjected members through the Eviction API (PodDisruptionBudgets are respected) so that their controllers recreate them and the webhook injects the new pods; a server-side dry run unless --yes. "+
		"Exit 0 when none is left uninjected, 1 when some remain (a dry run, or skipped pods), 3 when an eviction was blocked by a PodDisruptionBudget or failed (in a dry run: would be)")
	fs.BoolVar(&cfg.Evict, "yes", false, "with --fix: evict (default: a dry run that only prints what it would evict)")
	fs.BoolVar(&cfg.IncludeBare, "include-bare", false, "with --fix: evict pods without a controller too; nothing recreates them, so they are gone for good")
	return cfg
}

func (cfg fixConfig) validate() error {
	if !cfg.Fix && (cfg.Evict || cfg.IncludeBare) {
		return errors.New("audit: --yes and --include-bare need --fix")
	}
	return nil
}

// fixAction is what --fix did with one finding, as printed.
type fixAction string

const (
	fixEvicted    fixAction = "evicted"
	fixWouldEvict fixAction = "would evict"
	fixBlocked    fixAction = "blocked"
	fixFailed     fixAction = "failed"
	fixSkipped    fixAction = "skipped"
)

// fixResult is one finding and what --fix did with it.
type fixResult struct {
	inspect.Finding
	Action fixAction `json:"action"`
	// Detail is the API server's answer (blocked, failed) or why the pod
	// was skipped.
	Detail string `json:"detail,omitempty"`
}

func (r fixResult) String() string {
	line := string(r.Action) + " " + r.Namespace + "/" + r.Pod
	if r.Detail != "" {
		line += ": " + r.Detail
	}
	return line
}

// auditState is what the audit read from the cluster, and how.
type auditState struct {
	Pods    []corev1.Pod
	Cluster inspect.AuditCluster
	Config  admit.Config
	Output  string
}

// auditFix evicts the findings whose replacement would be injected: the
// audit decided so with what the webhook decides with, and before each
// eviction the API server is asked (a dry-run create of the replacement)
// whether it would admit the replacement injected.
func auditFix(ctx context.Context, c client.Client, in auditState, cfg fixConfig, stdout io.Writer) (int, error) {
	findings := inspect.Uninjected(in.Pods, in.Cluster, in.Config)
	if len(findings) == 0 {
		if in.Output == "json" {
			fmt.Fprintln(stdout, "[]")
		} else {
			printFindings(stdout, nil, len(in.Pods))
		}
		return 0, nil
	}
	restCfg, err := restConfig()
	if err != nil {
		return 2, err
	}
	evict, err := newEvictor(restCfg)
	if err != nil {
		return 2, err
	}
	admitted := replacementCheck(restCfg)
	// Text is printed as each eviction is answered; JSON once, at the end.
	report := func(r fixResult) { fmt.Fprintln(stdout, r) }
	if in.Output == "json" {
		report = func(fixResult) {}
	}
	results, err := fixFindings(ctx, evict, admitted, in.Pods, findings, cfg, report)
	if err != nil {
		return 2, err
	}
	if in.Output == "json" {
		if err := writeJSON(stdout, results); err != nil {
			return 2, err
		}
	} else {
		fmt.Fprintln(stdout, fixSummary(results, cfg))
	}
	return fixExitCode(results), nil
}

// fixFindings evicts the pod of each finding in turn (a dry run unless
// cfg.Evict) and reports each result as it comes. Only the findings' pods
// are ever evicted. It stops when ctx is done.
func fixFindings(ctx context.Context, evict evictFunc, admitted replacementFunc, pods []corev1.Pod, findings []inspect.Finding, cfg fixConfig, report func(fixResult)) ([]fixResult, error) {
	byKey := make(map[client.ObjectKey]*corev1.Pod, len(pods))
	for i := range pods {
		byKey[client.ObjectKeyFromObject(&pods[i])] = &pods[i]
	}
	results := make([]fixResult, 0, len(findings))
	for _, f := range findings {
		if err := ctx.Err(); err != nil {
			return results, fmt.Errorf("audit --fix stopped after %d of %d pods: %w", len(results), len(findings), err)
		}
		r := fixOne(ctx, evict, admitted, byKey[client.ObjectKey{Namespace: f.Namespace, Name: f.Pod}], f, cfg)
		report(r)
		results = append(results, r)
	}
	return results, nil
}

func fixOne(ctx context.Context, evict evictFunc, admitted replacementFunc, pod *corev1.Pod, f inspect.Finding, cfg fixConfig) fixResult {
	r := fixResult{Finding: f}
	if why := skipReason(pod, f, cfg.IncludeBare); why != "" {
		r.Action, r.Detail = fixSkipped, why
		return r
	}
	if why := admitted(ctx, pod); why != "" {
		// The audit's decision and the API server's disagree (a policy,
		// a quota, an unreachable webhook): evicting it would leave its
		// controller without a pod, so it is reported for the user to act.
		r.Action, r.Detail = fixBlocked, "its replacement would not be admitted injected: "+why
		return r
	}
	r.Action, r.Detail = outcome(evict(ctx, pod, !cfg.Evict), !cfg.Evict)
	return r
}

// skipReason says why the finding's pod is not evicted; "" evicts it.
func skipReason(pod *corev1.Pod, f inspect.Finding, includeBare bool) string {
	switch {
	case pod == nil:
		return "not among the pods listed" // cannot happen: findings come from the list
	case !f.Recreate:
		return "a new pod would not be injected either: " + f.Reason
	case pod.DeletionTimestamp != nil:
		return "already terminating"
	case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
		// A controller replaced it (or finished with it) when it ended;
		// evicting it only deletes it.
		return fmt.Sprintf("finished (%s): evicting it would not recreate it", pod.Status.Phase)
	case pod.Annotations[corev1.MirrorPodAnnotationKey] != "":
		return "the mirror of a static pod: the kubelet recreates it from its manifest, not through the webhook"
	case metav1.GetControllerOf(pod) == nil && !includeBare:
		return "no controller (a bare pod): evicting it deletes it for good; --include-bare evicts it anyway"
	}
	return ""
}

// replacementFunc says why the API server would not admit the pod that
// replaces pod, injected; "" when it would.
type replacementFunc func(ctx context.Context, pod *corev1.Pod) string

// replacementCheck dry-runs the pod's replacement through the API server
// (every admission step, peergroup's webhook among them, as for the pod the
// controller will create; nothing is stored, and peergroup creates no
// Service for a dry run) and reads the outcome as `peergroup check` does.
func replacementCheck(cfg *rest.Config) replacementFunc {
	return func(ctx context.Context, pod *corev1.Pod) string {
		r := probe.Replacement(ctx, cfg, pod)
		if r.Outcome == probe.Reachable {
			return ""
		}
		return r.Outcome + ": " + r.Detail
	}
}

// evictFunc evicts pod through the Eviction API; with dryRun the API
// server checks the eviction and deletes nothing.
type evictFunc func(ctx context.Context, pod *corev1.Pod, dryRun bool) error

// newEvictor posts Evictions with client-go's own REST client, because
// the request needs its retries off (see evict) and controller-runtime's
// client has no such option.
func newEvictor(cfg *rest.Config) (evictFunc, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create the eviction client: %w", err)
	}
	rc := cs.PolicyV1().RESTClient()
	return func(ctx context.Context, pod *corev1.Pod, dryRun bool) error { return evict(ctx, rc, pod, dryRun) }, nil
}

// evict posts a policy/v1 Eviction for pod, as client-go's
// Evictions().Evict does. The API server refuses it (429) where a
// PodDisruptionBudget allows no disruption, and honours dryRun: it checks
// the budget, decrements nothing and deletes nothing. dryRun is a query
// parameter, so the request is a dry run for admission too.
//
// Retries are off: client-go would silently repeat a 429 that carries
// Retry-After (a budget the disruption controller has not processed yet
// asks for 10 s) up to 10 times, over 100 s per pod; the refusal is
// reported instead, and the user runs --fix again.
//
// The UID precondition keeps a pod recreated under the same name since
// the audit (a StatefulSet's, injected) from being evicted in its place.
func evict(ctx context.Context, rc rest.Interface, pod *corev1.Pod, dryRun bool) error {
	eviction := &policyv1.Eviction{
		ObjectMeta:    metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name},
		DeleteOptions: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pod.UID}},
	}
	opts := &metav1.CreateOptions{}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	// Unwrapped: the line printed names the pod, and a transport error
	// names the eviction's URL.
	return rc.Post().AbsPath("/api/v1").Namespace(pod.Namespace).Resource("pods").Name(pod.Name).SubResource("eviction").
		VersionedParams(opts, scheme.ParameterCodec).Body(eviction).MaxRetries(0).Do(ctx).Error()
}

// outcome turns the Eviction API's answer into the action printed.
func outcome(err error, dryRun bool) (fixAction, string) {
	switch {
	case err == nil && dryRun:
		return fixWouldEvict, ""
	case err == nil:
		return fixEvicted, ""
	case apierrors.IsNotFound(err):
		return fixSkipped, "gone since the audit"
	case apierrors.IsConflict(err) && strings.Contains(err.Error(), "UID in"):
		// The UID precondition: "the UID in the precondition ... does not
		// match" from the eviction, "UID in precondition" from the store.
		return fixSkipped, "recreated under the same name since the audit"
	case apierrors.IsTooManyRequests(err) || budgetCause(err) != "":
		return fixBlocked, refusal(err)
	}
	return fixFailed, refusal(err)
}

// refusal is the API server's message with the PodDisruptionBudget's
// cause (which names the budget and its healthy pods) appended.
func refusal(err error) string {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return err.Error()
	}
	msg := strings.TrimSuffix(status.Status().Message, ".")
	if cause := budgetCause(err); cause != "" {
		msg += " (" + cause + ")"
	}
	return msg
}

// budgetCause is the DisruptionBudget cause of an eviction refusal, if any.
func budgetCause(err error) string {
	var status apierrors.APIStatus
	if !errors.As(err, &status) || status.Status().Details == nil {
		return ""
	}
	var causes []string
	for _, c := range status.Status().Details.Causes {
		if c.Type == policyv1.DisruptionBudgetCause {
			causes = append(causes, strings.TrimSuffix(c.Message, "."))
		}
	}
	return strings.Join(causes, "; ")
}

// fixSummary is the last line: how many of each action.
func fixSummary(results []fixResult, cfg fixConfig) string {
	n := map[fixAction]int{}
	for _, r := range results {
		n[r.Action]++
	}
	if !cfg.Evict {
		return fmt.Sprintf("dry run: %d uninjected members: %d would be evicted, %d blocked, %d failed, %d skipped; nothing evicted (--yes evicts)",
			len(results), n[fixWouldEvict], n[fixBlocked], n[fixFailed], n[fixSkipped])
	}
	return fmt.Sprintf("%d uninjected members: %d evicted, %d blocked, %d failed, %d skipped",
		len(results), n[fixEvicted], n[fixBlocked], n[fixFailed], n[fixSkipped])
}

// fixExitCode: exitRefused when an eviction was blocked or failed,
// exitRemaining when a pod was left as it is, else 0.
func fixExitCode(results []fixResult) int {
	code := 0
	for _, r := range results {
		switch r.Action {
		case fixBlocked, fixFailed:
			return exitRefused
		case fixWouldEvict, fixSkipped:
			code = exitRemaining
		}
	}
	return code
}
