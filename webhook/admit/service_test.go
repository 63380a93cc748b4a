package admit

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/peergroup/peergroup/contract"
)

// The Service built from any valid pod passes the API server's rules for
// Service ports: every name a valid, unique IANA service name, every
// (port, protocol) once. Ports are drawn from a small set of numbers and
// names, including names that look derived, so collisions are frequent.
func TestDesiredServiceFromAnyValidPodIsValid(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	numbers := []int32{53, 80, 443, 7000, 8080, 9042, 65535}
	names := []string{"", "", "tcp-80", "tcp-8080", "tcp-80-2", "udp-53", "cql", "http", "sctp-65535"}
	protocols := []corev1.Protocol{"", corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}
	for i := range 5000 {
		pod := &corev1.Pod{}
		for c := range 1 + rng.IntN(3) {
			ctr := corev1.Container{Name: fmt.Sprintf("c%d", c)}
			for range rng.IntN(6) {
				ctr.Ports = append(ctr.Ports, corev1.ContainerPort{
					Name: names[rng.IntN(len(names))], ContainerPort: numbers[rng.IntN(len(numbers))], Protocol: protocols[rng.IntN(len(protocols))],
				})
			}
			pod.Spec.Containers = append(pod.Spec.Containers, ctr)
		}
		if err := checkServiceInputs(pod); err != nil {
			t.Fatalf("pod %d: a valid pod refused: %v", i, err)
		}
		svc := DesiredService(pod, "db", Membership{Group: "g", Service: "g"})
		if err := validServicePorts(svc.Spec.Ports); err != nil {
			t.Fatalf("pod %d: %v\nports %+v\nfrom %+v", i, err, svc.Spec.Ports, pod.Spec.Containers)
		}
	}
}

// validServicePorts is what the API server checks of a Service's ports.
func validServicePorts(ports []corev1.ServicePort) error {
	names := map[string]bool{}
	type key struct {
		port  int32
		proto corev1.Protocol
	}
	seen := map[key]bool{}
	for _, p := range ports {
		if errs := validation.IsValidPortName(p.Name); len(errs) > 0 {
			return fmt.Errorf("port name %q: %s", p.Name, strings.Join(errs, "; "))
		}
		if names[p.Name] {
			return fmt.Errorf("port name %q twice", p.Name)
		}
		names[p.Name] = true
		if seen[key{p.Port, p.Protocol}] {
			return fmt.Errorf("port %d/%s twice", p.Port, p.Protocol)
		}
		seen[key{p.Port, p.Protocol}] = true
	}
	return nil
}

// A user's name equal to the name derived for another port: the user's
// names are kept, wherever their ports stand, and derived names take what
// is left (a derived name once took "tcp-7000" from the port the user named
// so, and port-name then led seed-discovery's SRV lookup to the wrong port).
func TestDerivedPortNamesNeverCollide(t *testing.T) {
	for _, tc := range []struct {
		ports []corev1.ContainerPort
		want  string
	}{
		{[]corev1.ContainerPort{{Name: "tcp-80", ContainerPort: 8080}, {ContainerPort: 80}, {Name: "tcp-80-2", ContainerPort: 81}, {ContainerPort: 80, Protocol: corev1.ProtocolUDP}},
			"tcp-80=8080/TCP tcp-80-3=80/TCP tcp-80-2=81/TCP udp-80=80/UDP"},
		{[]corev1.ContainerPort{{ContainerPort: 7000}, {Name: "tcp-7000", ContainerPort: 7001}},
			"tcp-7000-2=7000/TCP tcp-7000=7001/TCP"},
		// The same name twice: the first port keeps it.
		{[]corev1.ContainerPort{{Name: "gossip", ContainerPort: 7000}, {Name: "gossip", ContainerPort: 7001}},
			"gossip=7000/TCP tcp-7001=7001/TCP"},
	} {
		pod := &corev1.Pod{}
		pod.Spec.Containers = []corev1.Container{{Name: "c", Ports: tc.ports}}
		var got []string
		for _, p := range DesiredService(pod, "db", Membership{Group: "g", Service: "g"}).Spec.Ports {
			got = append(got, fmt.Sprintf("%s=%d/%s", p.Name, p.Port, p.Protocol))
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("ports %v: %s, want %s", tc.ports, strings.Join(got, " "), tc.want)
		}
	}
}

// A pod the API server would reject, in a field the Service is built from,
// is denied with its own error before any Service is created.
func TestInvalidPodDeniedBeforeItsService(t *testing.T) {
	cases := map[string]struct {
		containers []corev1.Container
		want       string
	}{
		"no containers":     {nil, "spec.containers is empty"},
		"bad port name":     {[]corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{{Name: "Gossip_Port", ContainerPort: 7000}}}}, `container "c" port 7000: name "Gossip_Port" is not a valid port name`},
		"port out of range": {[]corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{{ContainerPort: 70000}}}}, "containerPort must be between 1 and 65535"},
		"port zero":         {[]corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{{ContainerPort: 0}}}}, "containerPort must be between 1 and 65535"},
		"bad protocol":      {[]corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{{ContainerPort: 1, Protocol: "HTTP"}}}}, `protocol "HTTP" must be TCP, UDP or SCTP`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Labels: map[string]string{contract.GroupLabel: "g"}}}
			pod.Spec.Containers = tc.containers
			for _, injected := range []bool{false, true} {
				if injected {
					pod.Annotations = map[string]string{contract.InjectedAnnotation: "v"}
				}
				d := decideT(t, pod, nil, nil)
				if d.Verdict != VerdictDenied || d.Reason != ReasonInvalidPod || !strings.Contains(d.Message, tc.want) || d.Service != ServiceNotReached {
					t.Errorf("injected=%v: %s, want denied invalid-pod %q with the Service not reached", injected, summary(d), tc.want)
				}
			}
		})
	}
}

