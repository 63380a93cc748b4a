package admit

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/internal/clip"
)

// DesiredService is the headless Service a member pod of m needs in
// namespace ns: one named port per container port, because SRV records exist
// only for named ports.
func DesiredService(pod *corev1.Pod, ns string, m Membership) *corev1.Service {
	labels := map[string]string{contract.ManagedByLabel: contract.ManagedByValue, contract.GroupLabel: m.Group}
	return &corev1.Service{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      m.Service,
			Namespace: ns,
			Labels:    labels,
		},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			// Peers must find each other before they are Ready: a seed node
			// is not Ready until it has found its seeds.
			PublishNotReadyAddresses: true,
			// Only pods that went through peergroup are peers: a pod with
			// the group label that opted out has no seeds and must not be
			// seen as one (contract.PeerLabel).
			Selector:       map[string]string{contract.GroupLabel: m.Group, contract.PeerLabel: contract.PeerValue},
			Ports:          servicePorts(pod),
			IPFamilyPolicy: ipFamilyPolicy(pod),
		},
	}
}

// ipFamilyPolicy is the policy the pod's annotation asks for (Mutate has
// checked it), or nil: the API server's default, SingleStack.
func ipFamilyPolicy(pod *corev1.Pod) *corev1.IPFamilyPolicy {
	v, ok := pod.Annotations[contract.IPFamilyPolicyAnnotation]
	if !ok {
		return nil
	}
	p := corev1.IPFamilyPolicy(v)
	return &p
}

// ipFamilyPolicies are the values the annotation may take.
var ipFamilyPolicies = []corev1.IPFamilyPolicy{corev1.IPFamilyPolicySingleStack, corev1.IPFamilyPolicyPreferDualStack, corev1.IPFamilyPolicyRequireDualStack}

// checkIPFamilyPolicy refuses an annotation value the API server would
// refuse on the Service, so the user reads the rule at admission.
func checkIPFamilyPolicy(pod *corev1.Pod) error {
	v, ok := pod.Annotations[contract.IPFamilyPolicyAnnotation]
	if !ok || slices.Contains(ipFamilyPolicies, corev1.IPFamilyPolicy(v)) {
		return nil
	}
	return invalidTuning(contract.IPFamilyPolicyAnnotation, v, "SingleStack, PreferDualStack or RequireDualStack (spec.ipFamilyPolicy of the group's Service)")
}

// servicePorts gives each distinct (port, protocol) of the pod's containers
// a Service port with a name unique in the Service. The user's names are
// assigned first (the first port to carry a name keeps it), so a derived
// name never takes one the user wrote: peergroup.dev/port-name and the SRV
// records depend on it. Ports left unnamed, or whose name an earlier port
// took, then get <protocol>-<port>, with -2, -3, ... appended while that
// is taken.
func servicePorts(pod *corev1.Pod) []corev1.ServicePort {
	type key struct {
		port  int32
		proto corev1.Protocol
	}
	seen := map[key]bool{}
	var ports []corev1.ServicePort
	var userNamed []bool // per port: it keeps the user's name
	names := map[string]bool{}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			proto := cmp.Or(p.Protocol, corev1.ProtocolTCP)
			k := key{p.ContainerPort, proto}
			if seen[k] {
				continue
			}
			seen[k] = true
			keep := p.Name != "" && !names[p.Name]
			if keep {
				names[p.Name] = true
			}
			userNamed = append(userNamed, keep)
			ports = append(ports, corev1.ServicePort{
				Name:       p.Name,
				Port:       p.ContainerPort,
				TargetPort: intstr.FromInt32(p.ContainerPort),
				Protocol:   proto,
			})
		}
	}
	for i := range ports {
		if userNamed[i] {
			continue
		}
		// Derived names keep SRV records available for ports the user
		// left unnamed.
		base := fmt.Sprintf("%s-%d", strings.ToLower(string(ports[i].Protocol)), ports[i].Port)
		name := base
		for n := 2; names[name]; n++ {
			name = fmt.Sprintf("%s-%d", base, n)
		}
		names[name] = true
		ports[i].Name = name
	}
	return ports
}

// checkServiceInputs applies the API server's own rules to the pod fields
// DesiredService reads.
func checkServiceInputs(pod *corev1.Pod) error {
	if len(pod.Spec.Containers) == 0 {
		return invalidPod("spec.containers is empty; a pod needs at least one container")
	}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if problem := portProblem(p); problem != "" {
				return invalidPod("container %s port %d: %s", clip.Quote(c.Name), p.ContainerPort, problem)
			}
		}
	}
	// Also for an injected pod, which skips Mutate's check.
	return checkIPFamilyPolicy(pod)
}

