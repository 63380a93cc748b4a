package framework

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/peergroup/peergroup/contract"
	corev1 "k8s.io/api/core/v1"
)

// BuildBinary builds ./cmd/<name> into dir and returns its path.
func BuildBinary(ctx context.Context, name, dir string) (string, error) {
	out := filepath.Join(dir, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/"+name)
	cmd.Dir = RepoRoot()
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", name, err, b)
	}
	return out, nil
}

// SeedDiscoveryRun is one local run of a pod's seed-discovery init container.
type SeedDiscoveryRun struct {
	Pod      string
	Decision contract.Discovery
	Seeds    string
	Log      string
	Err      error
}

// RunSeedDiscovery stands in for the kubelet running the pod's injected
// init container: the binary runs locally with the container's args and the
// env the webhook injected, downward-API fields resolved from the pod as
// stored by the API server (its IP from status), queries CoreDNS on
// loopback, and writes into outDir. The cluster domain is passed the way a
// pod's resolv.conf would give it. No peer port is probed here: pod IPs are
// simulated and never dialled.
func RunSeedDiscovery(ctx context.Context, binary string, pod *corev1.Pod, dnsAddr, outDir string) SeedDiscoveryRun {
	run := SeedDiscoveryRun{Pod: pod.Name}
	var ic *corev1.Container
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == "seed-discovery" {
			ic = &pod.Spec.InitContainers[i]
		}
	}
	if ic == nil {
		run.Err = fmt.Errorf("pod %s has no seed-discovery init container", pod.Name)
		return run
	}
	env := []string{"PATH=" + os.Getenv("PATH")}
	for _, e := range ic.Env {
		v := e.Value
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			v = fieldValue(pod, e.ValueFrom.FieldRef.FieldPath)
		}
		if e.Name == "PEERGROUP_PEER_PORT" {
			continue // never dial simulated pod IPs
		}
		env = append(env, e.Name+"="+v)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		run.Err = err
		return run
	}
	args := append(append([]string{}, ic.Args...),
		"--output-dir="+outDir, "--dns-server="+dnsAddr, "--cluster-domain=cluster.local",
		"--termination-log="+filepath.Join(outDir, "termination-log"))
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	run.Log = string(out)
	if err != nil {
		run.Err = fmt.Errorf("seed-discovery for %s: %w\n%s", pod.Name, err, out)
		return run
	}
	seeds, err := os.ReadFile(filepath.Join(outDir, "seeds"))
	if err != nil {
		run.Err = err
		return run
	}
	run.Seeds = strings.TrimSpace(string(seeds))
	doc, err := os.ReadFile(filepath.Join(outDir, "discovery.json"))
	if err == nil {
		err = json.Unmarshal(doc, &run.Decision)
	}
	run.Err = err
	return run
}

func fieldValue(pod *corev1.Pod, path string) string {
	switch path {
	case "metadata.name":
		return pod.Name
	case "metadata.namespace":
		return pod.Namespace
	case "status.podIP":
		return pod.Status.PodIP
	case "status.podIPs":
		ips := make([]string, len(pod.Status.PodIPs))
		for i, ip := range pod.Status.PodIPs {
			ips[i] = ip.IP
		}
		return strings.Join(ips, ",")
	}
	return ""
}
