package admit

import (
	"slices"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/peergroup/peergroup/contract"
)

var cassandra = Membership{Group: "cassandra", Service: "cassandra", Source: SourceNamespace}

func twoContainerPod() *corev1.Pod {
	p := &corev1.Pod{}
	p.Name = "cassandra-0"
	p.Spec.InitContainers = []corev1.Container{{Name: "user-init", Image: "busybox"}}
	p.Spec.Containers = []corev1.Container{
		{Name: "cassandra", Image: "cassandra", Ports: []corev1.ContainerPort{{Name: "cql", ContainerPort: 9042}}},
		{Name: "exporter", Image: "exporter"},
	}
	return p
}

func TestMutateInjectsEveryContainer(t *testing.T) {
	in := twoContainerPod()
	before := in.DeepCopy()
	out, warnings, err := Mutate(in, cassandra, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(in, before) {
		t.Fatal("Mutate changed its input")
	}
	if len(warnings) != 0 {
		t.Errorf("unexpected warnings %v", warnings)
	}
	if out.Labels[contract.GroupLabel] != "cassandra" || out.Annotations[contract.InjectedAnnotation] != "dev" {
		t.Errorf("labels %v annotations %v", out.Labels, out.Annotations)
	}
	for _, c := range out.Spec.Containers {
		want := map[string]string{"CASSANDRA_SERVICE": "cassandra", contract.EnvSeedsFile: contract.SeedsFile, contract.EnvPodNamespace: ""}
		for _, e := range c.Env {
			v, ok := want[e.Name]
			if !ok {
				t.Errorf("container %s: unexpected env %s", c.Name, e.Name)
				continue
			}
			if e.Name == contract.EnvPodNamespace {
				if e.ValueFrom == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
					t.Errorf("POD_NAMESPACE not from the downward API: %+v", e)
				}
			} else if e.Value != v {
				t.Errorf("container %s: %s=%q, want %q", c.Name, e.Name, e.Value, v)
			}
			delete(want, e.Name)
		}
		if len(want) != 0 {
			t.Errorf("container %s lacks %v", c.Name, want)
		}
		if len(c.VolumeMounts) != 1 || !equality.Semantic.DeepEqual(c.VolumeMounts[0], corev1.VolumeMount{Name: contract.SeedsVolumeName, MountPath: contract.SeedsMountPath, ReadOnly: true}) {
			t.Errorf("container %s mounts %+v", c.Name, c.VolumeMounts)
		}
	}
	if len(out.Spec.Volumes) != 1 || out.Spec.Volumes[0].Name != contract.SeedsVolumeName || out.Spec.Volumes[0].EmptyDir == nil {
		t.Errorf("volumes %+v", out.Spec.Volumes)
	}
	if len(out.Spec.InitContainers) != 2 || out.Spec.InitContainers[0].Name != "user-init" || out.Spec.InitContainers[1].Name != contract.InitContainerName {
		t.Fatalf("seed-discovery must follow the user's init containers: %+v", out.Spec.InitContainers)
	}
	ic := out.Spec.InitContainers[1]
	sc := ic.SecurityContext
	if !*sc.RunAsNonRoot || *sc.AllowPrivilegeEscalation || !*sc.ReadOnlyRootFilesystem || sc.Capabilities.Drop[0] != "ALL" || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("init container security context is not restricted: %+v", sc)
	}
	if ic.Resources.Requests.Cpu().String() != "10m" || ic.Resources.Limits.Memory().String() != "32Mi" {
		t.Errorf("resources %+v", ic.Resources)
	}
	if len(ic.VolumeMounts) != 1 || ic.VolumeMounts[0].ReadOnly {
		t.Errorf("seed-discovery must mount the volume read-write: %+v", ic.VolumeMounts)
	}
	downward := map[string]string{}
	for _, e := range ic.Env {
		if e.ValueFrom != nil {
			downward[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	for name, path := range map[string]string{"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace", "POD_IP": "status.podIP", "POD_IPS": "status.podIPs"} {
		if downward[name] != path {
			t.Errorf("init env %s from %q, want %q", name, downward[name], path)
		}
	}
	if !IsInjected(out) || IsInjected(in) {
		t.Error("IsInjected must tell the output from the input")
	}
}

func TestMutateUserEnv(t *testing.T) {
	cases := []struct {
		name        string
		env         []corev1.EnvVar
		wantWarning string
		wantValue   string
	}{
		{name: "same literal value", env: []corev1.EnvVar{{Name: "CASSANDRA_SERVICE", Value: "cassandra"}}, wantValue: "cassandra"},
		{name: "different literal value", env: []corev1.EnvVar{{Name: "CASSANDRA_SERVICE", Value: "my-cassandra"}}, wantWarning: `sets CASSANDRA_SERVICE to "my-cassandra"`, wantValue: "my-cassandra"},
		{name: "POD_NAMESPACE as literal", env: []corev1.EnvVar{{Name: "POD_NAMESPACE", Value: "prod"}}, wantWarning: `sets POD_NAMESPACE to "prod"; kept as set, peergroup would have set fieldRef metadata.namespace`},
		{name: "POD_NAMESPACE from the downward API", env: []corev1.EnvVar{{Name: "POD_NAMESPACE", ValueFrom: fieldRef("metadata.namespace")}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := twoContainerPod()
			p.Spec.Containers = p.Spec.Containers[:1]
			p.Spec.Containers[0].Env = tc.env
			out, warnings, err := Mutate(p, cassandra, DefaultConfig())
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantWarning == "" && len(warnings) != 0 || tc.wantWarning != "" && (len(warnings) != 1 || !strings.Contains(warnings[0], tc.wantWarning)) {
				t.Errorf("warnings %q, want %q", warnings, tc.wantWarning)
			}
			counts := map[string]int{}
			for _, e := range out.Spec.Containers[0].Env {
				counts[e.Name]++
				if e.Name == tc.env[0].Name && tc.wantValue != "" && e.Value != tc.wantValue {
					t.Errorf("user value replaced: %+v", e)
				}
			}
			for name, n := range counts {
				if n != 1 {
					t.Errorf("%s appears %d times", name, n)
				}
			}
		})
	}
}

func TestMutateTuningAnnotations(t *testing.T) {
	p := twoContainerPod()
	p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{Name: "intra-node", ContainerPort: 7000})
	p.Annotations = map[string]string{
		contract.Domain + "/seed-count":     "2",
		contract.Domain + "/expected-peers": "3",
		contract.Domain + "/stable-margin":  "10s",
		contract.Domain + "/founding":       "ordinal0",
		contract.Domain + "/timeout":        "600s",
		contract.Domain + "/peer-port":      "7000",
		contract.Domain + "/port-name":      "intra-node",
	}
	cfg := DefaultConfig()
	cfg.ClusterDomain = "cluster.local"
	out, _, err := Mutate(p, cassandra, cfg)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, e := range out.Spec.InitContainers[1].Env {
		env[e.Name] = e.Value
	}
	want := map[string]string{
		"PEERGROUP_SERVICE": "cassandra", "PEERGROUP_SEED_COUNT": "2", "PEERGROUP_EXPECTED_PEERS": "3",
		"PEERGROUP_STABLE_MARGIN": "10s", "PEERGROUP_FOUNDING": "ordinal0", "PEERGROUP_TIMEOUT": "600s",
		"PEERGROUP_PEER_PORT": "7000", "PEERGROUP_PORT_NAME": "intra-node", "PEERGROUP_CLUSTER_DOMAIN": "cluster.local",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
}

func TestMutateRejectsBadInput(t *testing.T) {
	cases := []struct {
		name       string
		modify     func(*corev1.Pod)
		wantErr    string
		wantReason Reason
	}{
		{"seed count zero", func(p *corev1.Pod) { p.Annotations = map[string]string{contract.Domain + "/seed-count": "0"} }, `peergroup.dev/seed-count value "0" is invalid: it must be an integer from 1 to 100`, ReasonInvalidTuning},
		{"seed count text", func(p *corev1.Pod) { p.Annotations = map[string]string{contract.Domain + "/seed-count": "three"} }, `"three"`, ReasonInvalidTuning},
		{"margin without unit", func(p *corev1.Pod) { p.Annotations = map[string]string{contract.Domain + "/stable-margin": "5"} }, "a Go duration", ReasonInvalidTuning},
		{"unknown founding", func(p *corev1.Pod) { p.Annotations = map[string]string{contract.Domain + "/founding": "first"} }, "one of lowest, ordinal0, never", ReasonInvalidTuning},
		{"port out of range", func(p *corev1.Pod) { p.Annotations = map[string]string{contract.Domain + "/peer-port": "70000"} }, "1 to 65535", ReasonInvalidTuning},
		{"volume name taken", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: contract.SeedsVolumeName, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/x"}}}}
		}, `volume named "peergroup-seeds" that is not an emptyDir`, ReasonCollision},
		{"mount path taken", func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: contract.SeedsMountPath}}
		}, `container "cassandra" already mounts volume "data" at /var/run/peergroup`, ReasonCollision},
		{"windows by spec.os", func(p *corev1.Pod) { p.Spec.OS = &corev1.PodOS{Name: corev1.Windows} },
			`the pod sets spec.os.name "windows"; the seed-discovery init container runs on Linux only`, ReasonUnsupportedOS},
		{"windows by node selector", func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{corev1.LabelOSStable: "windows"} },
			"the pod selects nodes with kubernetes.io/os=windows", ReasonUnsupportedOS},
		{"windows by required node affinity", func(p *corev1.Pod) {
			p.Spec.Affinity = requireNodes(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelOSStable, Operator: corev1.NodeSelectorOpIn, Values: []string{"windows"}}}})
		}, "the pod's required node affinity admits no node with kubernetes.io/os=linux", ReasonUnsupportedOS},
		{"linux excluded by NotIn in every term", func(p *corev1.Pod) {
			p.Spec.Affinity = requireNodes(
				corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelOSStable, Operator: corev1.NodeSelectorOpNotIn, Values: []string{"linux"}}}},
				corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"a"}}, {Key: corev1.LabelOSStable, Operator: corev1.NodeSelectorOpDoesNotExist}}})
		}, "admits no node with kubernetes.io/os=linux", ReasonUnsupportedOS},
		{"port name of no port", func(p *corev1.Pod) { p.Annotations = map[string]string{contract.PortName.Annotation: "gossip"} },
			`annotation peergroup.dev/port-name value "gossip" is invalid: it must be the name of a TCP port of one of the pod's containers`, ReasonInvalidTuning},
		{"port name of a UDP port", func(p *corev1.Pod) {
			p.Spec.Containers[1].Ports = []corev1.ContainerPort{{Name: "gossip", ContainerPort: 7946, Protocol: corev1.ProtocolUDP}}
			p.Annotations = map[string]string{contract.PortName.Annotation: "gossip"}
		}, "the name of a TCP port", ReasonInvalidTuning},
		{"ordinal0 in a Deployment's pod", func(p *corev1.Pod) {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "akka-5d8f", UID: "u", Controller: ptr.To(true)}}
			p.Annotations = map[string]string{contract.FoundingValue.Annotation: "ordinal0"}
		}, `it must be lowest or never for a pod created by a ReplicaSet: ordinal0 needs StatefulSet pods`, ReasonInvalidTuning},
		{"hostNetwork with the node's DNS", func(p *corev1.Pod) { p.Spec.HostNetwork, p.Spec.DNSPolicy = true, corev1.DNSClusterFirst },
			"the pod uses hostNetwork with dnsPolicy ClusterFirst, so it resolves with the node's resolv.conf", ReasonUnsupportedDNS},
		{"hostNetwork, dnsPolicy Default", func(p *corev1.Pod) { p.Spec.HostNetwork, p.Spec.DNSPolicy = true, corev1.DNSDefault },
			"the pod sets dnsPolicy Default, so it resolves with the node's resolv.conf", ReasonUnsupportedDNS},
		{"dnsPolicy Default without hostNetwork", func(p *corev1.Pod) { p.Spec.DNSPolicy = corev1.DNSDefault },
			"use dnsPolicy ClusterFirst", ReasonUnsupportedDNS},
		{"windows by the beta node label", func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"beta.kubernetes.io/os": "windows"} },
			"the pod selects nodes with beta.kubernetes.io/os=windows", ReasonUnsupportedOS},
		{"windows by the beta label in node affinity", func(p *corev1.Pod) {
			p.Spec.Affinity = requireNodes(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "beta.kubernetes.io/os", Operator: corev1.NodeSelectorOpIn, Values: []string{"windows"}}}})
		}, "admits no node with kubernetes.io/os=linux", ReasonUnsupportedOS},
		{"port name the Service does not carry (a second name for one port)", func(p *corev1.Pod) {
			p.Spec.Containers[1].Ports = []corev1.ContainerPort{{Name: "client", ContainerPort: 7000}, {Name: "gossip", ContainerPort: 7000}}
			p.Annotations = map[string]string{contract.PortName.Annotation: "gossip"}
		}, "the first with its number", ReasonInvalidTuning},
		{"a subPath of the seeds volume", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: contract.SeedsVolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: contract.SeedsVolumeName, MountPath: contract.SeedsMountPath, SubPath: "elsewhere"}}
		}, `mounts only a subPath of the "peergroup-seeds" volume`, ReasonCollision},
		{"mount path with a trailing slash", func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: contract.SeedsMountPath + "/"}}
		}, `container "cassandra" already mounts volume "data" at /var/run/peergroup/`, ReasonCollision},
		{"mount inside the seeds directory", func(p *corev1.Pod) {
			p.Spec.Containers[1].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/var/run//peergroup/seeds"}}
		}, `container "exporter" already mounts volume "data" at /var/run//peergroup/seeds`, ReasonCollision},
		{"user's seeds volume mounted elsewhere", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: contract.SeedsVolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: contract.SeedsVolumeName, MountPath: "/data"}}
		}, `container "cassandra" mounts a volume named "peergroup-seeds" at "/data"; peergroup needs that name for the seeds volume`, ReasonCollision},
		{"hostname seeds without a stable name", func(p *corev1.Pod) {
			p.Annotations = map[string]string{contract.SeedAddressValue.Annotation: "hostname"}
		},
			`annotation peergroup.dev/seed-address value "hostname" is invalid: it must be ip for this pod: hostname needs a stable DNS name <pod>.cassandra.<namespace>.svc, which only a pod with spec.hostname and spec.subdomain "cassandra" has (a StatefulSet's pod with serviceName "cassandra"; this pod has hostname "" and subdomain "")`, ReasonInvalidTuning},
		{"hostname seeds under another Service", func(p *corev1.Pod) {
			p.Spec.Hostname, p.Spec.Subdomain = "cassandra-0", "cassandra-headless"
			p.Annotations = map[string]string{contract.SeedAddressValue.Annotation: "hostname"}
		}, `this pod has hostname "cassandra-0" and subdomain "cassandra-headless"`, ReasonInvalidTuning},
		{"hostname seeds with a hostname only", func(p *corev1.Pod) {
			p.Spec.Hostname = "cassandra-0"
			p.Annotations = map[string]string{contract.SeedAddressValue.Annotation: "hostname"}
		}, `and subdomain ""`, ReasonInvalidTuning},
		{"hostname seeds for a Deployment's pods, which share one hostname", func(p *corev1.Pod) {
			p.Spec.Hostname, p.Spec.Subdomain = "web", "cassandra"
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d8f", UID: "u", Controller: ptr.To(true)}}
			p.Annotations = map[string]string{contract.SeedAddressValue.Annotation: "hostname"}
		}, `it must be ip for a pod created by a ReplicaSet: its pods all share the template's spec.hostname`, ReasonInvalidTuning},
		{"hostname seeds for a non-indexed Job's pods", func(p *corev1.Pod) {
			p.Spec.Hostname, p.Spec.Subdomain = "train", "cassandra"
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: "train", UID: "u", Controller: ptr.To(true)}}
			p.Annotations = map[string]string{contract.SeedAddressValue.Annotation: "hostname"}
		}, `it must be ip for a pod created by a Job`, ReasonInvalidTuning},
		{"unknown seed address", func(p *corev1.Pod) { p.Annotations = map[string]string{contract.SeedAddressValue.Annotation: "dns"} },
			`annotation peergroup.dev/seed-address value "dns" is invalid: it must be ip or hostname`, ReasonInvalidTuning},
		{"refresh below its range", func(p *corev1.Pod) { p.Annotations = map[string]string{contract.Refresh.Annotation: "4s"} },
			`annotation peergroup.dev/refresh value "4s" is invalid: it must be a Go duration from 5s to 1h`, ReasonInvalidTuning},
		{"refresh above its range", func(p *corev1.Pod) { p.Annotations = map[string]string{contract.Refresh.Annotation: "1h0m1s"} },
			`from 5s to 1h`, ReasonInvalidTuning},
		{"unknown ip family policy", func(p *corev1.Pod) { p.Annotations = map[string]string{contract.IPFamilyPolicyAnnotation: "DualStack"} },
			`annotation peergroup.dev/ip-family-policy value "DualStack" is invalid: it must be SingleStack, PreferDualStack or RequireDualStack`, ReasonInvalidTuning},
		{"init-first not a boolean", func(p *corev1.Pod) { p.Annotations = map[string]string{contract.InitFirstAnnotation: "yes"} },
			`annotation peergroup.dev/init-first value "yes" is invalid: it must be "true" or "false"`, ReasonInvalidTuning},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := twoContainerPod()
			tc.modify(p)
			_, _, err := Mutate(p, cassandra, DefaultConfig())
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
			}
			if got := reasonOf(err); got != tc.wantReason {
				t.Errorf("denial reason %q, want %q", got, tc.wantReason)
			}
			// The same pod through the whole decision.
			p.Labels = map[string]string{contract.GroupLabel: "cassandra"}
			if d := decideT(t, p, nil, nil); d.Verdict != VerdictDenied || d.Reason != tc.wantReason || d.Message != err.Error() {
				t.Errorf("decision %s, want denied %s %q", summary(d), tc.wantReason, err)
			}
		})
	}
}

