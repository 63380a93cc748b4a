// Command bench measures what peergroup costs, side by side with baselines
// measured in the same run: a no-op controller-runtime webhook with the
// same server settings, and no webhook at all. Numbers are ratios, never
// absolutes alone: an absolute depends on the machine, a ratio to a
// baseline measured alongside much less. Rounds alternate A/B to cancel
// machine noise.
//
//	make bench   (go run ./test/bench -out test/bench/RESULTS.md)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/peergroup/peergroup/test/framework"
	"github.com/peergroup/peergroup/webhook/admit"
)

type options struct {
	rounds        int
	handlerRound  time.Duration
	createsPerRnd int
	services      int
	namespaces    int
	out           string
	phases        string
}

func main() {
	o := options{}
	flag.IntVar(&o.rounds, "rounds", 30, "alternating rounds for pod CREATE latency")
	flag.DurationVar(&o.handlerRound, "handler-round", time.Second, "length of one handler throughput round")
	flag.IntVar(&o.createsPerRnd, "creates", 10, "pod creates (and as many dry-run creates) per config per round")
	flag.IntVar(&o.services, "services", 10000, "Services in the cluster for the memory measurement")
	flag.IntVar(&o.namespaces, "namespaces", 1000, "namespaces for the memory measurement")
	flag.StringVar(&o.out, "out", "", "write the Markdown report here too")
	flag.StringVar(&o.phases, "phases", "", "comma-separated phases to run (handler, latency, calls, memory, go); empty runs all")
	flag.Parse()
	ctx := context.Background()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

const release = "peergroup-system"

type bench struct {
	o         options
	work      string
	cluster   *framework.Cluster
	clientset kubernetes.Interface
	rendered  *framework.Rendered
	pg        *framework.Webhook
	noop      *process
	oneLabel  *process
	// samePatch answers each latency workload with peergroup's own patch
	// for it, recorded in patchDir: the API server's cost of the feature
	// with none of peergroup's code on the path.
	samePatch *process
	patchDir  string
	auditPath string
	// body is the AdmissionReview the handler phases send.
	body   []byte
	report strings.Builder
}

func (b *bench) say(format string, args ...any) {
	fmt.Printf("bench: "+format+"\n", args...)
}

func (b *bench) md(format string, args ...any) {
	fmt.Fprintf(&b.report, format+"\n", args...)
}

func run(ctx context.Context, o options) error {
	b := &bench{o: o}
	var err error
	if b.work, err = os.MkdirTemp("", "peergroup-bench-"); err != nil {
		return err
	}
	defer os.RemoveAll(b.work)

	b.say("building peergroup-webhook and the no-op baseline")
	pgBin, err := framework.BuildBinary(ctx, "peergroup-webhook", b.work)
	if err != nil {
		return err
	}
	noopBin := filepath.Join(b.work, "noop-webhook")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", noopBin, "./test/bench/noop-webhook").CombinedOutput(); err != nil {
		return fmt.Errorf("build noop-webhook: %w\n%s", err, out)
	}

	b.say("starting kube-apiserver + etcd with an audit log")
	b.auditPath = filepath.Join(b.work, "audit.log")
	policy := filepath.Join(b.work, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n"), 0o644); err != nil {
		return err
	}
	b.cluster, err = framework.StartClusterWith(func(env *envtest.Environment) {
		env.ControlPlane.GetAPIServer().Configure().
			Set("audit-log-path", b.auditPath).
			Set("audit-policy-file", policy).
			Set("audit-log-mode", "blocking").
			// Room for the memory phase's Services; the addresses are data.
			Set("service-cluster-ip-range", "10.96.0.0/16")
	})
	if err != nil {
		return err
	}
	defer b.cluster.Stop()
	if b.clientset, err = kubernetes.NewForConfig(b.cluster.Config); err != nil {
		return err
	}
	kubeconfig := filepath.Join(b.work, "kubeconfig")
	if err := b.cluster.WriteKubeconfig(kubeconfig); err != nil {
		return err
	}
	if _, err := b.cluster.CreateNamespace(ctx, release, nil); err != nil {
		return err
	}
	if b.rendered, err = framework.Render("peergroup", release, map[string]any{"certificates": map[string]any{"mode": "certManager"}}); err != nil {
		return err
	}
	if err := framework.ApplyIdentity(ctx, b.cluster, b.rendered); err != nil {
		return err
	}
	saKubeconfig := filepath.Join(b.work, "kubeconfig-sa")
	if err := b.cluster.WriteKubeconfigAs(kubeconfig, saKubeconfig, release, "peergroup"); err != nil {
		return err
	}
	logs, err := os.Create(filepath.Join(b.work, "peergroup.log"))
	if err != nil {
		return err
	}
	defer logs.Close()
	if b.pg, err = framework.StartWebhook(ctx, b.cluster, b.rendered, release, framework.Process(pgBin, saKubeconfig, logs)); err != nil {
		return err
	}
	defer b.pg.Stop()
	if b.noop, err = startNoop(ctx, noopBin, b.work); err != nil {
		return err
	}
	defer b.noop.stop()
	if b.oneLabel, err = startNoop(ctx, noopBin, b.work, "--add-label"); err != nil {
		return err
	}
	defer b.oneLabel.stop()
	b.patchDir = filepath.Join(b.work, "patches")
	if err := os.Mkdir(b.patchDir, 0o755); err != nil {
		return err
	}
	if b.samePatch, err = startNoop(ctx, noopBin, b.work, "--patch-dir="+b.patchDir); err != nil {
		return err
	}
	defer b.samePatch.stop()

	// The handler and memory phases send this review; it is taken before
	// any webhook is registered.
	if _, err := b.cluster.CreateNamespace(ctx, "handler", map[string]string{"peergroup.dev/group": "cassandra"}); err != nil {
		return err
	}
	if b.body, err = b.review(ctx, "handler"); err != nil {
		return err
	}
	b.header()
	phases := []struct {
		name string
		run  func(context.Context) error
	}{
		{"handler", b.handlerThroughput},
		{"latency", b.podCreateLatency},
		{"calls", b.apiCalls},
		{"memory", func(ctx context.Context) error { return b.memory(ctx, pgBin, saKubeconfig, noopBin) }},
		{"go", b.goBenchmarks},
	}
	for _, p := range phases {
		if o.phases != "" && !slices.Contains(strings.Split(o.phases, ","), p.name) {
			continue
		}
		if err := p.run(ctx); err != nil {
			return fmt.Errorf("%s phase: %w", p.name, err)
		}
	}
	fmt.Println()
	fmt.Print(b.report.String())
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(b.report.String()+keptSections(o.out)), 0o644); err != nil {
			return err
		}
		b.say("wrote %s", o.out)
	}
	return nil
}

