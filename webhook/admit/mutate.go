package admit

import (
	"cmp"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/peergroup/peergroup/contract"
)

// IsInjected reports whether a pod already went through Mutate: it has
// peergroup's init container (recognised by its name and its mount of the
// seeds volume, so a user's unrelated init container called seed-discovery
// is a collision rather than a reason to skip), or the injected annotation
// (a pod injected offline by `peergroup inject`).
func IsInjected(pod *corev1.Pod) bool {
	_, annotated := pod.Annotations[contract.InjectedAnnotation]
	return annotated || hasInitContainer(pod)
}

// hasInitContainer reports whether pod runs peergroup's init container.
func hasInitContainer(pod *corev1.Pod) bool {
	return injectedContainer(pod) != nil
}

// injectedContainer is peergroup's init container in pod, or nil.
func injectedContainer(pod *corev1.Pod) *corev1.Container {
	for i := range pod.Spec.InitContainers {
		if c := &pod.Spec.InitContainers[i]; c.Name == contract.InitContainerName && hasMount(c, contract.SeedsVolumeName) {
			return c
		}
	}
	return nil
}

// Mutate returns a copy of pod with everything a member of m's group needs
// (docs/design.md, "What a member pod gets"). It performs no I/O, so the
// webhook, the CLI and the tests share one implementation. The warnings are
// for user values left in place that differ from what would have been
// injected.
//
// Mutate, ResolveGroup and DesiredService may read only the pod fields that
// AdmittedPod (fastpath.go) decodes: reading another field means adding it
// there, and the table tests, which run every case on the whole pod and on
// its AdmittedPod projection, fail until it is added.
func Mutate(pod *corev1.Pod, m Membership, cfg Config) (*corev1.Pod, []string, error) {
	tuning, err := TuningEnv(pod.Annotations)
	if err != nil {
		return nil, nil, err
	}
	if err := checkTuningFitsPod(pod, m); err != nil {
		return nil, nil, err
	}
	initFirst, err := initFirst(pod.Annotations)
	if err != nil {
		return nil, nil, err
	}
	if err := checkIPFamilyPolicy(pod); err != nil {
		return nil, nil, err
	}
	if err := checkOS(pod); err != nil {
		return nil, nil, err
	}
	if err := checkDNS(pod); err != nil {
		return nil, nil, err
	}
	if err := checkCollisions(pod); err != nil {
		return nil, nil, err
	}
	out, warnings := withPeerFields(pod, m, false)
	warnings = append(warnings, foundingWarnings(pod, initFirst)...)
	out.Annotations = withKey(pod.Annotations, contract.InjectedAnnotation, cfg.Version)
	out.Spec.Volumes = slices.Clip(pod.Spec.Volumes)
	out.Spec.InitContainers = slices.Clip(pod.Spec.InitContainers)
	out.Spec.ImagePullSecrets = withPullSecrets(pod.Spec.ImagePullSecrets, cfg.ImagePullSecrets)
	if !hasVolume(out, contract.SeedsVolumeName) {
		out.Spec.Volumes = append(out.Spec.Volumes, corev1.Volume{
			Name:         contract.SeedsVolumeName,
			VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}},
		})
	}
	ic := initContainer(m, tuning, cfg)
	if !cfg.FixedIDs && runsAsRoot(pod) {
		// Without fixed IDs the container inherits the pod's user; a pod
		// that pins root (anyuid, a root app) would make its runAsNonRoot
		// refuse to start. It runs as the image's own user instead.
		ic.SecurityContext.RunAsUser, ic.SecurityContext.RunAsGroup = ptr.To[int64](65532), ptr.To[int64](65532)
	}
	switch {
	case podLevelResources(pod):
		// The API server requires every container's requests to fit the
		// pod's, and the pod's resources decide its QoS class: the init
		// container keeps explicit resources (so no LimitRange default
		// replaces them) cut to the pod's budget.
		budget := *pod.Spec.Resources
		if isSidecar(&ic) {
			// A sidecar runs beside the app containers, so the API server
			// adds its requests to theirs: it gets what they leave.
			budget.Requests = leftOver(budget.Requests, pod, initFirst)
		}
		ic.Resources = fitToPod(ic.Resources, budget)
	case guaranteed(pod):
		ic.Resources = guaranteedResources(ic.Resources)
	}
	if initFirst {
		out.Spec.InitContainers = slices.Insert(out.Spec.InitContainers, 0, ic)
	} else {
		out.Spec.InitContainers = append(out.Spec.InitContainers, ic)
	}
	return out, warnings, nil
}

