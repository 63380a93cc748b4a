package admit

import (
	"cmp"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/internal/clip"
)

// checkTuningFitsPod refuses tuning values that are valid on their own but
// cannot work for this pod, so the user reads why at `kubectl apply`
// instead of in an init container that waits until its deadline.
func checkTuningFitsPod(pod *corev1.Pod, m Membership) error {
	if pod.Annotations[contract.SeedAddressValue.Annotation] == string(contract.AddressHostname) &&
		(pod.Spec.Hostname == "" || pod.Spec.Subdomain != m.Service) {
		return invalidTuning(contract.SeedAddressValue.Annotation, string(contract.AddressHostname), fmt.Sprintf("ip for this pod: hostname needs a stable DNS name <pod>.%s.<namespace>.svc, which only a pod with spec.hostname and spec.subdomain %s has "+
			"(a StatefulSet's pod with serviceName %s; this pod has hostname %s and subdomain %s)",
			m.Service, clip.Quote(m.Service), clip.Quote(m.Service), clip.Quote(pod.Spec.Hostname), clip.Quote(pod.Spec.Subdomain)))
	}
	if pod.Annotations[contract.SeedAddressValue.Annotation] == string(contract.AddressHostname) {
		if c := metav1.GetControllerOfNoCopy(pod); c != nil && c.Kind != "StatefulSet" && !indexedJobPod(pod, c) {
			// Every pod of a ReplicaSet, a non-indexed Job or a DaemonSet
			// has its template's hostname: one name for all, which names
			// no pod.
			return invalidTuning(contract.SeedAddressValue.Annotation, string(contract.AddressHostname), "ip for a pod created by a "+clip.String(c.Kind)+": its pods all share the template's spec.hostname, so their DNS names would be one; hostname needs a StatefulSet's pods, each named after itself")
		}
	}
	if name, ok := pod.Annotations[contract.PortName.Annotation]; ok && !hasServicePort(pod, name) {
		return invalidTuning(contract.PortName.Annotation, name, "the name of a TCP port of one of the pod's containers, the first with its number (seed-discovery queries the SRV records _"+clip.String(name)+"._tcp of the Service, which exist only for a TCP port the Service names so)")
	}
	if pod.Annotations[contract.FoundingValue.Annotation] == string(contract.FoundOrdinal0) {
		if c := metav1.GetControllerOfNoCopy(pod); c != nil && c.Kind != "StatefulSet" {
			return invalidTuning(contract.FoundingValue.Annotation, string(contract.FoundOrdinal0), "lowest or never for a pod created by a "+clip.String(c.Kind)+": ordinal0 needs StatefulSet pods, whose hostnames end in their ordinal")
		}
	}
	return nil
}

// indexedJobPod reports whether pod is a pod of an Indexed Job, which the
// Job controller names after itself: hostname <job>-<completion index>,
// one per pod, as a StatefulSet does.
func indexedJobPod(pod *corev1.Pod, owner *metav1.OwnerReference) bool {
	index, ok := pod.Annotations[batchv1.JobCompletionIndexAnnotation]
	return ok && owner.Kind == "Job" && pod.Spec.Hostname == owner.Name+"-"+index
}

// hasServicePort reports whether the Service built from pod (the first
// pod of the group builds it) has a TCP port of that name: a later name for
// the same port number is not carried into the Service.
func hasServicePort(pod *corev1.Pod, name string) bool {
	return slices.ContainsFunc(servicePorts(pod), func(p corev1.ServicePort) bool {
		return p.Name == name && p.Protocol == corev1.ProtocolTCP
	})
}

// checkDNS refuses a hostNetwork pod that does not resolve with the cluster
// DNS: with dnsPolicy ClusterFirst (the default) such a pod gets the node's
// resolv.conf, where seed-discovery finds neither the cluster domain nor a
// server that knows the Service.
func checkDNS(pod *corev1.Pod) error {
	if pod.Spec.DNSPolicy == corev1.DNSDefault {
		return deny(ReasonUnsupportedDNS, "the pod sets dnsPolicy Default, so it resolves with the node's resolv.conf and seed-discovery cannot reach the cluster DNS: use dnsPolicy ClusterFirst (or ClusterFirstWithHostNet with hostNetwork), or opt this pod out with the label %s=false", contract.InjectLabel)
	}
	if pod.Spec.HostNetwork && pod.Spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet && pod.Spec.DNSPolicy != corev1.DNSNone {
		return deny(ReasonUnsupportedDNS, "the pod uses hostNetwork with dnsPolicy %s, so it resolves with the node's resolv.conf and seed-discovery cannot reach the cluster DNS: set dnsPolicy: ClusterFirstWithHostNet, or opt this pod out with the label %s=false",
			clip.String(cmp.Or(string(pod.Spec.DNSPolicy), "ClusterFirst")), contract.InjectLabel)
	}
	return nil
}