func TestMutateReusesUserSeedsEmptyDir(t *testing.T) {
	p := twoContainerPod()
	p.Spec.Volumes = []corev1.Volume{{Name: contract.SeedsVolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}}}
	out, _, err := Mutate(p, cassandra, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Spec.Volumes) != 1 || out.Spec.Volumes[0].EmptyDir.Medium != corev1.StorageMediumMemory {
		t.Errorf("volumes %+v", out.Spec.Volumes)
	}
}

func TestDesiredServicePorts(t *testing.T) {
	p := &corev1.Pod{}
	p.Spec.Containers = []corev1.Container{
		{Name: "a", Ports: []corev1.ContainerPort{{Name: "cql", ContainerPort: 9042}, {ContainerPort: 7000}, {ContainerPort: 53, Protocol: corev1.ProtocolUDP}}},
		// Same port again in another container, and a reused name.
		{Name: "b", Ports: []corev1.ContainerPort{{Name: "cql", ContainerPort: 9042}, {Name: "cql", ContainerPort: 9043}}},
	}
	svc := DesiredService(p, "db", cassandra)
	var got []string
	for _, port := range svc.Spec.Ports {
		got = append(got, port.Name+"/"+string(port.Protocol)+"/"+port.TargetPort.String())
	}
	want := "cql/TCP/9042 tcp-7000/TCP/7000 udp-53/UDP/53 tcp-9043/TCP/9043"
	if strings.Join(got, " ") != want {
		t.Errorf("ports %q, want %q", strings.Join(got, " "), want)
	}
	if svc.Namespace != "db" || svc.Name != "cassandra" || !IsHeadless(svc) || !svc.Spec.PublishNotReadyAddresses {
		t.Errorf("service %+v", svc)
	}
}

