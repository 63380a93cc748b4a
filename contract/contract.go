// Package contract is the one place where peergroup's names, paths and
// ranges are written: the labels and annotations users set, the env vars the
// webhook injects and seed-discovery reads, the shared volume and its files,
// and the range of every tuning value with the function that checks it.
// The webhook, the CLI and seed-discovery all import it, so the two sides of
// the pod can never disagree on a name or on which values are valid
// (TestBothSidesAcceptTheSameValues in discovery proves the latter).
//
// The names are fixed: users, charts and tests depend on them
// (docs/design.md, "The contract").
package contract

// Domain prefixes every label and annotation peergroup reads or writes.
const Domain = "peergroup.dev"

// Labels and annotations on pods and namespaces.
const (
	// GroupLabel on a pod or a namespace names the peer group.
	GroupLabel = Domain + "/group"
	// InjectLabel set to "false" opts a pod out, even in a labelled namespace.
	InjectLabel = Domain + "/inject"
	// ServiceAnnotation overrides the headless Service name (default: the group).
	ServiceAnnotation = Domain + "/service"
	// InjectedAnnotation is written by the webhook with its version.
	InjectedAnnotation = Domain + "/injected"
	// PeerLabel, set to PeerValue by the webhook on every pod it injects,
	// is half of the selector of the Services peergroup creates: a pod
	// that carries the group label but was not injected (opted out, or
	// admitted while the webhook was away) is never a peer, so it never
	// appears in the group's DNS without running seed-discovery.
	PeerLabel = Domain + "/peer"
	PeerValue = "true"
	// PeerTerminatingValue replaces PeerValue on a peer that has started
	// terminating (set by the webhook's controller): the group's Service no
	// longer selects it, so DNS stops offering it as a peer while it
	// finishes its grace period.
	PeerTerminatingValue = "terminating"

	// InitFirstAnnotation set to "true" places seed-discovery before the
	// pod's other init containers, so a service mesh's init container
	// (which redirects the pod's traffic to a proxy not running yet)
	// cannot make every peer look unreachable to it. It is read by the
	// webhook only.
	InitFirstAnnotation = Domain + "/init-first"

	// IPFamilyPolicyAnnotation sets spec.ipFamilyPolicy (SingleStack,
	// PreferDualStack, RequireDualStack) of the Service peergroup creates
	// for the group; an existing Service is never changed. Read by the
	// webhook only.
	IPFamilyPolicyAnnotation = Domain + "/ip-family-policy"

	// ManagedByLabel and ManagedByValue mark the Services peergroup creates.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "peergroup"
)

// The injected pieces of a member pod.
const (
	// InitContainerName is the injected init container.
	InitContainerName = "seed-discovery"
	// SeedsVolumeName is the emptyDir shared by seed-discovery and the app.
	SeedsVolumeName = "peergroup-seeds"
	// SeedsMountPath is where the volume is mounted in every container, and
	// seed-discovery's default output directory.
	SeedsMountPath = "/var/run/peergroup"
	// SeedsFile is the file seed-discovery writes the seeds to.
	SeedsFile = SeedsMountPath + "/" + SeedsFileName
)

// Files seed-discovery writes into SeedsMountPath (README, "Seed files";
// what each one holds is written in discovery.Write). The seed files are
// the founding decision and are written once; the peer files and
// discovery.json are rewritten by the refreshing sidecar.
const (
	SeedsFileName     = "seeds"
	PeersFileName     = "peers"
	DiscoveryFileName = "discovery.json"
	// One seed host per line; host:port per line; JGroups' host[port],….
	SeedHostsFileName     = "seed-hosts"
	SeedHostPortsFileName = "seed-hostports"
	SeedJGroupsFileName   = "seed-jgroups"
	// One peer host per line; host:port per line.
	PeerHostsFileName     = "peer-hosts"
	PeerHostPortsFileName = "peer-hostports"
)

// Env vars in app containers.
const (
	// EnvSeedsFile tells the app where seed-discovery writes the seeds.
	EnvSeedsFile = "PEERGROUP_SEEDS_FILE"
	// EnvPodNamespace is what the classic Cassandra KubernetesSeedProvider
	// reads; seed-discovery reads it too.
	EnvPodNamespace = "POD_NAMESPACE"
	// ServiceEnvSuffix ends the env var naming the Service in app
	// containers (ServiceEnvName).
	ServiceEnvSuffix = "_SERVICE"
)

// Env vars of the seed-discovery init container, besides the tuning values.
const (
	EnvService       = "PEERGROUP_SERVICE"
	EnvPodName       = "POD_NAME"
	EnvPodIP         = "POD_IP"
	EnvPodIPs        = "POD_IPS"
	EnvClusterDomain = "PEERGROUP_CLUSTER_DOMAIN"
)