// keptSections is what out holds from section 6 on: sections this command
// does not write (measured by other commands, such as bench-seeds, or
// recorded once), which a new run must not drop.
func keptSections(out string) string {
	old, err := os.ReadFile(out)
	if err != nil {
		return ""
	}
	if i := strings.Index(string(old), "\n## 6. "); i >= 0 {
		return string(old[i:])
	}
	return ""
}

func (b *bench) header() {
	cpu := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(line, ":", 2)[1])
				break
			}
		}
	}
	b.md("# peergroup benchmark")
	b.md("")
	b.md("Measured %s on %d cores (%s), %s, kube-apiserver %s built from source. Baselines run in the same process tree, alternating with peergroup round by round.", time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), cpu, runtime.Version(), framework.ControlPlaneVersion)
	b.md("")
}

// review is a realistic AdmissionReview: the Cassandra pod of an existing
// group (its Service is in the cache).
func (b *bench) review(ctx context.Context, ns string) ([]byte, error) {
	pod := benchPod(ns, "cassandra-0")
	pod.Labels["peergroup.dev/group"] = "cassandra"
	pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "MAX_HEAP_SIZE", Value: "512M"}}
	return b.reviewOf(ctx, pod)
}

// reviewOf is the AdmissionReview the API server would send for creating
// pod: its object is the pod as the API server encodes it for a webhook,
// taken from a server-side dry-run create with no webhook registered
// (defaults filled in, managedFields set; it also carries the uid and
// creationTimestamp a webhook would not see yet).
func (b *bench) reviewOf(ctx context.Context, pod *corev1.Pod) ([]byte, error) {
	if err := b.cluster.Client.Create(ctx, pod, client.DryRunAll); err != nil {
		return nil, fmt.Errorf("dry-run create of the bench pod %s: %w", pod.Name, err)
	}
	if admit.IsInjected(pod) {
		return nil, errors.New("the bench pod came back injected: a webhook is registered too early")
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		return nil, err
	}
	r := admissionv1.AdmissionReview{}
	r.APIVersion, r.Kind = "admission.k8s.io/v1", "AdmissionReview"
	r.Request = &admissionv1.AdmissionRequest{UID: "bench", Operation: admissionv1.Create, Namespace: pod.Namespace, Name: pod.Name}
	r.Request.Kind.Version, r.Request.Kind.Kind = "v1", "Pod"
	r.Request.Resource.Version, r.Request.Resource.Resource = "v1", "pods"
	r.Request.UserInfo.Username = "system:serviceaccount:kube-system:replicaset-controller"
	r.Request.UserInfo.Groups = []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"}
	r.Request.Object.Raw = raw
	return json.Marshal(r)
}

func ratio(a, base float64) string {
	if base == 0 {
		return "n/a"
	}
	return strconv.FormatFloat(a/base, 'f', 2, 64) + "×"
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