func requireNodes(terms ...corev1.NodeSelectorTerm) *corev1.Affinity {
	return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms}}}
}

// Linux stays admitted when any term of the required node affinity admits
// it, and the seeds volume the user declared is reused where peergroup
// mounts it.
func TestMutateAcceptsLinuxAndReusedSeedsVolume(t *testing.T) {
	cases := map[string]func(*corev1.Pod){
		"one term admits linux": func(p *corev1.Pod) {
			p.Spec.Affinity = requireNodes(
				corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelOSStable, Operator: corev1.NodeSelectorOpIn, Values: []string{"windows"}}}},
				corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelOSStable, Operator: corev1.NodeSelectorOpIn, Values: []string{"linux", "windows"}}}})
		},
		"affinity on other labels": func(p *corev1.Pod) {
			p.Spec.Affinity = requireNodes(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"a"}}}})
		},
		"os label required to exist": func(p *corev1.Pod) {
			p.Spec.Affinity = requireNodes(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelOSStable, Operator: corev1.NodeSelectorOpExists}}})
		},
		"seeds volume mounted where peergroup mounts it": func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: contract.SeedsVolumeName, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: contract.SeedsVolumeName, MountPath: contract.SeedsMountPath + "/", ReadOnly: true}}
		},
		"port name of a TCP port": func(p *corev1.Pod) {
			p.Annotations = map[string]string{contract.PortName.Annotation: "cql"}
		},
		"ordinal0 in a StatefulSet's pod": func(p *corev1.Pod) {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "cassandra", UID: "u", Controller: ptr.To(true)}}
			p.Annotations = map[string]string{contract.FoundingValue.Annotation: "ordinal0"}
		},
		"ordinal0 in a pod without a controller (a template)": func(p *corev1.Pod) {
			p.Annotations = map[string]string{contract.FoundingValue.Annotation: "ordinal0"}
		},
		"hostNetwork with the cluster DNS": func(p *corev1.Pod) {
			p.Spec.HostNetwork, p.Spec.DNSPolicy = true, corev1.DNSClusterFirstWithHostNet
		},
		"a user mount above the seeds directory": func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "run", MountPath: "/var/run"}}
		},
	}
	for name, modify := range cases {
		t.Run(name, func(t *testing.T) {
			p := twoContainerPod()
			modify(p)
			p.Labels = map[string]string{contract.GroupLabel: "cassandra"}
			if d := decideT(t, p, nil, nil); d.Verdict != VerdictInjected {
				t.Errorf("decision %s, want injected", summary(d))
			}
		})
	}
}