// Complete returns a copy of an already injected pod with what is missing
// since: the env and the seeds mount in app containers added after the
// injection (another webhook's, on reinvocation), the group and peer
// labels, and the configured image pull secrets. It returns nil when nothing is missing, and for a pod that has
// no seeds volume and init container of peergroup's to complete (only the
// annotation: nothing to mount).
func Complete(pod *corev1.Pod, m Membership, cfg Config) (*corev1.Pod, []string, error) {
	secrets := withPullSecrets(pod.Spec.ImagePullSecrets, cfg.ImagePullSecrets)
	lacksSecrets := len(secrets) > len(pod.Spec.ImagePullSecrets)
	if !hasInitContainer(pod) || !hasVolume(pod, contract.SeedsVolumeName) || isComplete(pod, m) && !lacksSecrets {
		return nil, nil, nil
	}
	if err := checkMounts(pod); err != nil {
		return nil, nil, err
	}
	out, warnings := withPeerFields(pod, m, true)
	// The configured pull secrets too: a pod injected offline, or from a
	// template copied from a live pod, needs them to pull seed-discovery.
	out.Spec.ImagePullSecrets = secrets
	return out, warnings, nil
}

// appEnv is what every app container of a member of m gets.
func appEnv(m Membership) []corev1.EnvVar {
	return []corev1.EnvVar{
		{Name: contract.ServiceEnvName(m.Group), Value: m.Service},
		{Name: contract.EnvPodNamespace, ValueFrom: fieldRef("metadata.namespace")},
		{Name: contract.EnvSeedsFile, Value: contract.SeedsFile},
	}
}

// withPeerFields copies pod with the group and peer labels and, in each
// app container (only those still lacking something, when onlyIncomplete),
// the env and the read-only seeds mount.
func withPeerFields(pod *corev1.Pod, m Membership, onlyIncomplete bool) (*corev1.Pod, []string) {
	// Copy on write: the output shares every field it does not touch with
	// the input and gets fresh copies of the ones it does, which keeps the
	// functions pure without a deep copy of the whole pod.
	out := &corev1.Pod{TypeMeta: pod.TypeMeta, ObjectMeta: pod.ObjectMeta, Spec: pod.Spec, Status: pod.Status}
	// The group label so the Service selects namespace-label members; the
	// peer label so it selects only injected pods.
	out.Labels = withKey(pod.Labels, contract.GroupLabel, m.Group, contract.PeerLabel, contract.PeerValue)
	out.Spec.Containers = slices.Clone(pod.Spec.Containers)
	env := appEnv(m)
	var warnings []string
	for i := range out.Spec.Containers {
		c := &out.Spec.Containers[i]
		if onlyIncomplete && containerComplete(c, env) {
			continue
		}
		// Fresh backing arrays with room for the additions, so an append
		// never writes into the input's array.
		c.Env = slices.Grow(slices.Clip(c.Env), len(env))
		c.VolumeMounts = slices.Grow(slices.Clip(c.VolumeMounts), 1)
		before := len(c.Env)
		for _, want := range env {
			warnings = appendEnvUnlessSet(c, want, warnings)
		}
		if len(c.EnvFrom) > 0 && len(c.Env) > before {
			warnings = append(warnings, envFromWarning(c, c.Env[before:]))
		}
		if !hasMount(c, contract.SeedsVolumeName) {
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: contract.SeedsVolumeName, MountPath: contract.SeedsMountPath, ReadOnly: true})
		}
	}
	return out, warnings
}

// isComplete reports whether an injected pod has everything withPeerFields
// adds.
func isComplete(pod *corev1.Pod, m Membership) bool {
	return pod.Labels[contract.GroupLabel] == m.Group && pod.Labels[contract.PeerLabel] == contract.PeerValue &&
		len(incompleteContainers(pod, m)) == 0
}