// The ip-family-policy annotation of the pod that creates the Service
// sets its spec.ipFamilyPolicy; without it the API server's default holds.
func TestServiceIPFamilyPolicy(t *testing.T) {
	for _, v := range []string{"", "SingleStack", "PreferDualStack", "RequireDualStack"} {
		p := memberPod()
		if v != "" {
			p.Annotations = map[string]string{contract.IPFamilyPolicyAnnotation: v}
		}
		d, svc := decideOn(p, nil, nil)
		if d.Verdict != VerdictInjected || svc == nil {
			t.Fatalf("%q: %s", v, summary(d))
		}
		got := ""
		if svc.Spec.IPFamilyPolicy != nil {
			got = string(*svc.Spec.IPFamilyPolicy)
		}
		if got != v {
			t.Errorf("ipFamilyPolicy %q, want %q", got, v)
		}
	}
}

// A port-name the group's existing Service does not carry is denied with
// the Service's ports and the way out; one it carries, or no port-name at
// all, is admitted. (Admitted before, seed-discovery asked for an SRV name
// with no records and waited out its timeout.)
func TestPortNameCheckedAgainstTheExistingService(t *testing.T) {
	service := func(ports ...corev1.ServicePort) *corev1.Service {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "cassandra", Namespace: "db"}}
		svc.Spec.ClusterIP = corev1.ClusterIPNone
		svc.Spec.Ports = ports
		return svc
	}
	// Made by the earlier servicePorts from [{7000}, {7001 named tcp-7000}]:
	// the derived name took 7000.
	old := service(corev1.ServicePort{Name: "tcp-7000", Port: 7000, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(7000)})
	current := service(corev1.ServicePort{Name: "tcp-7000-2", Port: 7000, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(7000)},
		corev1.ServicePort{Name: "tcp-7000", Port: 7001, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(7001)})
	udp := service(corev1.ServicePort{Name: "gossip", Port: 7000, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(7000)})
	// A Service of the user's own, its target a container port's name.
	byName := service(corev1.ServicePort{Name: "gossip", Port: 17000, TargetPort: intstr.FromString("gossip")})
	withPort := func(portName string) *corev1.Pod {
		p := memberPod()
		p.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "gossip", ContainerPort: 7000}, {Name: "tcp-7000", ContainerPort: 7001}}
		if portName != "" {
			p.Annotations = map[string]string{contract.PortName.Annotation: portName}
		}
		return p
	}
	for _, tc := range []struct {
		name     string
		portName string
		existing *corev1.Service
		want     Verdict
		message  []string
	}{
		{"a name the Service lacks", "gossip", old, VerdictDenied, []string{`peergroup.dev/port-name is "gossip"`, "Service db/cassandra has no port of that name", "its ports: tcp-7000 (7000/TCP)", "Changing a group's ports"}},
		{"the name on another port (an older Service)", "tcp-7000", old, VerdictDenied, []string{"has a port of that name, but not one that is TCP and leads to this pod's port 7001"}},
		{"the name on a UDP port", "gossip", udp, VerdictDenied, []string{"not one that is TCP"}},
		{"the name on the pod's port", "tcp-7000", current, VerdictInjected, nil},
		{"a target port by name", "gossip", byName, VerdictInjected, nil},
		{"no port-name", "", old, VerdictInjected, nil},
		// No Service yet: checked against the pod (and created from it).
		{"no Service", "gossip", nil, VerdictInjected, nil},
	} {
		d := decideT(t, withPort(tc.portName), nil, tc.existing)
		if d.Verdict != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, summary(d), tc.want)
		}
		for _, m := range tc.message {
			if !strings.Contains(d.Message, m) {
				t.Errorf("%s: message %q lacks %q", tc.name, d.Message, m)
			}
		}
		if tc.want == VerdictDenied && d.Reason != ReasonInvalidTuning {
			t.Errorf("%s: reason %s, want %s", tc.name, d.Reason, ReasonInvalidTuning)
		}
	}
}

// A named targetPort resolves as the EndpointSlice controller resolves it:
// to the container port of that name and of the Service port's protocol.
func TestTargetPortByNameMatchesTheProtocol(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "cassandra", Namespace: "db"}}
	svc.Spec.ClusterIP = corev1.ClusterIPNone
	svc.Spec.Ports = []corev1.ServicePort{{Name: "peer", Port: 7000, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("p")}}
	p := memberPod()
	p.Annotations = map[string]string{contract.PortName.Annotation: "peer"}
	p.Spec.Containers = []corev1.Container{
		{Name: "a", Image: "x", Ports: []corev1.ContainerPort{{Name: "p", ContainerPort: 7000, Protocol: corev1.ProtocolUDP}}},
		{Name: "b", Image: "x", Ports: []corev1.ContainerPort{{Name: "peer", ContainerPort: 7000}, {Name: "p", ContainerPort: 8000}}},
	}
	// The endpoints of "peer" go to 8000 (TCP p), not to the pod's 7000.
	if d := decideT(t, p, nil, svc); d.Verdict != VerdictDenied {
		t.Errorf("%s, want denied: the Service's peer leads to 8000", summary(d))
	}
}