// A container that also takes env from envFrom is warned that the
// variables peergroup adds take precedence there; only those it added.
func TestMutateWarnsAboutEnvFrom(t *testing.T) {
	p := twoContainerPod()
	p.Spec.Containers[0].EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}}}
	p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: contract.EnvSeedsFile, Value: contract.SeedsFile}}
	p.Labels = map[string]string{contract.GroupLabel: "cassandra"}
	d := decideT(t, p, nil, nil)
	want := `peergroup: container "cassandra" also takes env from envFrom; the variables peergroup adds (CASSANDRA_SERVICE, POD_NAMESPACE) take precedence over the same names there`
	if d.Verdict != VerdictInjected || len(d.Warnings) != 1 || d.Warnings[0] != want {
		t.Errorf("warnings %q, want [%q]", d.Warnings, want)
	}
}

// Injection never makes a pod's QoS class worse: a Guaranteed pod gets an
// init container whose requests equal its limits; other pods get the
// configured requests and limits.
func TestMutateKeepsGuaranteedPodsGuaranteed(t *testing.T) {
	res := func(cpu, mem string) corev1.ResourceList {
		return corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)}
	}
	guaranteedPod := func() *corev1.Pod {
		p := twoContainerPod()
		for _, cs := range [][]corev1.Container{p.Spec.Containers, p.Spec.InitContainers} {
			for i := range cs {
				cs[i].Resources = corev1.ResourceRequirements{Requests: res("1", "1Gi"), Limits: res("1", "1Gi")}
			}
		}
		return p
	}
	cfg := DefaultConfig()
	cases := []struct {
		name       string
		pod        *corev1.Pod
		guaranteed bool
	}{
		{"guaranteed", guaranteedPod(), true},
		{"one container's request below its limit", func() *corev1.Pod {
			p := guaranteedPod()
			p.Spec.Containers[1].Resources.Requests = res("500m", "1Gi")
			return p
		}(), false},
		{"an init container without limits", func() *corev1.Pod {
			p := guaranteedPod()
			p.Spec.InitContainers[0].Resources = corev1.ResourceRequirements{}
			return p
		}(), false},
		{"limits only (requests default to them)", func() *corev1.Pod {
			p := guaranteedPod()
			for i := range p.Spec.Containers {
				p.Spec.Containers[i].Resources.Requests = nil
			}
			return p
		}(), true},
		{"best effort", twoContainerPod(), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.pod.Labels = map[string]string{contract.GroupLabel: "cassandra"}
			d := decideT(t, tc.pod, nil, nil)
			if d.Verdict != VerdictInjected {
				t.Fatalf("%s", summary(d))
			}
			ic := d.Mutated.Spec.InitContainers[len(d.Mutated.Spec.InitContainers)-1]
			want := cfg.Resources
			if tc.guaranteed {
				want = corev1.ResourceRequirements{Requests: cfg.Resources.Limits, Limits: cfg.Resources.Limits}
			}
			if !equality.Semantic.DeepEqual(ic.Resources, want) {
				t.Errorf("init container resources %v, want %v", ic.Resources, want)
			}
			if got := guaranteed(d.Mutated); got != tc.guaranteed {
				t.Errorf("the injected pod is Guaranteed: %v, want %v", got, tc.guaranteed)
			}
		})
	}
	// Only requests configured: the limits follow them.
	if r := guaranteedResources(corev1.ResourceRequirements{Requests: res("10m", "16Mi")}); !equality.Semantic.DeepEqual(r.Limits, res("10m", "16Mi")) {
		t.Errorf("limits %v", r.Limits)
	}
}