// incompleteContainers names the app containers of an injected pod that
// lack the env or the seeds mount.
func incompleteContainers(pod *corev1.Pod, m Membership) []string {
	env := appEnv(m)
	var names []string
	for i := range pod.Spec.Containers {
		if c := &pod.Spec.Containers[i]; !containerComplete(c, env) {
			names = append(names, c.Name)
		}
	}
	return names
}

// containerComplete: the seeds mount and every env name (the user's own
// value for a name counts: it is kept as set).
func containerComplete(c *corev1.Container, env []corev1.EnvVar) bool {
	if !hasMount(c, contract.SeedsVolumeName) {
		return false
	}
	for _, want := range env {
		if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == want.Name }) {
			return false
		}
	}
	return true
}

// podLevelResources reports whether the pod sets resources for the whole
// pod (spec.resources), which then also decide its QoS class.
func podLevelResources(pod *corev1.Pod) bool {
	r := pod.Spec.Resources
	return r != nil && (len(r.Requests) > 0 || len(r.Limits) > 0)
}

func isSidecar(c *corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

// leftOver is the pod's requests minus what runs beside the sidecar, never
// below zero, per resource: the app containers and the pod's own sidecars
// all along, and, when it runs first (init-first), each ordinary init
// container in turn. The API server sums the sidecars started before an
// init container with it; counting every sidecar of the pod there is a
// bound that can only leave the injected sidecar less.
func leftOver(requests corev1.ResourceList, pod *corev1.Pod, first bool) corev1.ResourceList {
	out := corev1.ResourceList{}
	for name, total := range requests {
		var sidecars, apps, initMax resource.Quantity
		for i := range pod.Spec.InitContainers {
			c := &pod.Spec.InitContainers[i]
			if q, ok := c.Resources.Requests[name]; ok && isSidecar(c) {
				sidecars.Add(q)
			} else if ok && first && q.Cmp(initMax) > 0 {
				initMax = q.DeepCopy()
			}
		}
		for i := range pod.Spec.Containers {
			if q, ok := pod.Spec.Containers[i].Resources.Requests[name]; ok {
				apps.Add(q)
			}
		}
		used := apps
		if initMax.Cmp(used) > 0 {
			used = initMax
		}
		used.Add(sidecars)
		left := total.DeepCopy()
		left.Sub(used)
		if left.Sign() < 0 {
			left = resource.Quantity{Format: total.Format}
		}
		out[name] = left
	}
	return out
}

// fitToPod cuts each request and limit to the pod's own, and a request to
// its limit.
func fitToPod(r, pod corev1.ResourceRequirements) corev1.ResourceRequirements {
	out := corev1.ResourceRequirements{Requests: r.Requests.DeepCopy(), Limits: r.Limits.DeepCopy()}
	cut := func(list, bound corev1.ResourceList) {
		for name, q := range list {
			if b, ok := bound[name]; ok && q.Cmp(b) > 0 {
				list[name] = b.DeepCopy()
			}
		}
	}
	cut(out.Limits, pod.Limits)
	cut(out.Requests, pod.Requests)
	cut(out.Requests, out.Limits)
	return out
}

// guaranteed reports whether the pod's QoS class is Guaranteed: every
// container, init containers included, has CPU and memory limits and
// requests equal to them (the API server has defaulted requests from
// limits before admission). Databases usually run so, and the static CPU
// manager requires it.
func guaranteed(pod *corev1.Pod) bool {
	if len(pod.Spec.Containers)+len(pod.Spec.InitContainers) == 0 {
		return false
	}
	for _, cs := range [2][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			if !guaranteedContainer(&cs[i]) {
				return false
			}
		}
	}
	return true
}

func guaranteedContainer(c *corev1.Container) bool {
	for _, name := range [2]corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		limit, ok := c.Resources.Limits[name]
		if !ok || limit.IsZero() {
			return false
		}
		if request, ok := c.Resources.Requests[name]; ok && request.Cmp(limit) != 0 {
			return false
		}
	}
	return true
}

