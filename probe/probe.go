// Package probe asks the API server what it would do with a pod, by a
// server-side dry run, and reads the answer: whether it can call the
// webhook (`peergroup check`), and whether it would admit, injected, the
// replacement of a pod `peergroup audit --fix` is about to evict. It never
// decides anything itself; the API server and the webhook do.
package probe

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/contract"
)

// The outcomes of `peergroup check`.
const (
	Reachable   = "reachable"   // the API server called peergroup and the pod was injected
	NotCalled   = "not called"  // the API server admitted a member pod without calling peergroup
	Unreachable = "unreachable" // the API server could not call the webhook
	Denied      = "denied"      // peergroup answered and refused the probe pod
	Other       = "other"       // another webhook or admission step refused the probe pod
	Error       = "error"       // the dry run failed for another reason (RBAC, namespace missing)
)

// Result is what `peergroup check` found, with what to do about it.
type Result struct {
	Outcome string   `json:"outcome"`
	Detail  string   `json:"detail"`
	Hints   []string `json:"hints,omitempty"`
}

// ProbePod is the member pod `peergroup check` dry-runs: one container, the
// group label, so both of the chart's webhook entries would send it.
func Pod(namespace, group string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "peergroup-check-",
			Namespace:    namespace,
			Labels:       map[string]string{contract.GroupLabel: group},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "probe", Image: "registry.k8s.io/pause:3.10",
			Ports: []corev1.ContainerPort{{Name: "peer", ContainerPort: 7000}},
			// The origin mark: peergroup keeps an env var the user set
			// and answers with a warning naming it, which the API server
			// returns even when a later admission step refuses the pod.
			Env: []corev1.EnvVar{{Name: contract.EnvSeedsFile, Value: probeMark}},
			// Pod Security "restricted" and a quota on limits admit it, so
			// the answer is about the webhook, not about the probe.
			SecurityContext: &corev1.SecurityContext{
				RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](65532), AllowPrivilegeEscalation: ptr.To(false),
				Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
			},
		}}},
	}
}

// probeMark is the probe's own value of PEERGROUP_SEEDS_FILE.
const probeMark = "peergroup-check"

// reachedBy reports whether peergroup answered the probe: its warning
// about the probe's own PEERGROUP_SEEDS_FILE came back.
func reachedBy(warnings []string) bool {
	return slices.ContainsFunc(warnings, func(w string) bool {
		return strings.HasPrefix(w, "peergroup: ") && strings.Contains(w, contract.EnvSeedsFile) && strings.Contains(w, probeMark)
	})
}

// RunCheck dry-runs ProbePod in namespace through the API server of cfg
// and diagnoses the answer: the namespace first (a dry run in a namespace
// that does not exist says nothing about the webhook), then the pod, with
// the warnings the API server returned.
func Run(ctx context.Context, cfg *rest.Config, namespace, group string) Result {
	c, warnings, err := warningClient(cfg)
	if err != nil {
		return Result{Outcome: Error, Detail: fmt.Sprintf("create a client: %v", err)}
	}
	ns := &corev1.Namespace{}
	switch err := c.Get(ctx, client.ObjectKey{Name: namespace}, ns); {
	case apierrors.IsNotFound(err):
		return Result{Outcome: Error, Detail: fmt.Sprintf("namespace %s does not exist, so a pod there says nothing about the webhook", namespace),
			Hints: []string{"run with -n and a namespace where member pods are created"}}
	case err != nil && !apierrors.IsForbidden(err):
		return Result{Outcome: Error, Detail: fmt.Sprintf("read namespace %s: %v", namespace, err)}
	}
	pod := Pod(namespace, group)
	err = c.Create(ctx, pod, client.DryRunAll)
	return Diagnose(pod, err, warnings.all())
}