// With pod-level resources the init container keeps explicit resources,
// cut to the pod's: the API server requires the containers' requests to
// fit the pod's, and explicit values leave no room for LimitRange
// defaults.
func TestMutatePodLevelResources(t *testing.T) {
	q := resource.MustParse
	p := twoContainerPod()
	p.Labels = map[string]string{contract.GroupLabel: "cassandra"}
	p.Spec.Resources = &corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: q("5m")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: q("50m"), corev1.ResourceMemory: q("20Mi")},
	}
	d := decideT(t, p, nil, nil)
	if d.Verdict != VerdictInjected {
		t.Fatal(summary(d))
	}
	ic := d.Mutated.Spec.InitContainers[len(d.Mutated.Spec.InitContainers)-1]
	want := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: q("5m"), corev1.ResourceMemory: q("16Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: q("50m"), corev1.ResourceMemory: q("20Mi")},
	}
	if !equality.Semantic.DeepEqual(ic.Resources, want) {
		t.Errorf("init container resources %v, want %v", ic.Resources, want)
	}
	// A limit cut below the configured request takes the request down too.
	r := fitToPod(DefaultConfig().Resources, corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: q("8Mi")}})
	if r.Requests.Memory().Cmp(q("8Mi")) != 0 || r.Limits.Memory().Cmp(q("8Mi")) != 0 {
		t.Errorf("fit: %v", r)
	}
}

