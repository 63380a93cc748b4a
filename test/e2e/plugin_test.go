package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/peergroup/peergroup/test/framework"
)

// TestKubectlPlugin installs the CLI as kubectl-peergroup on PATH and runs
// it through the real kubectl, with kubectl's flags: --kubeconfig and
// --context pick the cluster (the kubeconfig's current context is a dead
// one), -n the namespace, -A every namespace.
func TestKubectlPlugin(t *testing.T) {
	ctx := testContext(t)
	bin := t.TempDir()
	plugin, err := framework.BuildBinary(ctx, "peergroup", bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(plugin, filepath.Join(bin, "kubectl-peergroup")); err != nil {
		t.Fatal(err)
	}
	assets, err := framework.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	// Two contexts: the current one names a closed loopback port.
	admin := filepath.Join(t.TempDir(), "admin.kubeconfig")
	if err := cluster.WriteKubeconfig(admin); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.LoadFromFile(admin)
	if err != nil {
		t.Fatal(err)
	}
	live := cfg.CurrentContext
	cfg.Clusters["dead"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:1", InsecureSkipTLSVerify: true}
	cfg.Contexts["dead"] = &clientcmdapi.Context{Cluster: "dead", AuthInfo: cfg.Contexts[live].AuthInfo}
	cfg.CurrentContext = "dead"
	kubeconfig := filepath.Join(t.TempDir(), "two-contexts.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, kubeconfig); err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(t, nil)
	kubectl := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, filepath.Join(assets, "kubectl"), args...)
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "HOME="+t.TempDir())
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}

	out, err := kubectl("plugin", "list")
	if err != nil || !strings.Contains(out, "kubectl-peergroup") {
		t.Fatalf("kubectl plugin list: %v\n%s", err, out)
	}
	out, err = kubectl("peergroup", "--help")
	if err != nil || !strings.Contains(out, "usage: kubectl peergroup <command>") {
		t.Errorf("kubectl peergroup --help: %v\n%s", err, out)
	}
	out, err = kubectl("peergroup", "status", "nats", "-n", ns, "--kubeconfig", kubeconfig, "--context", live)
	if err != nil || !strings.Contains(out, "group nats in namespace "+ns+": 0 members") {
		t.Errorf("kubectl peergroup status with --context: %v\n%s", err, out)
	}
	out, err = kubectl("peergroup", "audit", "-A", "--kubeconfig", kubeconfig, "--context="+live)
	if err != nil && !strings.Contains(out, "without the injection") {
		t.Errorf("kubectl peergroup audit -A: %v\n%s", err, out)
	}
	// The current context is the dead one: without --context the plugin
	// uses it, as kubectl would.
	out, err = kubectl("peergroup", "status", "nats", "-n", ns, "--kubeconfig", kubeconfig)
	if err == nil || !strings.Contains(out, "127.0.0.1:1") {
		t.Errorf("kubectl peergroup status on the current (dead) context: %v\n%s", err, out)
	}
}