// guaranteedResources makes the init container's requests equal its
// limits (or its limits equal its requests, when only those are set), so
// injecting it keeps a Guaranteed pod Guaranteed.
func guaranteedResources(r corev1.ResourceRequirements) corev1.ResourceRequirements {
	from := r.Limits
	if from.Cpu().IsZero() || from.Memory().IsZero() {
		from = r.Requests
	}
	return corev1.ResourceRequirements{Requests: from.DeepCopy(), Limits: from.DeepCopy()}
}

// TuningEnv validates the pod's tuning annotations with the contract's
// checks and returns them as seed-discovery's env vars, in contract order.
// Absent annotations are left to seed-discovery's defaults.
func TuningEnv(annotations map[string]string) ([]corev1.EnvVar, error) {
	var out []corev1.EnvVar
	for _, t := range contract.Tunings {
		v, ok := annotations[t.Annotation]
		if !ok {
			continue
		}
		if !t.Valid(v) {
			return nil, invalidTuning(t.Annotation, v, t.Rule)
		}
		out = append(out, corev1.EnvVar{Name: t.Env, Value: v})
	}
	return out, nil
}

// withKey returns a copy of in with the given key/value pairs set.
func withKey(in map[string]string, kv ...string) map[string]string {
	out := make(map[string]string, len(in)+len(kv)/2)
	for key, val := range in {
		out[key] = val
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

func initContainer(m Membership, tuning []corev1.EnvVar, cfg Config) corev1.Container {
	env := make([]corev1.EnvVar, 0, 6+len(tuning))
	env = append(env,
		corev1.EnvVar{Name: contract.EnvService, Value: m.Service},
		corev1.EnvVar{Name: contract.EnvPodName, ValueFrom: fieldRef("metadata.name")},
		corev1.EnvVar{Name: contract.EnvPodNamespace, ValueFrom: fieldRef("metadata.namespace")},
		corev1.EnvVar{Name: contract.EnvPodIP, ValueFrom: fieldRef("status.podIP")},
		corev1.EnvVar{Name: contract.EnvPodIPs, ValueFrom: fieldRef("status.podIPs")},
	)
	if cfg.ClusterDomain != "" {
		env = append(env, corev1.EnvVar{Name: contract.EnvClusterDomain, Value: cfg.ClusterDomain})
	}
	env = append(env, tuning...)
	ic := corev1.Container{
		Name:            contract.InitContainerName,
		Image:           cfg.SeedDiscoveryImage,
		Command:         append([]string(nil), cfg.SeedDiscoveryCommand...),
		Args:            []string{"--output-dir=" + contract.SeedsMountPath},
		ImagePullPolicy: cfg.ImagePullPolicy,
		Env:             env,
		VolumeMounts:    []corev1.VolumeMount{{Name: contract.SeedsVolumeName, MountPath: contract.SeedsMountPath}},
		// The reason for a failed discovery is what the user needs in
		// `kubectl describe pod`.
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		// Pod Security "restricted" compliant, so injection never makes a
		// compliant pod non-compliant.
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot:             ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
	if cfg.FixedIDs {
		ic.SecurityContext.RunAsUser, ic.SecurityContext.RunAsGroup = ptr.To[int64](65532), ptr.To[int64](65532)
	}
	cfg.Resources.DeepCopyInto(&ic.Resources)
	if envValue(tuning, contract.Refresh.Env) != "" {
		// The refreshing sidecar: a native sidecar keeps running beside
		// the app and never keeps a Job's pod from completing. The kubelet
		// starts the next container only once the startup probe passes,
		// i.e. after the first decision, as with a plain init container.
		ic.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
		ic.StartupProbe = decidedProbe(cfg, envValue(tuning, contract.Timeout.Env))
	}
	return ic
}

// decidedProbe passes once seed-discovery wrote the seeds. It probes every
// second and gives up only after seed-discovery's own deadline (plus a
// margin), so it never kills a sidecar that is still deciding: a sidecar
// that cannot decide exits with its reason, as the init container does.
func decidedProbe(cfg Config, timeout string) *corev1.Probe {
	d := contract.DefaultTimeout
	if timeout != "" {
		d, _ = time.ParseDuration(timeout) // checked by TuningEnv
	}
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{
			Command: append(slices.Clone(cfg.SeedDiscoveryCommand), "decided", "--output-dir="+contract.SeedsMountPath),
		}},
		PeriodSeconds:    1,
		TimeoutSeconds:   1,
		SuccessThreshold: 1,
		FailureThreshold: int32(d/time.Second) + 30,
	}
}

func envValue(env []corev1.EnvVar, name string) string {
	for _, e := range env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

func fieldRef(path string) *corev1.EnvVarSource {
	return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path}}
}