// A dnsPolicy of any size is cut in the denial.
func TestDNSPolicyCutInDenial(t *testing.T) {
	p := twoContainerPod()
	p.Labels = map[string]string{contract.GroupLabel: "cassandra"}
	p.Spec.HostNetwork, p.Spec.DNSPolicy = true, corev1.DNSPolicy(strings.Repeat("x", 1<<20))
	if d := decideT(t, p, nil, nil); d.Reason != ReasonUnsupportedDNS || len(d.Message) > 1024 {
		t.Errorf("%s, %d-byte message", d.Reason, len(d.Message))
	}
}

// The refreshing sidecar, seed-discovery placed first, hostname seeds for
// a StatefulSet pod, and the warnings about setups that can found twice.
func TestMutateSeedOptions(t *testing.T) {
	rsOwner := []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d8f", UID: "u", Controller: ptr.To(true)}}
	cases := []struct {
		name         string
		modify       func(*corev1.Pod)
		wantIndex    int // of seed-discovery among the init containers
		wantSidecar  bool
		wantFailures int32 // the startup probe's failure threshold
		wantWarnings []string
	}{
		{name: "defaults: a plain init container, last", modify: func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "migrate"}}
		}, wantIndex: 1},
		{name: "init-first", modify: func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "istio-init"}, {Name: "migrate"}}
			p.Annotations = map[string]string{contract.InitFirstAnnotation: "true"}
		}, wantIndex: 0},
		{name: "init-first false keeps it last, and a mesh's init container is reported", modify: func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "linkerd-init"}}
			p.Annotations = map[string]string{contract.InitFirstAnnotation: "false"}
		}, wantIndex: 1, wantWarnings: []string{`init container "linkerd-init" (a service mesh's) runs before seed-discovery`}},
		{name: "refresh: a native sidecar with a startup probe past the default timeout", modify: func(p *corev1.Pod) {
			p.Annotations = map[string]string{contract.Refresh.Annotation: "30s"}
		}, wantSidecar: true, wantFailures: 330},
		{name: "refresh with a timeout, first", modify: func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "kuma-init"}}
			p.Annotations = map[string]string{contract.Refresh.Annotation: "5s", contract.Timeout.Annotation: "10s", contract.InitFirstAnnotation: "true"}
		}, wantIndex: 0, wantSidecar: true, wantFailures: 40},
		{name: "hostname seeds for a StatefulSet pod of the Service", modify: func(p *corev1.Pod) {
			p.Spec.Hostname, p.Spec.Subdomain = "cassandra-0", "cassandra"
			p.Annotations = map[string]string{contract.SeedAddressValue.Annotation: "hostname"}
		}},
		{name: "a ReplicaSet's pod that may found without a peer port", modify: func(p *corev1.Pod) {
			p.OwnerReferences = rsOwner
		}, wantWarnings: []string{"this ReplicaSet's pods may found the group (founding=lowest) and no peergroup.dev/peer-port is set"}},
		{name: "a ReplicaSet's pod with a peer port", modify: func(p *corev1.Pod) {
			p.OwnerReferences = rsOwner
			p.Annotations = map[string]string{contract.PeerPort.Annotation: "7000"}
		}},
		{name: "a peer port with one seed", modify: func(p *corev1.Pod) {
			p.Annotations = map[string]string{contract.PeerPort.Annotation: "7000", contract.SeedCount.Annotation: "1"}
		}, wantWarnings: []string{`peergroup.dev/peer-port with peergroup.dev/seed-count "1"`}},
		{name: "a peer port with one seed, written 01", modify: func(p *corev1.Pod) {
			p.Annotations = map[string]string{contract.PeerPort.Annotation: "7000", contract.SeedCount.Annotation: "01"}
		}, wantWarnings: []string{`seed-count "1"`}},
		{name: "a mesh's proxy as a native sidecar after its init container: no warning", modify: func(p *corev1.Pod) {
			always := corev1.ContainerRestartPolicyAlways
			p.Spec.InitContainers = []corev1.Container{{Name: "istio-init"}, {Name: "istio-proxy", RestartPolicy: &always}}
		}, wantIndex: 2},
		{name: "a ReplicationController's pod that may found without a peer port", modify: func(p *corev1.Pod) {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ReplicationController", Name: "nats", UID: "u", Controller: ptr.To(true)}}
		}, wantWarnings: []string{"this ReplicationController's pods may found the group"}},
		{name: "a StatefulSet's pod may found: no warning (ordinals and stable identity)", modify: func(p *corev1.Pod) {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "cassandra", UID: "u", Controller: ptr.To(true)}}
		}},
		{name: "a peer port with two seeds", modify: func(p *corev1.Pod) {
			p.Annotations = map[string]string{contract.PeerPort.Annotation: "7000", contract.SeedCount.Annotation: "2"}
		}},
		{name: "a ReplicaSet's pod that never founds", modify: func(p *corev1.Pod) {
			p.OwnerReferences = rsOwner
			p.Annotations = map[string]string{contract.FoundingValue.Annotation: "never"}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := memberPod()
			tc.modify(p)
			d := decideT(t, p, nil, nil)
			if d.Verdict != VerdictInjected {
				t.Fatalf("decision %s", summary(d))
			}
			ics := d.Mutated.Spec.InitContainers
			if len(ics) != len(p.Spec.InitContainers)+1 || ics[tc.wantIndex].Name != contract.InitContainerName {
				t.Fatalf("init containers %v, want seed-discovery at %d", names(ics), tc.wantIndex)
			}
			ic := ics[tc.wantIndex]
			sidecar := ic.RestartPolicy != nil && *ic.RestartPolicy == corev1.ContainerRestartPolicyAlways
			if sidecar != tc.wantSidecar || (ic.StartupProbe != nil) != tc.wantSidecar {
				t.Fatalf("restartPolicy %v, startupProbe %v; want sidecar %v", ic.RestartPolicy, ic.StartupProbe, tc.wantSidecar)
			}
			if tc.wantSidecar {
				pr := ic.StartupProbe
				want := []string{"/usr/local/bin/seed-discovery", "decided", "--output-dir=/var/run/peergroup"}
				if pr.Exec == nil || !slices.Equal(pr.Exec.Command, want) || pr.PeriodSeconds != 1 || pr.FailureThreshold != tc.wantFailures {
					t.Errorf("startup probe %+v (exec %v), want %v every 1s, %d failures", pr, pr.Exec, want, tc.wantFailures)
				}
			}
			if len(d.Warnings) != len(tc.wantWarnings) {
				t.Fatalf("warnings %q, want %d", d.Warnings, len(tc.wantWarnings))
			}
			for i, w := range tc.wantWarnings {
				if !strings.Contains(d.Warnings[i], w) {
					t.Errorf("warning %q, want %q", d.Warnings[i], w)
				}
			}
		})
	}
}

