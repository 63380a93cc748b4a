package framework

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/peergroup/peergroup/internal/ociimage"
)

// DebianApp is a real server taken from Debian's packages, run in a peer
// group by its example manifest, as written.
type DebianApp struct {
	// Name is the app's name: the example's group, Service and app label.
	Name string
	// Manifest is the example under docs/examples the tests apply.
	Manifest string
	// Container is the server's container in the manifest.
	Container string
	// SeedFile is the seed file its wrapper reads.
	SeedFile string
	// Packages are the Debian packages whose closure makes the image.
	Packages []string
	// Image is the image the manifest names, pushed under that name to
	// the node's registry (MirroredRegistries).
	Image string
	// Commands put the server's commands where the image the manifest
	// names has them (on PATH), when Debian keeps them elsewhere: each a
	// script that runs the command at its Debian path (a symbolic link
	// would not do: the commands find their files beside $0).
	Commands map[string]string
	// Views asks every pod's server for the cluster it is in.
	Views func(ctx context.Context, env AppEnv, pods []corev1.Pod) []ServerView
	// Report is the server's own membership report, for a failure's
	// reader and the demo's last step.
	Report func(ctx context.Context, env AppEnv, pod *corev1.Pod) string
}

// AppEnv is what the host needs to ask the servers: the extracted packages
// (their client tools) and the cluster (the servers' logs).
type AppEnv struct {
	Root    DebianRoot
	Cluster *Cluster
}

// DebianApps are the applications the real-node suite and `make demo
// APP=...` run, one per seed format.
var DebianApps = map[string]DebianApp{
	"redis": {
		Name: "redis", Manifest: "redis-cluster.yaml", Container: "redis", SeedFile: "seed-hostports",
		Packages: []string{"redis-server"}, Image: "docker.io/library/redis:7.0.15",
		Views: func(ctx context.Context, _ AppEnv, pods []corev1.Pod) []ServerView {
			return eachPod(ctx, pods, redisView)
		},
		Report: func(ctx context.Context, _ AppEnv, pod *corev1.Pod) string { return redisReport(ctx, pod) },
	},
	"rabbitmq": {
		Name: "rabbitmq", Manifest: "rabbitmq.yaml", Container: "rabbitmq", SeedFile: "seed-hosts",
		Packages: []string{"rabbitmq-server"}, Image: "docker.io/library/rabbitmq:3.10.8",
		Commands: map[string]string{
			"/usr/local/bin/rabbitmq-server":      "/usr/lib/rabbitmq/bin/rabbitmq-server",
			"/usr/local/bin/rabbitmqctl":          "/usr/lib/rabbitmq/bin/rabbitmqctl",
			"/usr/local/bin/rabbitmq-diagnostics": "/usr/lib/rabbitmq/bin/rabbitmq-diagnostics",
		},
		Views: func(ctx context.Context, _ AppEnv, pods []corev1.Pod) []ServerView {
			return eachPod(ctx, pods, rabbitView)
		},
		Report: func(ctx context.Context, _ AppEnv, pod *corev1.Pod) string { return rabbitReport(ctx, pod) },
	},
	"jgroups": {
		Name: "jgroups", Manifest: "jgroups.yaml", Container: "jgroups", SeedFile: "seed-jgroups",
		Packages: []string{"libjgroups-java", "openjdk-17-jre-headless"}, Image: "ghcr.io/peergroup/examples/jgroups:2.12.2",
		Commands: map[string]string{"/usr/local/bin/java": "/usr/lib/jvm/java-17-openjdk-*/bin/java"},
		Views: func(ctx context.Context, env AppEnv, pods []corev1.Pod) []ServerView {
			return jgroupsViews(ctx, env.Cluster, pods)
		},
		Report: func(ctx context.Context, env AppEnv, pod *corev1.Pod) string {
			log, err := ContainerLog(ctx, env.Cluster, pod.Namespace, pod.Name, "jgroups")
			if err != nil {
				return err.Error()
			}
			var views []string
			for _, line := range strings.Split(log, "\n") {
				if strings.HasPrefix(line, "GMS: address=") || strings.HasPrefix(line, "** New view: ") {
					views = append(views, line)
				}
			}
			return strings.Join(views, "\n")
		},
	},
	"serf": {
		Name: "serf", Manifest: "serf.yaml", Container: "serf", SeedFile: "seed-hostports",
		Packages: []string{"serf"}, Image: "ghcr.io/peergroup/examples/serf:0.9.4",
		Views: func(ctx context.Context, env AppEnv, pods []corev1.Pod) []ServerView {
			return eachPod(ctx, pods, func(ctx context.Context, pod *corev1.Pod) ServerView { return serfView(ctx, env.Root, pod) })
		},
		Report: serfReport,
	},
}