func portProblem(p corev1.ContainerPort) string {
	if p.ContainerPort < 1 || p.ContainerPort > 65535 {
		return "containerPort must be between 1 and 65535"
	}
	if p.Name != "" {
		if errs := validation.IsValidPortName(p.Name); len(errs) > 0 {
			return fmt.Sprintf("name %s is not a valid port name: %s", clip.Quote(p.Name), strings.Join(errs, "; "))
		}
	}
	switch p.Protocol {
	case "", corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
		return ""
	}
	return fmt.Sprintf("protocol %s must be TCP, UDP or SCTP", clip.Quote(string(p.Protocol)))
}

// IsHeadless reports whether svc gives one DNS record per pod.
func IsHeadless(svc *corev1.Service) bool {
	return svc.Spec.ClusterIP == corev1.ClusterIPNone
}

// CheckHeadless returns the denial for a group whose Service exists with a
// cluster IP, nil for a headless one.
func CheckHeadless(have *corev1.Service) error {
	if IsHeadless(have) {
		return nil
	}
	what := "clusterIP " + have.Spec.ClusterIP
	if have.Spec.Type == corev1.ServiceTypeExternalName {
		what = "type ExternalName: it has no endpoints"
	}
	return deny(ReasonServiceNotHeadless, "Service %s/%s exists and is not headless (%s); seed discovery needs a headless Service (clusterIP: None) so DNS returns one address per peer. "+
		"Fix: set the pod annotation %s to the name of a headless Service (peergroup creates it if missing), or delete or replace Service %s with clusterIP: None",
		have.Namespace, have.Name, what, contract.ServiceAnnotation, have.Name)
}

// CheckExisting returns the denial for a member pod whose group's Service
// exists but cannot serve it: not headless, or without the port named by
// the pod's peergroup.dev/port-name (seed-discovery's SRV lookup would find
// nothing and wait out its timeout). nil when the Service serves.
func CheckExisting(have *corev1.Service, pod *corev1.Pod) error {
	if err := CheckHeadless(have); err != nil {
		return err
	}
	name, ok := pod.Annotations[contract.PortName.Annotation]
	if !ok {
		return nil
	}
	ports := servicePorts(pod)
	i := slices.IndexFunc(ports, func(p corev1.ServicePort) bool { return p.Name == name && p.Protocol == corev1.ProtocolTCP })
	if i < 0 {
		return nil // not a TCP port of the pod: Mutate denies that
	}
	want := ports[i]
	var listed []string
	found, serves := false, false
	for _, p := range have.Spec.Ports {
		listed = append(listed, fmt.Sprintf("%s (%d/%s)", p.Name, p.Port, cmp.Or(p.Protocol, corev1.ProtocolTCP)))
		if p.Name == name {
			found, serves = true, cmp.Or(p.Protocol, corev1.ProtocolTCP) == corev1.ProtocolTCP && targetsPort(p, pod, want.Port)
		}
	}
	if found && serves {
		return nil
	}
	return portNameNotInService(have, name, want.Port, listed, found)
}

// portNameNotInService denies a pod whose port-name the group's existing
// Service does not carry (found false), or carries on another port or
// protocol. The Service's ports came from the pod that created it and are
// never changed (docs/design.md, Decisions).
func portNameNotInService(have *corev1.Service, name string, podPort int32, listed []string, found bool) *Denial {
	ports := "none"
	if len(listed) > 0 {
		ports = strings.Join(listed, ", ")
	}
	problem := "has no port of that name"
	if found {
		problem = fmt.Sprintf("has a port of that name, but not one that is TCP and leads to this pod's port %d", podPort)
	}
	return deny(ReasonInvalidTuning, "annotation %s is %s, but the group's Service %s/%s %s (its ports: %s); "+
		"the SRV records _%s._tcp come from the Service's ports, so seed-discovery would find no peer, or the wrong port. "+
		"Fix: set %s to one of the Service's port names, or delete Service %s so peergroup creates it again from the next member's ports (docs/applications.md, \"Changing a group's ports\")",
		contract.PortName.Annotation, clip.Quote(name), have.Namespace, have.Name, problem, ports, clip.String(name), contract.PortName.Annotation, have.Name)
}

// targetsPort reports whether a Service port leads to the pod's container
// port number port: the endpoints (and so the SRV records of a headless
// Service) carry the target port, a number or a container port's name,
// defaulting to the Service port.
func targetsPort(p corev1.ServicePort, pod *corev1.Pod, port int32) bool {
	switch {
	case p.TargetPort.Type == intstr.String && p.TargetPort.StrVal != "":
		// As the EndpointSlice controller resolves it: the container
		// port of that name and of the Service port's protocol.
		for _, c := range pod.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == p.TargetPort.StrVal && cmp.Or(cp.Protocol, corev1.ProtocolTCP) == cmp.Or(p.Protocol, corev1.ProtocolTCP) {
					return cp.ContainerPort == port
				}
			}
		}
		return false
	case p.TargetPort.IntVal != 0:
		return p.TargetPort.IntVal == port
	}
	return p.Port == port
}