func names(cs []corev1.Container) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Name
	}
	return out
}

// The refreshing sidecar with pod-level resources gets the requests the
// app containers and the pod's own sidecars leave (never below zero): the
// API server sums all of them against the pod's.
func TestMutatePodLevelResourcesSidecar(t *testing.T) {
	q := resource.MustParse
	always := corev1.ContainerRestartPolicyAlways
	for _, tc := range []struct {
		name    string
		app     corev1.ResourceList
		sidecar corev1.ResourceList // the user's own sidecar
		want    corev1.ResourceList
	}{
		{"app requests nothing", nil, nil, corev1.ResourceList{corev1.ResourceCPU: q("10m"), corev1.ResourceMemory: q("16Mi")}},
		{"app takes part", corev1.ResourceList{corev1.ResourceCPU: q("16m"), corev1.ResourceMemory: q("4Mi")}, nil, corev1.ResourceList{corev1.ResourceCPU: q("4m"), corev1.ResourceMemory: q("12Mi")}},
		{"app and a user's sidecar take all", corev1.ResourceList{corev1.ResourceCPU: q("15m")}, corev1.ResourceList{corev1.ResourceCPU: q("10m"), corev1.ResourceMemory: q("20Mi")},
			corev1.ResourceList{corev1.ResourceCPU: q("0"), corev1.ResourceMemory: q("0")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := memberPod()
			p.Annotations = map[string]string{contract.Refresh.Annotation: "30s"}
			p.Spec.Resources = &corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: q("20m"), corev1.ResourceMemory: q("16Mi")}}
			p.Spec.Containers[0].Resources.Requests = tc.app
			p.Spec.InitContainers = []corev1.Container{{Name: "proxy", RestartPolicy: &always, Resources: corev1.ResourceRequirements{Requests: tc.sidecar}}, {Name: "migrate", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: q("20m")}}}}
			d := decideT(t, p, nil, nil)
			if d.Verdict != VerdictInjected {
				t.Fatal(summary(d))
			}
			ic := d.Mutated.Spec.InitContainers[2]
			if !equality.Semantic.DeepEqual(ic.Resources.Requests, tc.want) {
				t.Errorf("sidecar requests %v, want %v", ic.Resources.Requests, tc.want)
			}
		})
	}
}