// checkOS refuses pods that declare another OS than Linux, by spec.os, by
// the kubernetes.io/os node selector, or by a required node affinity none
// of whose terms admits Linux nodes.
func checkOS(pod *corev1.Pod) error {
	const fix = "the seed-discovery init container runs on Linux only: run the group's pods on Linux nodes, or opt this pod out with the label " + contract.InjectLabel + "=false"
	if pod.Spec.OS != nil && pod.Spec.OS.Name != corev1.Linux {
		return deny(ReasonUnsupportedOS, "the pod sets spec.os.name %s; %s", clip.Quote(string(pod.Spec.OS.Name)), fix)
	}
	for _, key := range osLabels {
		if os, ok := pod.Spec.NodeSelector[key]; ok && os != string(corev1.Linux) {
			return deny(ReasonUnsupportedOS, "the pod selects nodes with %s=%s; %s", key, clip.String(os), fix)
		}
	}
	if terms := requiredNodeTerms(pod); len(terms) > 0 && !slices.ContainsFunc(terms, admitsLinux) {
		return deny(ReasonUnsupportedOS, "the pod's required node affinity admits no node with %s=linux; %s", corev1.LabelOSStable, fix)
	}
	return nil
}

// osLabels name a node's OS: the stable label and the beta one kubelets
// still set.
var osLabels = []string{corev1.LabelOSStable, "beta.kubernetes.io/os"}

func requiredNodeTerms(pod *corev1.Pod) []corev1.NodeSelectorTerm {
	if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		return a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	}
	return nil
}

// admitsLinux reports whether a node labelled kubernetes.io/os=linux can
// match the term, as far as that label decides.
func admitsLinux(term corev1.NodeSelectorTerm) bool {
	for _, e := range term.MatchExpressions {
		if !slices.Contains(osLabels, e.Key) {
			continue
		}
		linux := slices.Contains(e.Values, string(corev1.Linux))
		switch e.Operator {
		case corev1.NodeSelectorOpIn:
			if !linux {
				return false
			}
		case corev1.NodeSelectorOpNotIn:
			if linux {
				return false
			}
		case corev1.NodeSelectorOpDoesNotExist:
			return false
		}
	}
	return true
}

// checkCollisions refuses pods where the injected names are taken by
// something else: silently sharing a user's volume or shadowing a user's
// mount would break the app in ways that are hard to trace back here.
// Paths are compared cleaned, as the kubelet mounts them.
func checkCollisions(pod *corev1.Pod) error {
	for _, c := range pod.Spec.InitContainers {
		if c.Name == contract.InitContainerName {
			return deny(ReasonCollision, "the pod already has an init container named %q that is not peergroup's (it does not mount the %s volume); peergroup needs that name for its init container: rename yours", contract.InitContainerName, contract.SeedsVolumeName)
		}
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == contract.InitContainerName {
			return deny(ReasonCollision, "the pod already has a container named %q; container names are unique across init and app containers and peergroup needs that name for its init container: rename the container", contract.InitContainerName)
		}
	}
	for _, v := range pod.Spec.Volumes {
		if v.Name == contract.SeedsVolumeName && v.EmptyDir == nil {
			return deny(ReasonCollision, "the pod already has a volume named %q that is not an emptyDir; peergroup needs that name for the seeds volume: rename the volume", contract.SeedsVolumeName)
		}
	}
	return checkMounts(pod)
}

