package offline

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/peergroup/peergroup/contract"
)

// The outcomes of `peergroup check`.
const (
	CheckReachable   = "reachable"   // the API server called peergroup and the pod was injected
	CheckNotCalled   = "not called"  // the API server admitted a member pod without calling peergroup
	CheckUnreachable = "unreachable" // the API server could not call the webhook
	CheckDenied      = "denied"      // peergroup (or another webhook) answered and refused the probe pod
	CheckError       = "error"       // the dry run failed for another reason (RBAC, namespace missing)
)

// CheckResult is what `peergroup check` found, with what to do about it.
type CheckResult struct {
	Outcome string   `json:"outcome"`
	Detail  string   `json:"detail"`
	Hints   []string `json:"hints,omitempty"`
}

// ProbePod is the member pod `peergroup check` dry-runs: one container, the
// group label, so both of the chart's webhook entries would send it.
func ProbePod(namespace, group string) *corev1.Pod {
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
		}}},
	}
}

// Diagnose reads the outcome of a server-side dry-run create of
// ProbePod: the admitted pod, or the API server's error. The API server
// reports a webhook it could not call as `failed calling webhook "<name>":
// …` with the transport's error, which says where the path breaks.
func Diagnose(admitted *corev1.Pod, err error) CheckResult {
	if err == nil {
		for _, c := range admitted.Spec.InitContainers {
			if c.Name == contract.InitContainerName {
				return CheckResult{Outcome: CheckReachable, Detail: "the API server called peergroup and the probe pod came back injected (dry run: nothing was created)"}
			}
		}
		return CheckResult{Outcome: CheckNotCalled, Detail: "the API server admitted a member pod without the injection: no webhook entry sent it to peergroup",
			Hints: []string{
				"is the chart installed? kubectl get mutatingwebhookconfigurations -l app.kubernetes.io/name=peergroup",
				"is the namespace excluded (the release namespace, kube-system, webhook.excludedNamespaces)?",
				"with failurePolicy Ignore, an unreachable webhook looks the same: run with a namespace where it is Fail, or look at the API server's log",
			}}
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "failed calling webhook"):
		return CheckResult{Outcome: CheckUnreachable, Detail: "the API server could not call the webhook: " + msg, Hints: unreachableHints(msg)}
	case strings.Contains(msg, "admission webhook") && strings.Contains(msg, "denied the request"):
		return CheckResult{Outcome: CheckDenied, Detail: "the webhook was reached and refused the probe pod: " + msg}
	}
	return CheckResult{Outcome: CheckError, Detail: fmt.Sprintf("the dry run failed before any webhook answered: %s", msg),
		Hints: []string{"the check needs permission to create pods in the namespace (server-side dry run), and the namespace must exist"}}
}

// unreachableHints match the transport error to where the path breaks.
func unreachableHints(msg string) []string {
	lower := strings.ToLower(msg)
	switch {
	case strings.Contains(lower, "x509") || strings.Contains(lower, "certificate"):
		return []string{
			"the serving certificate is not trusted by the caBundle: in selfSigned mode the webhook patches it itself (is something resetting it? README, GitOps); in certManager mode check cert-manager's cainjector; in provided mode, certificates.provided.caBundle",
		}
	case strings.Contains(lower, "no endpoints available") || strings.Contains(lower, "connection refused"):
		return []string{
			"no webhook pod is ready, or the port is wrong: kubectl get pods,endpointslices -n <release namespace> -l app.kubernetes.io/name=peergroup",
		}
	case strings.Contains(lower, "deadline exceeded") || strings.Contains(lower, "timeout") || strings.Contains(lower, "no route to host"):
		return []string{
			"the control plane cannot reach the webhook pods on their port: on GKE private clusters its firewall allows only 443 and 10250 to nodes by default: set webhook.port=10250, or add a firewall rule for the webhook port",
			"on EKS with a custom CNI (Calico, Cilium overlay) the control plane cannot reach pod IPs: set hostNetwork=true with a free webhook.port (README, Reachability)",
			"a NetworkPolicy in the release namespace must allow ingress to the webhook port from the control plane (networkPolicy.webhookFrom)",
		}
	}
	return []string{"see README, Reachability"}
}
