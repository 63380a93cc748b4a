package admit

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/peergroup/peergroup/contract"
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
			Selector:                 map[string]string{contract.GroupLabel: m.Group},
			Ports:                    servicePorts(pod),
		},
	}
}

func servicePorts(pod *corev1.Pod) []corev1.ServicePort {
	type key struct {
		port  int32
		proto corev1.Protocol
	}
	seen := map[key]bool{}
	names := map[string]bool{}
	var ports []corev1.ServicePort
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			proto := p.Protocol
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			k := key{p.ContainerPort, proto}
			if seen[k] {
				continue
			}
			seen[k] = true
			name := p.Name
			if name == "" || names[name] {
				// Derived names keep SRV records available for ports the
				// user left unnamed.
				name = fmt.Sprintf("%s-%d", strings.ToLower(string(proto)), p.ContainerPort)
			}
			names[name] = true
			ports = append(ports, corev1.ServicePort{
				Name:       name,
				Port:       p.ContainerPort,
				TargetPort: intstr.FromInt32(p.ContainerPort),
				Protocol:   proto,
			})
		}
	}
	return ports
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
	return &NotHeadlessError{Namespace: have.Namespace, Name: have.Name, ClusterIP: have.Spec.ClusterIP}
}

// NotHeadlessError is the denial for a group whose Service exists with a
// cluster IP.
type NotHeadlessError struct {
	Namespace, Name string
	ClusterIP       string
}

func (e *NotHeadlessError) Error() string {
	return fmt.Sprintf("peergroup: Service %s/%s exists and is not headless (clusterIP %s); seed discovery needs a headless Service (clusterIP: None) so DNS returns one address per peer. "+
		"Fix: set the pod annotation %s to the name of a headless Service (peergroup creates it if missing), or delete or replace Service %s with clusterIP: None",
		e.Namespace, e.Name, e.ClusterIP, contract.ServiceAnnotation, e.Name)
}
