package framework

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// ControlPlaneVersion is the Kubernetes version hack/controlplane builds.
const ControlPlaneVersion = "v1.37.2"

// CertManagerModule holds cert-manager's CRDs as plain YAML (deploy/crds).
const CertManagerModule = "github.com/cert-manager/cert-manager@v1.21.2"

// Cluster is a real kube-apiserver + etcd on loopback.
type Cluster struct {
	Env    *envtest.Environment
	Config *rest.Config
	Client client.Client
	Scheme *runtime.Scheme
	// restarted are kube-apiserver processes RestartAPIServer started.
	restarted []*component
}

// AssetsDir returns the directory with kube-apiserver and etcd: the
// KUBEBUILDER_ASSETS variable, else hack/controlplane's cache.
func AssetsDir() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	dir := filepath.Join(RepoRoot(), ".cache", "controlplane", ControlPlaneVersion, "bin")
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			return "", fmt.Errorf("control plane binaries missing (%w): run `make controlplane` (hack/controlplane/build.sh) or set KUBEBUILDER_ASSETS", err)
		}
	}
	return dir, nil
}

// CertManagerCRDDir returns the deploy/crds folder of the pinned
// cert-manager module, downloaded through the Go module proxy if needed.
func CertManagerCRDDir() (string, error) {
	dir, err := moduleDir(CertManagerModule)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "deploy", "crds"), nil
}

// moduleDir downloads a module through the Go module proxy (or finds it in
// the module cache) and returns its directory.
func moduleDir(module string) (string, error) {
	out, err := exec.Command("go", "mod", "download", "-json", module).Output()
	if err != nil {
		return "", fmt.Errorf("download %s: %w", module, err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return "", fmt.Errorf("read module dir of %s: %v", module, err)
	}
	return mod.Dir, nil
}

// StartCluster starts kube-apiserver and etcd, with cert-manager's CRDs
// installed so the chart's certManager objects can be applied.
func StartCluster() (*Cluster, error) { return StartClusterWith(nil) }

// StartClusterWith is StartCluster with a hook to change the environment
// (e.g. API server flags) before it starts.
func StartClusterWith(customize func(*envtest.Environment)) (*Cluster, error) {
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	crds, err := CertManagerCRDDir()
	if err != nil {
		return nil, err
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{crds},
		ErrorIfCRDPathMissing: true,
		Scheme:                scheme,
	}
	if customize != nil {
		customize(env)
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("start kube-apiserver and etcd from %s: %w", assets, err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("create client: %w", err)
	}
	return &Cluster{Env: env, Config: cfg, Client: c, Scheme: scheme}, nil
}

// Stop stops the control plane, a restarted kube-apiserver first.
func (c *Cluster) Stop() error {
	stopComponents(c.restarted, 30*time.Second)
	return c.Env.Stop()
}

// WriteKubeconfig writes an admin kubeconfig for the cluster to path, for
// processes (the webhook binary, kubectl) outside the test.
func (c *Cluster) WriteKubeconfig(path string) error {
	user, err := c.Env.ControlPlane.AddUser(envtest.User{Name: "peergroup-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("add admin user: %w", err)
	}
	data, err := user.KubeConfig()
	if err != nil {
		return fmt.Errorf("build kubeconfig: %w", err)
	}
	return os.WriteFile(path, data, 0o600)
}

// CreateNamespace creates a namespace with labels.
func (c *Cluster) CreateNamespace(ctx context.Context, name string, labels map[string]string) (*corev1.Namespace, error) {
	ns := &corev1.Namespace{}
	ns.Name = name
	ns.Labels = labels
	if err := c.Client.Create(ctx, ns); err != nil {
		return nil, fmt.Errorf("create namespace %s: %w", name, err)
	}
	return ns, nil
}

// WriteKubeconfigAs writes a kubeconfig that impersonates a ServiceAccount,
// for a process (the webhook binary) that must run with exactly its RBAC.
func (c *Cluster) WriteKubeconfigAs(adminKubeconfig, path, namespace, serviceAccount string) error {
	cfg, err := clientcmd.LoadFromFile(adminKubeconfig)
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	for _, ai := range cfg.AuthInfos {
		ai.Impersonate = "system:serviceaccount:" + namespace + ":" + serviceAccount
		ai.ImpersonateGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"}
	}
	return clientcmd.WriteToFile(*cfg, path)
}
