// Package webhook implements peergroup's pod admission: it resolves a pod's
// peer group, mutates the pod (pure function), ensures the group's headless
// Service, and answers with a JSON patch.
package webhook

// The user contract of DESIGN.md section 1. Tests, docs and users depend on
// these exact strings.
const (
	Domain = "peergroup.dev"

	// GroupLabel on a pod or a namespace names the peer group.
	GroupLabel = Domain + "/group"
	// InjectLabel set to "false" opts a pod out, even in a labelled namespace.
	InjectLabel = Domain + "/inject"
	// ServiceAnnotation overrides the headless Service name (default: the group).
	ServiceAnnotation = Domain + "/service"
	// InjectedAnnotation is written by the webhook with its version.
	InjectedAnnotation = Domain + "/injected"

	// ManagedByLabel marks the Services peergroup creates.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "peergroup"

	// InitContainerName is the injected init container; its presence marks a
	// pod as already injected (idempotency under reinvocation).
	InitContainerName = "seed-discovery"
	// SeedsVolumeName is the emptyDir shared by seed-discovery and the app.
	SeedsVolumeName = "peergroup-seeds"
	// SeedsMountPath is where the volume is mounted in every container.
	SeedsMountPath = "/var/run/peergroup"
	// SeedsFileEnv tells the app where seed-discovery writes the seeds.
	SeedsFileEnv = "PEERGROUP_SEEDS_FILE"
	// SeedsFile is the path written by seed-discovery.
	SeedsFile = SeedsMountPath + "/seeds"
	// PodNamespaceEnv is what the classic Cassandra KubernetesSeedProvider reads.
	PodNamespaceEnv = "POD_NAMESPACE"
)