// appendEnvUnlessSet adds want to c unless the user already set that name;
// a user value that differs is kept and reported as a warning.
func appendEnvUnlessSet(c *corev1.Container, want corev1.EnvVar, warnings []string) []string {
	for _, have := range c.Env {
		if have.Name != want.Name {
			continue
		}
		if !sameEnv(have, want) {
			warnings = append(warnings, fmt.Sprintf("peergroup: container %s sets %s to %s; kept as set, peergroup would have set %s",
				quote(c.Name), want.Name, describeEnv(have), describeEnv(want)))
		}
		return warnings
	}
	c.Env = append(c.Env, want)
	return warnings
}

// envFromWarning says that the env vars peergroup added win over the same
// names from the container's envFrom sources, which the webhook cannot
// read (they may not exist yet, and reading them would need access to
// every ConfigMap and Secret).
func envFromWarning(c *corev1.Container, added []corev1.EnvVar) string {
	names := make([]string, len(added))
	for i, e := range added {
		names[i] = e.Name
	}
	return fmt.Sprintf("peergroup: container %s also takes env from envFrom; the variables peergroup adds (%s) take precedence over the same names there",
		quote(c.Name), strings.Join(names, ", "))
}

func sameEnv(a, b corev1.EnvVar) bool {
	if a.ValueFrom == nil || b.ValueFrom == nil {
		return a.ValueFrom == nil && b.ValueFrom == nil && a.Value == b.Value
	}
	fa, fb := a.ValueFrom.FieldRef, b.ValueFrom.FieldRef
	return fa != nil && fb != nil && fa.FieldPath == fb.FieldPath
}

func describeEnv(e corev1.EnvVar) string {
	if e.ValueFrom == nil {
		return quote(e.Value)
	}
	if e.ValueFrom.FieldRef != nil {
		return "fieldRef " + Clip(e.ValueFrom.FieldRef.FieldPath)
	}
	return "a valueFrom source"
}

func hasMount(c *corev1.Container, volume string) bool {
	return slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == volume })
}

func hasVolume(pod *corev1.Pod, name string) bool {
	return slices.ContainsFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == name })
}

// checkTuningFitsPod refuses tuning values that are valid on their own but
// cannot work for this pod, so the user reads why at `kubectl apply`
// instead of in an init container that waits until its deadline.
func checkTuningFitsPod(pod *corev1.Pod, m Membership) error {
	if pod.Annotations[contract.SeedAddressValue.Annotation] == string(contract.AddressHostname) &&
		(pod.Spec.Hostname == "" || pod.Spec.Subdomain != m.Service) {
		return invalidTuning(contract.SeedAddressValue.Annotation, string(contract.AddressHostname), fmt.Sprintf("ip for this pod: hostname needs a stable DNS name <pod>.%s.<namespace>.svc, which only a pod with spec.hostname and spec.subdomain %s has "+
			"(a StatefulSet's pod with serviceName %s; this pod has hostname %s and subdomain %s)",
			m.Service, quote(m.Service), quote(m.Service), quote(pod.Spec.Hostname), quote(pod.Spec.Subdomain)))
	}
	if pod.Annotations[contract.SeedAddressValue.Annotation] == string(contract.AddressHostname) {
		if c := metav1.GetControllerOfNoCopy(pod); c != nil && c.Kind != "StatefulSet" && !indexedJobPod(pod, c) {
			// Every pod of a ReplicaSet, a non-indexed Job or a DaemonSet
			// has its template's hostname: one name for all, which names
			// no pod.
			return invalidTuning(contract.SeedAddressValue.Annotation, string(contract.AddressHostname), "ip for a pod created by a "+Clip(c.Kind)+": its pods all share the template's spec.hostname, so their DNS names would be one; hostname needs a StatefulSet's pods, each named after itself")
		}
	}
	if name, ok := pod.Annotations[contract.PortName.Annotation]; ok && !hasServicePort(pod, name) {
		return invalidTuning(contract.PortName.Annotation, name, "the name of a TCP port of one of the pod's containers, the first with its number (seed-discovery queries the SRV records _"+Clip(name)+"._tcp of the Service, which exist only for a TCP port the Service names so)")
	}
	if pod.Annotations[contract.FoundingValue.Annotation] == string(contract.FoundOrdinal0) {
		if c := metav1.GetControllerOfNoCopy(pod); c != nil && c.Kind != "StatefulSet" {
			return invalidTuning(contract.FoundingValue.Annotation, string(contract.FoundOrdinal0), "lowest or never for a pod created by a "+Clip(c.Kind)+": ordinal0 needs StatefulSet pods, whose hostnames end in their ordinal")
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
			Clip(cmp.Or(string(pod.Spec.DNSPolicy), "ClusterFirst")), contract.InjectLabel)
	}
	return nil
}