// checkMounts refuses app container mounts that would shadow the seeds
// directory or use the seeds volume's name for something else.
func checkMounts(pod *corev1.Pod) error {
	for _, c := range pod.Spec.Containers {
		for _, m := range c.VolumeMounts {
			p := path.Clean(m.MountPath)
			inside := p == contract.SeedsMountPath || strings.HasPrefix(p, contract.SeedsMountPath+"/")
			switch {
			case m.Name != contract.SeedsVolumeName && inside:
				return deny(ReasonCollision, "container %s already mounts volume %s at %s, where peergroup mounts the seeds volume (%s): move that mount", clip.Quote(c.Name), clip.Quote(m.Name), clip.String(m.MountPath), contract.SeedsMountPath)
			case m.Name == contract.SeedsVolumeName && (m.SubPath != "" || m.SubPathExpr != ""):
				return deny(ReasonCollision, "container %s mounts only a subPath of the %q volume; the app must see the whole seeds directory at %s: remove the subPath, or rename your volume", clip.Quote(c.Name), contract.SeedsVolumeName, contract.SeedsMountPath)
			case m.Name == contract.SeedsVolumeName && p != contract.SeedsMountPath:
				return deny(ReasonCollision, "container %s mounts a volume named %q at %s; peergroup needs that name for the seeds volume, which it mounts read-only at %s (where %s points): rename your volume", clip.Quote(c.Name), contract.SeedsVolumeName, clip.Quote(m.MountPath), contract.SeedsMountPath, contract.EnvSeedsFile)
			}
		}
	}
	return nil
}

// initFirst reads the init-first annotation: "true" places seed-discovery
// before the pod's other init containers.
func initFirst(annotations map[string]string) (bool, error) {
	v, ok := annotations[contract.InitFirstAnnotation]
	if !ok {
		return false, nil
	}
	if v != "true" && v != "false" {
		return false, invalidTuning(contract.InitFirstAnnotation, v, `"true" or "false"`)
	}
	return v == "true", nil
}

// meshInitContainers are the init containers of service meshes that
// redirect the pod's traffic to a proxy which starts only with the app
// containers: an init container after them reaches nobody.
var meshInitContainers = []string{"istio-init", "linkerd-init", "kuma-init"}

// foundingWarnings tell the user about setups that can start a second
// cluster, at the moment they can still change them.
func foundingWarnings(pod *corev1.Pod, initFirst bool) []string {
	var warnings []string
	if !initFirst {
		for i, c := range pod.Spec.InitContainers {
			// A proxy that runs as a native sidecar after the mesh's init
			// container is up before seed-discovery starts (Istio's
			// native sidecar mode): nothing to warn about.
			proxied := slices.ContainsFunc(pod.Spec.InitContainers[i+1:], func(c corev1.Container) bool { return isSidecar(&c) })
			if slices.Contains(meshInitContainers, c.Name) && !proxied {
				warnings = append(warnings, fmt.Sprintf("peergroup: init container %s (a service mesh's) runs before seed-discovery and sends the pod's traffic to a proxy that is not running yet, "+
					"so seed-discovery may reach no peer: set the annotation %s: \"true\" to run seed-discovery first", clip.Quote(c.Name), contract.InitFirstAnnotation))
				break
			}
		}
	}
	founding := cmp.Or(pod.Annotations[contract.FoundingValue.Annotation], string(contract.DefaultFounding))
	_, peerPort := pod.Annotations[contract.PeerPort.Annotation]
	if n, err := strconv.Atoi(pod.Annotations[contract.SeedCount.Annotation]); peerPort && err == nil && n == 1 {
		warnings = append(warnings, fmt.Sprintf("peergroup: %s with %s \"1\": when the group starts together its first pod waits for a peer that answers "+
			"and the others' only seed is that pod, so the group waits on one start; set %s to 2 or more",
			contract.PeerPort.Annotation, contract.SeedCount.Annotation, contract.SeedCount.Annotation))
	}
	if c := metav1.GetControllerOfNoCopy(pod); c != nil && (c.Kind == "ReplicaSet" || c.Kind == "ReplicationController") &&
		founding == string(contract.FoundLowest) && !peerPort {
		warnings = append(warnings, fmt.Sprintf("peergroup: this %s's pods may found the group (founding=lowest) and no %s is set: "+
			"a restarted pod that comes first in the order while the others run cannot tell that a cluster exists, and can start a second one; "+
			"set %s to the port the peers listen on", clip.String(c.Kind), contract.PeerPort.Annotation, contract.PeerPort.Annotation))
	}
	return warnings
}