// CheckReplacement dry-runs the pod a controller would create in place of
// pod (Replacement) through the API server and diagnoses the answer as
// RunCheck does, except that any refusal is one: peergroup answering and a
// later step refusing (outcome other) still leaves no pod.
func Replacement(ctx context.Context, cfg *rest.Config, pod *corev1.Pod) Result {
	c, warnings, err := warningClient(cfg)
	if err != nil {
		return Result{Outcome: Error, Detail: fmt.Sprintf("create a client: %v", err)}
	}
	repl := ReplacementPod(pod)
	err = c.Create(ctx, repl, client.DryRunAll)
	r := Diagnose(repl, err, warnings.all())
	if err != nil && r.Outcome != Unreachable && r.Outcome != Denied {
		// The replacement carries no probe mark: whoever refused it, it
		// is refused.
		return Result{Outcome: Other, Detail: "the API server refuses it: " + err.Error()}
	}
	return r
}

// Replacement is the pod its controller would create in place of pod, as
// near as the pod tells: its labels, annotations, owner and spec, without
// what the API server and its admission steps set on the stored pod (node,
// priority and overhead, which they compute again and refuse when given).
func ReplacementPod(pod *corev1.Pod) *corev1.Pod {
	r := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}}
	r.Namespace, r.Labels, r.Annotations = pod.Namespace, pod.Labels, pod.Annotations
	r.GenerateName = pod.GenerateName
	if r.GenerateName == "" {
		r.GenerateName = pod.Name + "-"
	}
	for _, ref := range pod.OwnerReferences {
		ref.BlockOwnerDeletion = nil // needs update on the owner's finalizers; irrelevant to a dry run
		r.OwnerReferences = append(r.OwnerReferences, ref)
	}
	r.Spec = *pod.Spec.DeepCopy()
	r.Spec.NodeName, r.Spec.Priority, r.Spec.PreemptionPolicy, r.Spec.Overhead = "", nil, nil, nil
	r.Spec.EphemeralContainers = nil
	return r
}

// warningClient is a client whose API server warnings are kept.
func warningClient(cfg *rest.Config) (client.Client, *warningLog, error) {
	warnings := &warningLog{}
	cfg = rest.CopyConfig(cfg)
	cfg.WarningHandler = warnings
	c, err := client.New(cfg, client.Options{})
	return c, warnings, err
}

// warningLog keeps the API server's warnings (rest.WarningHandler).
type warningLog struct {
	mu       sync.Mutex
	warnings []string
}

func (w *warningLog) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.warnings = append(w.warnings, text)
}

func (w *warningLog) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.warnings)
}

// peergroupWebhook reports whether a webhook name in the API server's
// message is one of the chart's entries (<entry>.peergroup.dev).
func peergroupWebhook(name string) bool {
	return strings.HasSuffix(name, "."+contract.Domain)
}

// webhookIn finds the webhook name the API server quotes after prefix.
func webhookIn(msg, prefix string) (string, bool) {
	_, rest, ok := strings.Cut(msg, prefix+` "`)
	if !ok {
		return "", false
	}
	name, _, ok := strings.Cut(rest, `"`)
	return name, ok
}