// checkOS refuses pods that declare another OS than Linux, by spec.os, by
// the kubernetes.io/os node selector, or by a required node affinity none
// of whose terms admits Linux nodes.
func checkOS(pod *corev1.Pod) error {
	const fix = "the seed-discovery init container runs on Linux only: run the group's pods on Linux nodes, or opt this pod out with the label " + contract.InjectLabel + "=false"
	if pod.Spec.OS != nil && pod.Spec.OS.Name != corev1.Linux {
		return deny(ReasonUnsupportedOS, "the pod sets spec.os.name %s; %s", quote(string(pod.Spec.OS.Name)), fix)
	}
	for _, key := range osLabels {
		if os, ok := pod.Spec.NodeSelector[key]; ok && os != string(corev1.Linux) {
			return deny(ReasonUnsupportedOS, "the pod selects nodes with %s=%s; %s", key, Clip(os), fix)
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
				return deny(ReasonCollision, "container %s already mounts volume %s at %s, where peergroup mounts the seeds volume (%s): move that mount", quote(c.Name), quote(m.Name), Clip(m.MountPath), contract.SeedsMountPath)
			case m.Name == contract.SeedsVolumeName && (m.SubPath != "" || m.SubPathExpr != ""):
				return deny(ReasonCollision, "container %s mounts only a subPath of the %q volume; the app must see the whole seeds directory at %s: remove the subPath, or rename your volume", quote(c.Name), contract.SeedsVolumeName, contract.SeedsMountPath)
			case m.Name == contract.SeedsVolumeName && p != contract.SeedsMountPath:
				return deny(ReasonCollision, "container %s mounts a volume named %q at %s; peergroup needs that name for the seeds volume, which it mounts read-only at %s (where %s points): rename your volume", quote(c.Name), contract.SeedsVolumeName, quote(m.MountPath), contract.SeedsMountPath, contract.EnvSeedsFile)
			}
		}
	}
	return nil
}

// runsAsRoot reports whether the pod pins user 0 for its containers.
func runsAsRoot(pod *corev1.Pod) bool {
	sc := pod.Spec.SecurityContext
	return sc != nil && sc.RunAsUser != nil && *sc.RunAsUser == 0
}

// withPullSecrets appends the names not already there, keeping the pod's
// own first (a copy when anything is added).
func withPullSecrets(have []corev1.LocalObjectReference, names []string) []corev1.LocalObjectReference {
	out := slices.Clip(have)
	for _, n := range names {
		if !slices.ContainsFunc(out, func(r corev1.LocalObjectReference) bool { return r.Name == n }) {
			out = append(out, corev1.LocalObjectReference{Name: n})
		}
	}
	return out
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
					"so seed-discovery may reach no peer: set the annotation %s: \"true\" to run seed-discovery first", quote(c.Name), contract.InitFirstAnnotation))
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
			"set %s to the port the peers listen on", Clip(c.Kind), contract.PeerPort.Annotation, contract.PeerPort.Annotation))
	}
	return warnings
}
