package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/webhook/admit"
)

// workload is one kind of pod the latency phase creates. Its key prefixes
// the pod names, which is how the same-patch baseline picks its patch.
type workload struct {
	key, title string
	pod        func(ns, name string, ordinal int) *corev1.Pod
}

var workloads = []workload{
	{"min", "minimal pod (one container, two ports; the group from the namespace)", minimalPod},
	{"sts", "production Cassandra pod, as its StatefulSet controller creates it", statefulSetPod},
}

// latencyConfigs are the webhook configurations compared, in the order the
// first round registers them.
var latencyConfigs = []string{"none", "no-op", "one-label", "same-patch", "peergroup"}

// mutates tells which configurations must come back with the pod injected.
func mutates(cfg string) bool {
	return cfg == "same-patch" || cfg == "peergroup"
}

// perConfig is one workload's series, by configuration.
type perConfig map[string]*kindLatency

type kindLatency struct {
	create, dry result
	// size is the created pod's JSON encoding, as the API server returns it.
	size int
}

// 2. Pod CREATE latency through the API server.
func (b *bench) podCreateLatency(ctx context.Context) error {
	b.say("pod CREATE latency: %d alternating rounds of %s", b.o.rounds, strings.Join(latencyConfigs, " / "))
	ns := "latency"
	if _, err := b.cluster.CreateNamespace(ctx, ns, map[string]string{"peergroup.dev/group": "cassandra"}); err != nil {
		return err
	}
	if err := b.recordPeergroupPatches(ctx, ns); err != nil {
		return err
	}
	series := map[string]perConfig{}
	for _, w := range workloads {
		series[w.key] = perConfig{}
		for _, c := range latencyConfigs {
			series[w.key][c] = &kindLatency{}
		}
	}
	hookSum, hookCount, requests := map[string]float64{}, map[string]float64{}, map[string]float64{}
	n := 0
	for r := range b.o.rounds {
		for i := range latencyConfigs {
			cfg := latencyConfigs[(i+r)%len(latencyConfigs)]
			if err := b.register(ctx, cfg); err != nil {
				return err
			}
			sum0, count0, err := b.webhookDurations(ctx)
			if err != nil {
				return err
			}
			for range b.o.createsPerRnd {
				n++
				for _, w := range workloads {
					for _, dryRun := range []bool{false, true} {
						name := fmt.Sprintf("%s-%d", w.key, n)
						if dryRun {
							name += "-dry" // the real create of this round holds the plain name
						}
						pod := w.pod(ns, name, n)
						opts := []client.CreateOption{}
						target := &series[w.key][cfg].create
						if dryRun {
							opts = append(opts, client.DryRunAll)
							target = &series[w.key][cfg].dry
						}
						t0 := time.Now()
						err := b.cluster.Client.Create(ctx, pod, opts...)
						d := time.Since(t0)
						requests[cfg]++
						// A mutating configuration that did not mutate would
						// measure nothing: count it as a failure.
						if err != nil || admit.IsInjected(pod) != mutates(cfg) {
							target.failures++
							continue
						}
						target.count++
						target.latencies = append(target.latencies, d)
						if k := series[w.key][cfg]; !dryRun && k.size == 0 {
							raw, _ := json.Marshal(pod)
							k.size = len(raw)
						}
					}
				}
			}
			sum1, count1, err := b.webhookDurations(ctx)
			if err != nil {
				return err
			}
			hookSum[cfg] += sum1 - sum0
			hookCount[cfg] += count1 - count0
			if err := b.cluster.Client.DeleteAllOf(ctx, &corev1.Pod{}, client.InNamespace(ns), client.GracePeriodSeconds(0)); err != nil {
				return err
			}
		}
	}
	if err := b.register(ctx, "peergroup"); err != nil {
		return err
	}
	b.reportLatency(series, hookSum, hookCount, requests)
	return nil
}