// Diagnose reads the outcome of a server-side dry-run create of
// ProbePod: the admitted pod, or the API server's error, and its warnings.
// The API server reports a webhook it could not call as `failed calling
// webhook "<name>": …` with the transport's error, which says where the
// path breaks. Whether peergroup answered is read from its warning about
// the probe's mark, never from the wording of another step's refusal.
func Diagnose(admitted *corev1.Pod, err error, warnings []string) Result {
	if err == nil {
		for _, c := range admitted.Spec.InitContainers {
			if c.Name == contract.InitContainerName {
				return Result{Outcome: Reachable, Detail: "the API server called peergroup and the probe pod came back injected (dry run: nothing was created)"}
			}
		}
		return Result{Outcome: NotCalled, Detail: "the API server admitted a member pod without the injection: no webhook entry sent it to peergroup",
			Hints: []string{
				"is the chart installed? kubectl get mutatingwebhookconfigurations -l app.kubernetes.io/name=peergroup",
				"is the namespace excluded (the release namespace, kube-system, webhook.excludedNamespaces)?",
				"with failurePolicy Ignore, an unreachable webhook looks the same: run with a namespace where it is Fail, or look at the API server's log",
			}}
	}
	msg := err.Error()
	if name, ok := webhookIn(msg, "failed calling webhook"); ok {
		if !peergroupWebhook(name) {
			return Result{Outcome: Other, Detail: fmt.Sprintf("another webhook, %q, could not be called, and the API server refused the pod for it before peergroup's answer counted: %s", name, msg),
				Hints: []string{"that webhook's owner must fix it (or its failurePolicy); peergroup's own reachability is unknown until then"}}
		}
		return Result{Outcome: Unreachable, Detail: "the API server could not call the webhook: " + msg, Hints: unreachableHints(msg)}
	}
	if name, ok := webhookIn(msg, "admission webhook"); ok && strings.Contains(msg, "denied the request") {
		if peergroupWebhook(name) {
			return Result{Outcome: Denied, Detail: "peergroup was reached and refused the probe pod: " + msg}
		}
		return Result{Outcome: Other, Detail: fmt.Sprintf("another webhook, %q, refused the probe pod: %s", name, msg)}
	}
	if reachedBy(warnings) {
		// Pod Security, a quota, a policy judged the injected pod: peergroup
		// answered, and another admission step refused what it made.
		return Result{Outcome: Reachable, Detail: "peergroup was reached (its warning came back), and another admission step refused the injected pod: " + msg,
			Hints: []string{"member pods of this namespace would be refused the same way: see the message"}}
	}
	if strings.Contains(msg, "cannot create resource") {
		return Result{Outcome: Error, Detail: "the dry run was not allowed: " + msg,
			Hints: []string{"the check needs permission to create pods in the namespace (a server-side dry run)"}}
	}
	return Result{Outcome: Error, Detail: fmt.Sprintf("the dry run failed before any webhook answered: %s", msg),
		Hints: []string{"does the namespace exist? an admission step before the webhooks refused the probe pod"}}
}

// unreachableHints match the transport error to where the path breaks.
func unreachableHints(msg string) []string {
	// The API server writes `failed to call webhook: Post "<url>?timeout=5s": <transport error>`:
	// only the part after the URL says what went wrong.
	cause := msg
	if _, rest, ok := strings.Cut(msg, `Post "`); ok {
		if _, after, ok := strings.Cut(rest, `": `); ok {
			cause = after
		}
	}
	lower := strings.ToLower(cause)
	switch {
	case strings.Contains(lower, "x509") || strings.Contains(lower, "certificate"):
		return []string{
			"the serving certificate is not trusted by the caBundle: in selfSigned mode the webhook patches it itself (is something resetting it? docs/install.md, GitOps); in certManager mode check cert-manager's cainjector; in provided mode, certificates.provided.caBundle",
		}
	case strings.Contains(lower, "no endpoints available") || strings.Contains(lower, "connection refused"):
		return []string{
			"no webhook pod is ready, or the port is wrong: kubectl get pods,endpointslices -n <release namespace> -l app.kubernetes.io/name=peergroup",
		}
	case strings.Contains(lower, "service") && strings.Contains(lower, "not found"):
		return []string{"the webhook's Service is missing: is the chart installed in the namespace the configuration names?"}
	case strings.Contains(lower, "deadline exceeded") || strings.Contains(lower, "i/o timeout") || strings.Contains(lower, "client.timeout exceeded") || strings.Contains(lower, "no route to host"):
		return []string{
			"the control plane cannot reach the webhook pods on their port: on GKE private clusters its firewall allows only 443 and 10250 to nodes by default: set webhook.port=10250 (not with hostNetwork: that is the kubelet's port), or add a firewall rule for the webhook port",
			"on EKS with a custom CNI (Calico, Cilium overlay) the control plane cannot reach pod IPs: set hostNetwork=true with free ports (docs/install.md, Reachability)",
			"a NetworkPolicy in the release namespace must allow ingress to the webhook port from the control plane (networkPolicy.webhookFrom)",
		}
	}
	return []string{"see docs/install.md, Reachability"}
}