// ManifestKind is the kind of the example docs/examples/name.
func ManifestKind(name string) (string, error) {
	data, err := os.ReadFile(filepath.Join(RepoRoot(), "docs", "examples", name))
	if err != nil {
		return "", err
	}
	var head struct {
		Kind string `json:"kind"`
	}
	if err := yaml.Unmarshal(data, &head); err != nil {
		return "", fmt.Errorf("docs/examples/%s: %w", name, err)
	}
	return head.Kind, nil
}

// allBusyboxApplets lists every command Debian's static busybox provides: the
// images' shell and tools, as a small base image would give them, for the
// examples' wrappers and the servers' own start scripts.
func allBusyboxApplets() ([]string, error) {
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", busybox, err)
	}
	return strings.Fields(string(out)), nil
}

// skippedTrees are parts of a package no server reads at run time.
var skippedTrees = []string{"/usr/share/doc/", "/usr/share/man/", "/usr/share/lintian/", "/usr/share/bug/", "/etc/init.d/", "/lib/systemd/", "/usr/lib/systemd/"}

// PushDebianApp extracts app's packages (ExtractDebian, cached under
// cache), makes them an image with Debian's static busybox as its shell,
// and pushes it under the name the manifest uses. It returns the root, so
// the host can run the server's own client tools from it.
func PushDebianApp(ctx context.Context, n *RealNode, cache string, app DebianApp, say func(string, ...any)) (DebianRoot, error) {
	// The lock stays held while the files are read into the layer: another
	// run re-extracting after a version change waits for it.
	unlock, err := lockDir(cache)
	if err != nil {
		return DebianRoot{}, err
	}
	defer unlock()
	root, err := extractDebian(ctx, cache, app.Name, app.Packages, false, say)
	if err != nil {
		return root, err
	}
	files, err := TreeFiles(root.Dir)
	if err != nil {
		return root, err
	}
	for name := range files {
		for _, skip := range skippedTrees {
			if strings.HasPrefix(name, skip) {
				delete(files, name)
			}
		}
	}
	if _, err := os.Stat(busybox); err != nil {
		return root, fmt.Errorf("%s missing: apt-get install busybox-static", busybox)
	}
	files["/bin/busybox"] = ociimage.File{Source: busybox, Mode: 0o755}
	applets, err := allBusyboxApplets()
	if err != nil {
		return root, err
	}
	for _, a := range applets {
		_, inBin := files["/bin/"+a]
		_, inUsrBin := files["/usr/bin/"+a]
		if !inBin && !inUsrBin {
			files["/bin/"+a] = ociimage.File{Link: "busybox"}
		}
	}
	for name, target := range app.Commands {
		// A pattern (the JVM's directory names its architecture) is
		// resolved in the extracted root.
		matches, _ := filepath.Glob(filepath.Join(root.Dir, target))
		if len(matches) != 1 {
			return root, fmt.Errorf("debian %s: command %s: %d files match %s", app.Name, name, len(matches), target)
		}
		target = "/" + strings.TrimPrefix(filepath.ToSlash(strings.TrimPrefix(matches[0], root.Dir)), "/")
		files[name] = ociimage.File{Data: []byte("#!/bin/sh\nexec " + target + " \"$@\"\n"), Mode: 0o755}
	}
	files["/tmp/.keep"] = ociimage.File{}
	files["/etc/passwd"] = ociimage.File{Data: []byte("root:x:0:0:root:/root:/bin/sh\nnonroot:x:65532:65532:nonroot:/tmp:/bin/sh\n")}
	files["/etc/group"] = ociimage.File{Data: []byte("root:x:0:\nnonroot:x:65532:\n")}
	say("debian %s: %d files, pushing %s", app.Name, len(files), app.Image)
	img, err := ociimage.Build(ociimage.Spec{Files: files, User: ociimage.NonrootUser, Labels: map[string]string{
		"org.opencontainers.image.description": "Debian packages " + strings.Join(root.Packages, " "),
	}})
	if err != nil {
		return root, err
	}
	repoTag := app.Image
	for _, reg := range MirroredRegistries {
		repoTag = strings.TrimPrefix(repoTag, reg+"/")
	}
	_, err = n.Registry.Push(ctx, repoTag, img)
	return root, err
}

