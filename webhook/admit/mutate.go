package admit

import (
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/internal/clip"
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
// (docs/applications.md, "What a member pod gets"). It performs no I/O, so the
// webhook, the CLI and the tests share one implementation. The warnings are
// for user values left in place that differ from what would have been
// injected.
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
				clip.Quote(c.Name), want.Name, describeEnv(have), describeEnv(want)))
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
		clip.Quote(c.Name), strings.Join(names, ", "))
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
		return clip.Quote(e.Value)
	}
	if e.ValueFrom.FieldRef != nil {
		return "fieldRef " + clip.String(e.ValueFrom.FieldRef.FieldPath)
	}
	return "a valueFrom source"
}

func hasMount(c *corev1.Container, volume string) bool {
	return slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == volume })
}

func hasVolume(pod *corev1.Pod, name string) bool {
	return slices.ContainsFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == name })
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
