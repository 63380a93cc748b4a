package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/peergroup/peergroup/test/framework"
)

// runReal is the walkthrough on a real node: a local cluster whose one
// node is a kubelet with containerd and runc, the chart installed by Helm
// with its defaults, the README's "Use it" commands as written, and at the
// end the moment `nodetool status` shows in the Cassandra walkthrough: the
// real servers, each seeing the others, in one cluster.
func runReal(ctx context.Context) error {
	started := time.Now()
	work := filepath.Join(framework.RepoRoot(), ".cache", "demo")
	_ = os.RemoveAll(work)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}

	step("Start a local cluster whose node is real: kubelet, containerd, runc, a CNI bridge with no uplink")
	lc, err := framework.StartLocalCluster(ctx, framework.LocalClusterOptions{LogDir: filepath.Join(work, "logs"), Progress: os.Stdout, RealNodeOnly: true})
	if err != nil {
		return err
	}
	defer lc.Stop()

	step("Build the images without an engine and serve them on 127.0.0.1 (ghcr.io and docker.io resolve there)")
	images, err := framework.PushNodeImages(ctx, lc.Node)
	if err != nil {
		return err
	}
	fmt.Printf("    peergroup: %s\n    nats:      %s\n", images.Peergroup, images.NATS)
	if name := os.Getenv("APP"); name != "" && name != "nats" {
		return runRealApp(ctx, lc, work, name, started)
	}

	cmds, err := framework.UseItOnRealNode(work)
	if err != nil {
		return err
	}
	step("The README's \"Use it\", as written (helm install gets -f no-kube-proxy.yaml: no kube-proxy here)")
	if err := runCommands(ctx, lc, cmds, "nats", 2*time.Minute); err != nil {
		return err
	}

	step("Wait until the NATS servers form one cluster")
	pods, took, err := framework.WaitOneNATSCluster(ctx, lc.Cluster, "nats", map[string]string{"app": "nats"}, 3, time.Minute)
	if err != nil {
		return err
	}
	// Where `make build` puts it; the command runs in the repository root.
	if _, err := framework.BuildBinary(ctx, "peergroup", filepath.Join(framework.RepoRoot(), "bin")); err != nil {
		return err
	}
	step("The group as its members see it (seed-discovery's logs, through the API server)")
	if err := runCommands(ctx, lc, []string{"bin/peergroup status nats -n nats"}, "nats", 0); err != nil {
		return err
	}
	views := framework.NATSViews(ctx, pods)
	step("Membership, as each real server reports it on its monitoring port (/routez)")
	for i, p := range pods {
		fmt.Printf("    %s (%s): routes to %d servers\n", p.Name, p.Status.PodIP, len(views[i].Peers))
	}
	fmt.Printf("\none cluster of %d: every server sees the other %d (%s after the last one started; demo took %s)\n",
		len(pods), len(pods)-1, took.Round(100*time.Millisecond), time.Since(started).Round(time.Second))
	return nil
}

// runCommands runs the walkthrough's commands as a user types them, each
// command's output indented under it. After `kubectl apply` it waits, as a
// user would before scaling, until the founder (the one pod of app in the
// namespace of that name) runs.
func runCommands(ctx context.Context, lc *framework.LocalCluster, cmds []string, app string, founderWait time.Duration) error {
	for _, c := range cmds {
		fmt.Printf("\n$ %s\n", c)
		out := &indent{w: os.Stdout}
		err := lc.Shell(ctx, out, c)
		out.Flush()
		if err != nil {
			return err
		}
		if strings.HasPrefix(c, "kubectl apply ") {
			founder, err := framework.RunningReady(ctx, lc.Cluster, app, map[string]string{"app": app}, 1, founderWait)
			if err != nil {
				return err
			}
			fmt.Printf("    (%s is running: the founder)\n", founder[0].Name)
		}
	}
	return nil
}

// indent writes what a command prints indented under it, a whole line at
// a time: a command may write a line in pieces (kubectl's table writes
// column by column).
type indent struct {
	w       *os.File
	pending []byte
}

func (i *indent) Write(p []byte) (int, error) {
	i.pending = append(i.pending, p...)
	for {
		line, rest, ok := bytes.Cut(i.pending, []byte("\n"))
		if !ok {
			break
		}
		fmt.Fprintln(i.w, "    "+string(line))
		i.pending = rest
	}
	return len(p), nil
}

// Flush writes what is left without a newline.
func (i *indent) Flush() {
	if len(i.pending) > 0 {
		fmt.Fprintln(i.w, "    "+string(i.pending))
		i.pending = nil
	}
}

// runRealApp is the same walkthrough with one of the applications taken
// from Debian's packages (make demo APP=redis|rabbitmq|jgroups|serf): its
// example manifest as written, scaled 1 -> 3, ending with that server's
// own membership report.
func runRealApp(ctx context.Context, lc *framework.LocalCluster, work, name string, started time.Time) error {
	app, ok := framework.DebianApps[name]
	if !ok {
		return fmt.Errorf("APP=%s: want nats, redis, rabbitmq, jgroups or serf", name)
	}
	step("Build the %s image from Debian's packages (%s) and serve it as %s", name, strings.Join(app.Packages, ", "), app.Image)
	say := func(f string, a ...any) { fmt.Printf("    "+f+"\n", a...) }
	root, err := framework.PushDebianApp(ctx, lc.Node, filepath.Join(framework.RepoRoot(), ".cache", "debian"), app, say)
	if err != nil {
		return err
	}
	readme, err := framework.UseItOnRealNode(work)
	if err != nil {
		return err
	}
	kind, err := framework.ManifestKind(app.Manifest)
	if err != nil {
		return err
	}
	var install string
	for _, c := range readme {
		if strings.HasPrefix(c, "helm install ") {
			install = c
		}
	}
	cmds := []string{install,
		"kubectl create namespace " + name,
		"kubectl apply -n " + name + " -f docs/examples/" + app.Manifest,
		fmt.Sprintf("kubectl scale %s %s -n %s --replicas=3", strings.ToLower(kind), name, name),
		"kubectl get svc " + name + " -n " + name,
	}
	step("The README's \"Use it\" with docs/examples/%s", app.Manifest)
	if err := runCommands(ctx, lc, cmds, name, 3*time.Minute); err != nil {
		return err
	}
	step("Wait until the %s servers form one cluster", name)
	env := framework.AppEnv{Root: root, Cluster: lc.Cluster}
	views := func(ctx context.Context, pods []corev1.Pod) []framework.ServerView { return app.Views(ctx, env, pods) }
	pods, took, err := framework.WaitOneCluster(ctx, lc.Cluster, name, map[string]string{"app": name}, 3, 2*time.Minute, views)
	if err != nil {
		return err
	}
	step("Membership, as each real server reports it")
	for _, p := range pods {
		role, seeds := "?", "?"
		if log, err := framework.ContainerLog(ctx, lc.Cluster, p.Namespace, p.Name, "seed-discovery"); err == nil {
			if r, s, ok := framework.LoggedDecision(log); ok {
				role, seeds = r, s
			}
		}
		fmt.Printf("\n    %s  %s  role %s, seeds %s\n", p.Name, p.Status.PodIP, role, seeds)
		for _, line := range strings.Split(app.Report(ctx, env, &p), "\n") {
			fmt.Printf("      | %s\n", line)
		}
	}
	fmt.Printf("\none %s cluster of %d: every server reports the other %d (%s after the last one started; demo took %s)\n",
		name, len(pods), len(pods)-1, took.Round(100*time.Millisecond), time.Since(started).Round(time.Second))
	return nil
}