// eachPod asks every pod at once.
func eachPod(ctx context.Context, pods []corev1.Pod, view func(context.Context, *corev1.Pod) ServerView) []ServerView {
	views := make([]ServerView, len(pods))
	var wg sync.WaitGroup
	for i := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			views[i] = view(ctx, &pods[i])
		}()
	}
	wg.Wait()
	return views
}

// redisCommand sends one command to the Redis server of pod and returns
// its reply (a bulk or simple string).
func redisCommand(ctx context.Context, pod *corev1.Pod, args ...string) (string, error) {
	if err := CheckPodAddress(pod.Status.PodIP); err != nil {
		return "", err
	}
	conn, err := bridgeDialer.DialContext(ctx, "tcp", net.JoinHostPort(pod.Status.PodIP, "6379"))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	var req strings.Builder
	fmt.Fprintf(&req, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&req, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(conn, req.String()); err != nil {
		return "", err
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	switch {
	case strings.HasPrefix(line, "+"):
		return line[1:], nil
	case strings.HasPrefix(line, "-"):
		return "", fmt.Errorf("redis %s: %s", strings.Join(args, " "), line[1:])
	case strings.HasPrefix(line, "$"):
		size, err := strconv.Atoi(line[1:])
		if err != nil || size < 0 {
			return "", fmt.Errorf("redis reply %q", line)
		}
		buf := make([]byte, size+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:size]), nil
	}
	return "", fmt.Errorf("redis reply %q", line)
}

// redisView reads CLUSTER NODES: the server's own node and every node it
// holds reachable (flags without fail, fail?, handshake or noaddr). A node
// Redis flags failed or unreachable is its own report that the node is gone
// (a lost node is flagged fail? at once and fail after the node timeout).
func redisView(ctx context.Context, pod *corev1.Pod) ServerView {
	v := ServerView{Pod: pod.Name, IP: pod.Status.PodIP, Peers: map[string]string{}}
	nodes, err := redisCommand(ctx, pod, "CLUSTER", "NODES")
	if err != nil {
		v.Err = err
		return v
	}
	for _, line := range strings.Split(strings.TrimSpace(nodes), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		id, addr, flags := f[0], strings.SplitN(f[1], "@", 2)[0], ","+f[2]+","
		switch {
		case strings.Contains(flags, ",myself,"):
			v.ID = id
		case strings.Contains(flags, ",fail,"), strings.Contains(flags, ",fail?,"), strings.Contains(flags, ",handshake,"), strings.Contains(flags, ",noaddr,"):
		default:
			v.Peers[id] = addr
		}
	}
	if v.ID == "" {
		v.Err = fmt.Errorf("CLUSTER NODES has no myself line")
	}
	return v
}

// RedisClusterState is CLUSTER INFO's cluster_state and
// cluster_slots_assigned of pod's server.
func RedisClusterState(ctx context.Context, pod *corev1.Pod) (state string, slots int, err error) {
	info, err := redisCommand(ctx, pod, "CLUSTER", "INFO")
	if err != nil {
		return "", 0, err
	}
	for _, line := range strings.Split(info, "\n") {
		k, val, _ := strings.Cut(strings.TrimSpace(line), ":")
		switch k {
		case "cluster_state":
			state = val
		case "cluster_slots_assigned":
			slots, _ = strconv.Atoi(val)
		}
	}
	return state, slots, nil
}

func redisReport(ctx context.Context, pod *corev1.Pod) string {
	info, err := redisCommand(ctx, pod, "CLUSTER", "INFO")
	if err != nil {
		return err.Error()
	}
	nodes, err := redisCommand(ctx, pod, "CLUSTER", "NODES")
	if err != nil {
		return err.Error()
	}
	var keep []string
	for _, line := range strings.Split(info, "\n") {
		if strings.HasPrefix(line, "cluster_state") || strings.HasPrefix(line, "cluster_known_nodes") || strings.HasPrefix(line, "cluster_slots_assigned") {
			keep = append(keep, strings.TrimSpace(line))
		}
	}
	return strings.Join(keep, " ") + "\n" + strings.TrimSpace(nodes)
}

// rabbitGet reads one resource of the management API of pod's node.
func rabbitGet(ctx context.Context, pod *corev1.Pod, path string, into any) error {
	if err := CheckPodAddress(pod.Status.PodIP); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(pod.Status.PodIP, "15672")+path, nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth("guest", "guest")
	httpc := &http.Client{
		Timeout:   3 * time.Second,
		Transport: &http.Transport{DialContext: bridgeDialer.DialContext, DisableKeepAlives: true},
		// A redirect could name any address: never followed.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

type rabbitNode struct {
	Name    string `json:"name"`
	Running bool   `json:"running"`
}

// rabbitView is the node's own name and the cluster's nodes it reports
// running (the management API's /api/nodes: what `rabbitmqctl
// cluster_status` lists as running nodes).
func rabbitView(ctx context.Context, pod *corev1.Pod) ServerView {
	v := ServerView{Pod: pod.Name, IP: pod.Status.PodIP, Peers: map[string]string{}}
	var overview struct {
		Node string `json:"node"`
	}
	if v.Err = rabbitGet(ctx, pod, "/api/overview", &overview); v.Err != nil {
		return v
	}
	var nodes []rabbitNode
	if v.Err = rabbitGet(ctx, pod, "/api/nodes", &nodes); v.Err != nil {
		return v
	}
	v.ID = overview.Node
	for _, n := range nodes {
		if n.Running && n.Name != v.ID {
			v.Peers[n.Name] = n.Name
		}
	}
	return v
}

func rabbitReport(ctx context.Context, pod *corev1.Pod) string {
	var nodes []rabbitNode
	if err := rabbitGet(ctx, pod, "/api/nodes", &nodes); err != nil {
		return err.Error()
	}
	var lines []string
	for _, n := range nodes {
		lines = append(lines, fmt.Sprintf("%s running=%t", n.Name, n.Running))
	}
	return strings.Join(lines, "\n")
}

// serfMembers runs Debian's own `serf members` on the host against pod's
// agent (its RPC address on the pod network).
func serfMembers(ctx context.Context, root DebianRoot, pod *corev1.Pod, format string) (string, error) {
	if err := CheckPodAddress(pod.Status.PodIP); err != nil {
		return "", err
	}
	// The serf binary dials on its own: reach the agent from the bridge's
	// address first, so were the bridge gone nothing leaves by the
	// default route.
	addr := net.JoinHostPort(pod.Status.PodIP, "7373")
	probe, err := bridgeDialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	probe.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(root.Dir, "usr", "bin", "serf"), "members",
		"-rpc-addr="+net.JoinHostPort(pod.Status.PodIP, "7373"), "-format="+format).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("serf members: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// serfView is the agent's alive members by node name (the pod names).
func serfView(ctx context.Context, root DebianRoot, pod *corev1.Pod) ServerView {
	v := ServerView{Pod: pod.Name, IP: pod.Status.PodIP, ID: pod.Name, Peers: map[string]string{}}
	out, err := serfMembers(ctx, root, pod, "json")
	if err != nil {
		v.Err = err
		return v
	}
	var m struct {
		Members []struct {
			Name, Addr, Status string
		} `json:"members"`
	}
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		v.Err = fmt.Errorf("serf members -format=json: %w", err)
		return v
	}
	for _, member := range m.Members {
		if member.Status == "alive" && member.Name != pod.Name {
			v.Peers[member.Name] = member.Addr
		}
	}
	return v
}

func serfReport(ctx context.Context, env AppEnv, pod *corev1.Pod) string {
	out, err := serfMembers(ctx, env.Root, pod, "text")
	if err != nil {
		return err.Error()
	}
	return strings.TrimSpace(out)
}

// jgroupsMember is what a member printed last: its own address (the GMS
// banner) and the last view it installed, as ViewDemo prints them ("**
// New view: [coord|n] [a, b, c]"). JGroups answers membership queries
// only over multicast diagnostics, which the node's bridge does not carry
// to the host, so the member's own output, read through the API server, is
// its report.
type jgroupsMember struct {
	name, viewID string
	members      []string
}

func jgroupsLast(ctx context.Context, c *Cluster, pod *corev1.Pod) (jgroupsMember, error) {
	log, err := ContainerLog(ctx, c, pod.Namespace, pod.Name, "jgroups")
	if err != nil {
		return jgroupsMember{}, err
	}
	return parseJGroupsLog(log)
}

// parseJGroupsLog reads ViewDemo's output. A merge prints the view as
// "MergeView::[coord|n] [a, b], subgroups=[...]".
func parseJGroupsLog(log string) (jgroupsMember, error) {
	var m jgroupsMember
	var view string
	for _, line := range strings.Split(log, "\n") {
		if rest, ok := strings.CutPrefix(line, "GMS: address="); ok {
			m.name, _, _ = strings.Cut(rest, ",")
		}
		if rest, ok := strings.CutPrefix(line, "** New view: "); ok {
			view = strings.TrimPrefix(rest, "MergeView::")
			view, _, _ = strings.Cut(view, ", subgroups=")
		}
	}
	id, members, ok := strings.Cut(view, "] [")
	if m.name == "" || !ok {
		return m, fmt.Errorf("no address or view printed yet")
	}
	m.viewID = strings.TrimPrefix(id, "[")
	m.members = strings.Split(strings.TrimSuffix(members, "]"), ", ")
	return m, nil
}

// jgroupsViews reads every member's last view. A view names a member that
// joined after the printing member learnt the names by its UUID, so views
// are compared by their id (coordinator and counter, the same on every
// member that installed it) and size: members that installed one view of
// all of them, whose coordinator is one of them, see each other.
func jgroupsViews(ctx context.Context, c *Cluster, pods []corev1.Pod) []ServerView {
	last := make([]jgroupsMember, len(pods))
	views := eachPod(ctx, pods, func(ctx context.Context, pod *corev1.Pod) ServerView {
		i := slices.IndexFunc(pods, func(p corev1.Pod) bool { return p.UID == pod.UID })
		v := ServerView{Pod: pod.Name, IP: pod.Status.PodIP, Peers: map[string]string{}}
		last[i], v.Err = jgroupsLast(ctx, c, pod)
		v.ID = last[i].name
		return v
	})
	names := map[string]bool{}
	for _, m := range last {
		names[m.name] = true
	}
	for i, m := range last {
		if views[i].Err != nil {
			continue
		}
		coord, _, _ := strings.Cut(m.viewID, "|")
		for j, other := range last {
			if j != i && views[j].Err == nil && other.viewID == m.viewID && len(m.members) == len(other.members) && names[coord] {
				views[i].Peers[other.name] = "view " + m.viewID
			}
		}
		if len(m.members) != len(pods) || !names[coord] {
			// A view of other members, or of a coordinator that is no
			// pod asked: name them, so the failure shows it.
			for _, member := range m.members {
				if member != m.name {
					views[i].Peers[member] = "view " + m.viewID
				}
			}
		}
	}
	return views
}

// WaitOneCluster waits until the n running pods matching sel form one
// cluster as views reports it, each server seeing exactly the others,
// within `within` of their being running; it returns them and the time
// since the last one started, or the pods and the last error, naming the
// islands.
func WaitOneCluster(ctx context.Context, c *Cluster, ns string, sel map[string]string, n int, within time.Duration, views func(context.Context, []corev1.Pod) []ServerView) ([]corev1.Pod, time.Duration, error) {
	pods, err := RunningReady(ctx, c, ns, sel, n, 3*time.Minute)
	if err != nil {
		return pods, 0, err
	}
	started := LastStarted(pods)
	deadline := time.Now().Add(within)
	for {
		err := OneCluster(views(ctx, pods))
		if err == nil {
			return pods, time.Since(started), nil
		}
		if time.Now().After(deadline) {
			return pods, 0, err
		}
		time.Sleep(500 * time.Millisecond)
	}
}