// recordPeergroupPatches asks peergroup, over HTTPS as the API server
// would, for its answer to each workload's pod and writes the patch where
// the same-patch baseline serves it from.
func (b *bench) recordPeergroupPatches(ctx context.Context, ns string) error {
	if err := b.register(ctx, "none"); err != nil {
		return err
	}
	for _, w := range workloads {
		review, err := b.reviewOf(ctx, w.pod(ns, w.key+"-0", 0))
		if err != nil {
			return err
		}
		answer, err := postReview(ctx, keepAliveClient(b.pg.CABundle, 1), b.pg.URL(), review)
		if err != nil {
			return fmt.Errorf("peergroup's answer for the %s pod: %w", w.key, err)
		}
		if answer.Response == nil || !answer.Response.Allowed || len(answer.Response.Patch) == 0 {
			return fmt.Errorf("peergroup did not inject the %s pod: %+v", w.key, answer.Response)
		}
		if err := os.WriteFile(filepath.Join(b.patchDir, w.key+".json"), answer.Response.Patch, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func postReview(ctx context.Context, c *http.Client, url string, review []byte) (*admissionv1.AdmissionReview, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(review))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	out := &admissionv1.AdmissionReview{}
	return out, json.NewDecoder(resp.Body).Decode(out)
}

func (b *bench) reportLatency(series map[string]perConfig, hookSum, hookCount, requests map[string]float64) {
	b.md("## 2. Pod CREATE latency through kube-apiserver")
	b.md("")
	b.md("%d rounds; in each, the configurations take turns in rotated order, and under each %d creates and %d server-side dry-run creates of each workload (%d samples per cell). \"none\": no webhook; \"no-op\": the no-op server; \"one-label\": the no-op server answering with a one-label patch (what any mutation costs the API server); \"same-patch\": the no-op server answering with peergroup's own patch for that pod, recorded beforehand (what the injected fields cost the API server, with none of peergroup's code on the path).",
		b.o.rounds, b.o.createsPerRnd, b.o.createsPerRnd, b.o.rounds*b.o.createsPerRnd)
	b.md("")
	titles := map[string]string{"peergroup": "**peergroup**"}
	for _, w := range workloads {
		s := series[w.key]
		b.md("### %s", w.title)
		b.md("")
		b.md("The created pod is %s of JSON with the no-op webhook and %s with peergroup (%s): every cost of the API server that grows with the object grows by that much.", kb(s["no-op"].size), kb(s["peergroup"].size), ratio(float64(s["peergroup"].size), float64(s["no-op"].size)))
		b.md("")
		b.md("| configuration | create p50 / p95 / p99 | ÷ no-op p50 / p95 / p99 | dry-run create p50 / p95 / p99 | ÷ no-op p50 / p95 / p99 | failures |")
		b.md("|---|---|---|---|---|---|")
		noop := s["no-op"]
		for _, c := range latencyConfigs {
			k, title := s[c], titles[c]
			if title == "" {
				title = c
			}
			b.md("| %s | %s | %s | %s | %s | %d |", title,
				pcts(&k.create), pctRatios(&k.create, &noop.create, c == "peergroup"),
				pcts(&k.dry), pctRatios(&k.dry, &noop.dry, c == "peergroup"),
				k.create.failures+k.dry.failures)
		}
		b.md("")
		b.md("peergroup ÷ same-patch p50: create %s, dry-run %s (peergroup's own share); same-patch ÷ no-op p50: create %s, dry-run %s (the API server's cost of the injected fields).",
			pctRatio(&s["peergroup"].create, &s["same-patch"].create, 50), pctRatio(&s["peergroup"].dry, &s["same-patch"].dry, 50),
			pctRatio(&s["same-patch"].create, &noop.create, 50), pctRatio(&s["same-patch"].dry, &noop.dry, 50))
		b.md("")
	}
	mean := func(cfg string) float64 {
		if hookCount[cfg] == 0 {
			return 0
		}
		return hookSum[cfg] / hookCount[cfg] * 1000
	}
	calls := func(cfg string) string {
		if requests[cfg] == 0 {
			return "n/a"
		}
		return strconv.FormatFloat(hookCount[cfg]/requests[cfg], 'f', 2, 64)
	}
	b.md("The API server's own `apiserver_admission_webhook_admission_duration_seconds` (the call, the response and applying the patch), mean over the same requests: no-op %.2f ms, one-label %.2f ms, same-patch %.2f ms, peergroup %.2f ms (%s the same patch). Webhook calls per request: no-op %s, same-patch %s, peergroup %s (a mutation makes the API server run the whole admission chain once more; peergroup's `reinvocationPolicy: IfNeeded` does not add a second call).",
		mean("no-op"), mean("one-label"), mean("same-patch"), mean("peergroup"), ratio(mean("peergroup"), mean("same-patch")),
		calls("no-op"), calls("same-patch"), calls("peergroup"))
	b.md("")
}

func pcts(r *result) string {
	return ms(r.pct(50)) + " / " + ms(r.pct(95)) + " / " + ms(r.pct(99))
}

// pctRatios are r's p50, p95 and p99 over base's; the targeted p50 and p99
// in bold when bold.
func pctRatios(r, base *result, bold bool) string {
	if !bold {
		return pctRatio(r, base, 50) + " / " + pctRatio(r, base, 95) + " / " + pctRatio(r, base, 99)
	}
	return "**" + pctRatio(r, base, 50) + "** / " + pctRatio(r, base, 95) + " / **" + pctRatio(r, base, 99) + "**"
}

func kb(n int) string { return fmt.Sprintf("%.1f KiB", float64(n)/1024) }

func pctRatio(a, base *result, p float64) string {
	return ratio(float64(a.pct(p)), float64(base.pct(p)))
}

// minimalPod is the smallest Cassandra pod: the group comes from the
// namespace.
func minimalPod(ns, name string, _ int) *corev1.Pod { return benchPod(ns, name) }

func benchPod(ns, name string) *corev1.Pod {
	pod := &corev1.Pod{}
	pod.Namespace, pod.Name = ns, name
	pod.Labels = map[string]string{"app": "cassandra"}
	pod.Spec.Containers = []corev1.Container{{
		Name: "cassandra", Image: "cassandra:5.0",
		Ports: []corev1.ContainerPort{{Name: "cql", ContainerPort: 9042}, {Name: "thrift", ContainerPort: 9160}},
	}}
	return pod
}

// statefulSetPod is a Cassandra pod as it runs in production: the
// Kubernetes tutorial's Cassandra StatefulSet container (resources,
// IPC_LOCK, a drain preStop hook, a readiness probe, a data volume) with
// peergroup's labels and annotations from docs/examples, and the fields the
// StatefulSet controller sets when it creates the pod (owner, revision and
// pod-name labels, hostname, subdomain, the claim volume).
func statefulSetPod(ns, name string, ordinal int) *corev1.Pod {
	cpu, mem := resource.MustParse("500m"), resource.MustParse("1Gi")
	pod := &corev1.Pod{}
	pod.Namespace, pod.Name = ns, name
	pod.Labels = map[string]string{
		"app":                                "cassandra",
		"peergroup.dev/group":                "cassandra",
		"controller-revision-hash":           "cassandra-5d8b6c9f7b",
		"statefulset.kubernetes.io/pod-name": name,
		"apps.kubernetes.io/pod-index":       strconv.Itoa(ordinal),
	}
	pod.Annotations = map[string]string{
		"peergroup.dev/founding":   "ordinal0",
		"peergroup.dev/seed-count": "2",
		"peergroup.dev/peer-port":  "7000",
	}
	pod.OwnerReferences = []metav1.OwnerReference{{
		APIVersion: "apps/v1", Kind: "StatefulSet", Name: "cassandra", UID: "0d9c4e62-6a0b-4b8e-9a55-3b1f3c1d2e7a",
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
	}}
	pod.Spec = corev1.PodSpec{
		Hostname: name, Subdomain: "cassandra",
		TerminationGracePeriodSeconds: ptr.To[int64](1800),
		Containers: []corev1.Container{{
			Name: "cassandra", Image: "cassandra:5.0",
			Command: []string{"sh", "-c"},
			Args:    []string{`export CASSANDRA_SEEDS="$(cat "$PEERGROUP_SEEDS_FILE")"; exec docker-entrypoint.sh cassandra -f`},
			Ports: []corev1.ContainerPort{
				{Name: "intra-node", ContainerPort: 7000}, {Name: "tls-intra-node", ContainerPort: 7001},
				{Name: "jmx", ContainerPort: 7199}, {Name: "cql", ContainerPort: 9042},
			},
			Resources: corev1.ResourceRequirements{
				Limits:   corev1.ResourceList{corev1.ResourceCPU: cpu, corev1.ResourceMemory: mem},
				Requests: corev1.ResourceList{corev1.ResourceCPU: cpu, corev1.ResourceMemory: mem},
			},
			SecurityContext: &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"IPC_LOCK"}}},
			Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{
				Command: []string{"/bin/sh", "-c", "nodetool drain"},
			}}},
			Env: []corev1.EnvVar{
				{Name: "MAX_HEAP_SIZE", Value: "512M"},
				{Name: "HEAP_NEWSIZE", Value: "100M"},
				{Name: "CASSANDRA_CLUSTER_NAME", Value: "K8Demo"},
				{Name: "CASSANDRA_DC", Value: "DC1-K8Demo"},
				{Name: "CASSANDRA_RACK", Value: "Rack1-K8Demo"},
				{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			},
			ReadinessProbe: &corev1.Probe{
				ProbeHandler:        corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/bash", "-c", "/ready-probe.sh"}}},
				InitialDelaySeconds: 15, TimeoutSeconds: 5,
			},
			VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/var/lib/cassandra"}},
		}},
		Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data-" + name},
		}}},
	}
	return pod
}

// webhookDurations sums the API server's webhook admission histogram.
func (b *bench) webhookDurations(ctx context.Context) (sum, count float64, err error) {
	raw, err := b.clientset.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("read API server metrics: %w", err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		name, rest, ok := strings.Cut(line, "{")
		if !ok || !strings.Contains(rest, `type="admit"`) {
			continue
		}
		fields := strings.Fields(line)
		var v float64
		fmt.Sscan(fields[len(fields)-1], &v)
		switch name {
		case "apiserver_admission_webhook_admission_duration_seconds_sum":
			sum += v
		case "apiserver_admission_webhook_admission_duration_seconds_count":
			count += v
		}
	}
	return sum, count, nil
}
