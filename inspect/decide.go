package inspect

import (
	"context"

	admissionv1 "k8s.io/api/admission/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/webhook/admit"
)

// decide runs the webhook's decision on pod as a dry-run CREATE, with
// nsLabels and services standing in for the informer caches. It returns
// services too, which holds the Service the webhook would create.
func decide(pod *corev1.Pod, cfg admit.Config, nsLabels map[string]string, services *StaticServices, limitRanges ...corev1.LimitRange) (admit.Decision, *StaticServices) {
	d := &admit.Decider{Config: cfg, Namespaces: StaticNamespaceLabels(nsLabels), Services: services}
	if limitRanges != nil {
		d.LimitRanges = StaticLimitRanges(limitRanges)
	}
	return d.Decide(context.Background(), admit.Request{
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Namespace: pod.Namespace,
		Operation: admissionv1.Create,
		DryRun:    true,
		Pod:       pod,
	}), services
}

// namespaceLabels stands in for the namespace label peergroup.dev/group;
// nil when no group is given.
func namespaceLabels(group string) map[string]string {
	if group == "" {
		return nil
	}
	return map[string]string{contract.GroupLabel: group}
}

// controllerKinds is the controller that creates the pods of each
// workload's template, as the API server will see it in the pod's
// ownerReferences (a rule such as founding ordinal0 depends on it).
var controllerKinds = map[string]metav1.OwnerReference{
	"Deployment":            {APIVersion: "apps/v1", Kind: "ReplicaSet"},
	"ReplicaSet":            {APIVersion: "apps/v1", Kind: "ReplicaSet"},
	"StatefulSet":           {APIVersion: "apps/v1", Kind: "StatefulSet"},
	"DaemonSet":             {APIVersion: "apps/v1", Kind: "DaemonSet"},
	"ReplicationController": {APIVersion: "v1", Kind: "ReplicationController"},
	"Job":                   {APIVersion: "batch/v1", Kind: "Job"},
	"CronJob":               {APIVersion: "batch/v1", Kind: "Job"},
}

// asCreatedBy gives a template's pod the controller reference its
// workload's controller will set, so the decision is the one the webhook
// makes for the pods. The reference is for deciding only: the patch never
// touches ownerReferences.
func asCreatedBy(pod *corev1.Pod, workload map[string]any) {
	kind, _ := workload["kind"].(string)
	meta, _ := workload["metadata"].(map[string]any)
	workloadName, _ := meta["name"].(string)
	ref, ok := controllerKinds[kind]
	if !ok {
		return
	}
	// The controller sets its own reference and ignores any a template
	// carries (GetPodFromTemplate), so the template's are replaced.
	ref.Name, ref.Controller = workloadName, ptr.To(true)
	pod.OwnerReferences = []metav1.OwnerReference{ref}
	if spec, _ := workload["spec"].(map[string]any); kind == "Job" && spec["completionMode"] == string(batchv1.IndexedCompletion) {
		// The Job controller names each pod of an Indexed Job
		// <job>-<index> and annotates its index; the first stands for
		// them all.
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		pod.Annotations[batchv1.JobCompletionIndexAnnotation] = "0"
		pod.Spec.Hostname = workloadName + "-0"
	}
	if kind == "StatefulSet" {
		// The StatefulSet controller names each pod's host after the pod
		// and its subdomain after serviceName (what seed-address=hostname
		// needs); the first pod stands for them all.
		spec, _ := workload["spec"].(map[string]any)
		service, _ := spec["serviceName"].(string)
		pod.Spec.Hostname, pod.Spec.Subdomain = workloadName+"-0", service
	}
}