// Placed first (init-first), the sidecar also runs beside each ordinary
// init container: it gets what the largest of them leaves, if that is
// less than what the app containers leave.
func TestMutatePodLevelResourcesSidecarFirst(t *testing.T) {
	q := resource.MustParse
	p := memberPod()
	p.Annotations = map[string]string{contract.Refresh.Annotation: "30s", contract.InitFirstAnnotation: "true"}
	p.Spec.Resources = &corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: q("20m"), corev1.ResourceMemory: q("16Mi")}}
	p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: q("4m")}
	p.Spec.InitContainers = []corev1.Container{{Name: "migrate", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: q("18m"), corev1.ResourceMemory: q("16Mi")}}}}
	d := decideT(t, p, nil, nil)
	if d.Verdict != VerdictInjected {
		t.Fatal(summary(d))
	}
	ic := d.Mutated.Spec.InitContainers[0]
	want := corev1.ResourceList{corev1.ResourceCPU: q("2m"), corev1.ResourceMemory: q("0")}
	if ic.Name != contract.InitContainerName || !equality.Semantic.DeepEqual(ic.Resources.Requests, want) {
		t.Errorf("%s requests %v, want %v", ic.Name, ic.Resources.Requests, want)
	}
}

// An Indexed Job names each pod <job>-<index> (the pod-to-pod pattern of
// MPI and PyTorch jobs): hostname seeds are admitted for its pods, as for
// a StatefulSet's.
func TestHostnameSeedsForIndexedJobPods(t *testing.T) {
	p := twoContainerPod()
	p.Labels = map[string]string{contract.GroupLabel: "cassandra"}
	p.Spec.Hostname, p.Spec.Subdomain = "train-2", "cassandra"
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "Job", Name: "train", UID: "u", Controller: ptr.To(true)}}
	p.Annotations = map[string]string{contract.SeedAddressValue.Annotation: "hostname", batchv1.JobCompletionIndexAnnotation: "2"}
	if d := decideT(t, p, nil, nil); d.Verdict != VerdictInjected {
		t.Fatalf("%s, want injected", summary(d))
	}
	// A template's own hostname the controller did not write: denied.
	p.Spec.Hostname = "train"
	if d := decideT(t, p, nil, nil); d.Verdict != VerdictDenied {
		t.Fatalf("%s, want denied", summary(d))
	}
}
