package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/peergroup/peergroup/test/framework"
)

// 1. Handler throughput and latency over real TLS, kept-alive connections.
func (b *bench) handlerThroughput(ctx context.Context) error {
	b.say("handler throughput: peergroup vs no-op, c = 1, 4, 16")
	body := b.body
	// One real admission first: the Service then exists and is cached.
	if r := hammer(ctx, keepAliveClient(b.pg.CABundle, 1), b.pg.URL(), body, 1, 200*time.Millisecond); r.count == 0 {
		return fmt.Errorf("peergroup answered nothing")
	}
	time.Sleep(time.Second)
	// Ten rounds: with five, one noisy second moved a ratio by 0.05.
	const rounds = 10
	b.md("## 1. Handler throughput over TLS on loopback")
	b.md("")
	b.md("%d rounds of %s per side and concurrency, sides in rotated order; kept-alive connections; the Cassandra pod of an existing group, as the API server encodes it for a webhook (defaults and managedFields included; taken from a server-side dry-run create).", rounds, b.o.handlerRound)
	b.md("")
	b.md("| concurrency | no-op req/s | peergroup req/s | **ratio** | no-op p50 / p99 | peergroup p50 / p99 | failures |")
	b.md("|---|---|---|---|---|---|---|")
	for _, c := range []int{1, 4, 16} {
		var pg, noop result
		pgc, noopc := keepAliveClient(b.pg.CABundle, c), keepAliveClient(b.noop.ca, c)
		sides := []func(){
			func() { noop.add(hammer(ctx, noopc, b.noop.url, body, c, b.o.handlerRound)) },
			func() { pg.add(hammer(ctx, pgc, b.pg.URL(), body, c, b.o.handlerRound)) },
		}
		for r := range rounds {
			for i := range sides {
				sides[(i+r)%len(sides)]()
			}
		}
		b.md("| %d | %.0f | %.0f | **%s** | %s / %s | %s / %s | %d |", c, noop.rate(), pg.rate(), ratio(pg.rate(), noop.rate()),
			ms(noop.pct(50)), ms(noop.pct(99)), ms(pg.pct(50)), ms(pg.pct(99)), pg.failures+noop.failures)
	}
	b.md("")
	return nil
}

// register makes cfg the only registered webhook configuration and waits
// until the API server uses it.
func (b *bench) register(ctx context.Context, cfg string) error {
	_ = b.cluster.Client.DeleteAllOf(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{})
	_ = b.cluster.Client.DeleteAllOf(ctx, &admissionregistrationv1.ValidatingWebhookConfiguration{})
	switch cfg {
	case "no-op":
		if _, err := framework.RegisterWebhook(ctx, b.cluster, b.rendered, b.noop.url, b.noop.ca); err != nil {
			return err
		}
	case "one-label":
		if _, err := framework.RegisterWebhook(ctx, b.cluster, b.rendered, b.oneLabel.url, b.oneLabel.ca); err != nil {
			return err
		}
	case "same-patch":
		if _, err := framework.RegisterWebhook(ctx, b.cluster, b.rendered, b.samePatch.url, b.samePatch.ca); err != nil {
			return err
		}
	case "peergroup":
		if _, err := framework.RegisterWebhook(ctx, b.cluster, b.rendered, b.pg.URL(), b.pg.CABundle); err != nil {
			return err
		}
		return framework.WaitForInjection(ctx, b.cluster, "default")
	}
	// The API server's view of webhook configurations is an informer:
	// give it a moment, as WaitForInjection does for peergroup.
	time.Sleep(500 * time.Millisecond)
	return nil
}

// 3. API calls per admission, counted by the API server (audit log).
func (b *bench) apiCalls(ctx context.Context) error {
	b.say("API calls per admission from the audit log")
	if err := b.register(ctx, "peergroup"); err != nil {
		return err
	}
	const n = 20
	b.md("## 3. API calls per admission (kube-apiserver audit log, user system:serviceaccount:%s:peergroup)", release)
	b.md("")
	b.md("| scenario | admissions | reads / admission | writes / admission | target | Event writes / admission (async, off the admission path) |")
	b.md("|---|---|---|---|---|---|")
	measure := func(name, target string, admissions int, act func() error) error {
		time.Sleep(time.Second)
		before, err := b.auditCounts()
		if err != nil {
			return err
		}
		if err := act(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		time.Sleep(time.Second)
		after, err := b.auditCounts()
		if err != nil {
			return err
		}
		reads, writes, events := after.reads-before.reads, after.writes-before.writes, after.eventWrites-before.eventWrites
		b.md("| %s | %d | %.2f | %.2f | %s | %.2f |", name, admissions, float64(reads)/float64(admissions), float64(writes)/float64(admissions), target, float64(events)/float64(admissions))
		return nil
	}
	createPods := func(ns string, count int, dry bool, prefix string) error {
		for i := range count {
			opts := []client.CreateOption{}
			if dry {
				opts = append(opts, client.DryRunAll)
			}
			if err := b.cluster.Client.Create(ctx, benchPod(ns, fmt.Sprintf("%s-%d", prefix, i)), opts...); err != nil {
				return err
			}
		}
		return nil
	}
	if _, err := b.cluster.CreateNamespace(ctx, "calls-existing", map[string]string{"peergroup.dev/group": "cassandra"}); err != nil {
		return err
	}
	if err := createPods("calls-existing", 1, false, "warm"); err != nil {
		return err
	}
	if err := measure("existing group", "0", n, func() error { return createPods("calls-existing", n, false, "e") }); err != nil {
		return err
	}
	var newNS []string
	for i := range n {
		ns := fmt.Sprintf("calls-new-%d", i)
		newNS = append(newNS, ns)
		if _, err := b.cluster.CreateNamespace(ctx, ns, map[string]string{"peergroup.dev/group": fmt.Sprintf("group-%d", i)}); err != nil {
			return err
		}
	}
	if err := measure("new group (first pod)", "≤ 1 write", n, func() error {
		for _, ns := range newNS {
			if err := createPods(ns, 1, false, "first"); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if _, err := b.cluster.CreateNamespace(ctx, "calls-dry", map[string]string{"peergroup.dev/group": "dry"}); err != nil {
		return err
	}
	if err := measure("dry-run, new group", "0 writes", n, func() error { return createPods("calls-dry", n, true, "d") }); err != nil {
		return err
	}
	second, err := framework.RegisterWebhook(ctx, b.cluster, b.rendered, b.pg.URL(), b.pg.CABundle, framework.NameSuffix("-second"))
	if err != nil {
		return err
	}
	time.Sleep(time.Second)
	if err := measure("reinvocation (registered twice)", "0", n, func() error { return createPods("calls-existing", n, false, "r") }); err != nil {
		return err
	}
	_ = second.Delete(ctx, b.cluster)
	b.md("")
	return nil
}

type counts struct{ reads, writes, eventWrites int }

// auditCounts counts the webhook's requests in the audit log, leaving out
// the informers' list and watch (not per admission). Event writes are
// counted apart: the recorder sends them asynchronously, after the answer.
func (b *bench) auditCounts() (counts, error) {
	f, err := os.Open(b.auditPath)
	if err != nil {
		return counts{}, err
	}
	defer f.Close()
	user := "system:serviceaccount:" + release + ":peergroup"
	c := counts{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var ev struct {
			Stage            string `json:"stage"`
			Verb             string `json:"verb"`
			User             struct{ Username string }
			ImpersonatedUser *struct{ Username string } `json:"impersonatedUser"`
			ObjectRef        *struct{ Resource string } `json:"objectRef"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || ev.Stage != "ResponseComplete" {
			continue
		}
		if ev.ImpersonatedUser == nil || ev.ImpersonatedUser.Username != user {
			continue
		}
		switch {
		case ev.ObjectRef != nil && ev.ObjectRef.Resource == "events":
			c.eventWrites++
		case ev.Verb == "get":
			c.reads++
		case ev.Verb == "create" || ev.Verb == "update" || ev.Verb == "patch" || ev.Verb == "delete":
			c.writes++
		}
	}
	return c, sc.Err()
}

// 4. Memory with many Services and namespaces cached; CPU per admission.
func (b *bench) memory(ctx context.Context, pgBin, kubeconfig, noopBin string) error {
	b.say("memory: creating %d namespaces and %d Services", b.o.namespaces, b.o.services)
	if err := b.populate(ctx); err != nil {
		return err
	}
	logs, err := os.Create(b.work + "/peergroup-mem.log")
	if err != nil {
		return err
	}
	defer logs.Close()
	pg, err := framework.StartWebhook(ctx, b.cluster, b.rendered, release, framework.Process(pgBin, kubeconfig, logs))
	if err != nil {
		return err
	}
	defer pg.Stop()
	noop, err := startNoop(ctx, noopBin, b.work)
	if err != nil {
		return err
	}
	defer noop.stop()
	time.Sleep(2 * time.Second)
	pgRSS, err := rssBytes(pg.Cmd.Process.Pid)
	if err != nil {
		return err
	}
	noopRSS, err := rssBytes(noop.cmd.Process.Pid)
	if err != nil {
		return err
	}
	body := b.body
	cpu := func(pid int, url string, ca []byte) (time.Duration, error) {
		before, err := cpuTime(pid)
		if err != nil {
			return 0, err
		}
		if r := fixedCount(ctx, keepAliveClient(ca, 4), url, body, 4, 1000); r.failures > 0 {
			return 0, fmt.Errorf("%d failures", r.failures)
		}
		after, err := cpuTime(pid)
		return after - before, err
	}
	pgCPU, err := cpu(pg.Cmd.Process.Pid, pg.URL(), pg.CABundle)
	if err != nil {
		return err
	}
	noopCPU, err := cpu(noop.cmd.Process.Pid, noop.url, noop.ca)
	if err != nil {
		return err
	}
	pgRSSAfter, _ := rssBytes(pg.Cmd.Process.Pid)
	b.md("## 4. Memory and CPU (%d Services in %d namespaces cached)", b.o.services, b.o.namespaces)
	b.md("")
	b.md("| | no-op | peergroup | ratio | target |")
	b.md("|---|---|---|---|---|")
	b.md("| RSS after cache sync | %.1f MiB | %.1f MiB | %s | ≤ 64 MiB |", mib(noopRSS), mib(pgRSS), ratio(float64(pgRSS), float64(noopRSS)))
	b.md("| RSS after 1,000 admissions | | %.1f MiB | | ≤ 64 MiB |", mib(pgRSSAfter))
	b.md("| CPU per 1,000 admissions (c = 4) | %s | %s | %s | |", ms(noopCPU), ms(pgCPU), ratio(float64(pgCPU), float64(noopCPU)))
	b.md("")
	return nil
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func fixedCount(ctx context.Context, c *http.Client, url string, body []byte, workers, total int) result {
	var mu sync.Mutex
	res := result{}
	jobs := make(chan struct{}, total)
	for range total {
		jobs <- struct{}{}
	}
	close(jobs)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				r := hammerOnce(ctx, c, url, body)
				mu.Lock()
				res.add(r)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return res
}

func (b *bench) populate(ctx context.Context) error {
	perNS := max(1, b.o.services/b.o.namespaces)
	work := make(chan int, b.o.namespaces)
	for i := range b.o.namespaces {
		work <- i
	}
	close(work)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				ns := fmt.Sprintf("load-%04d", i)
				if _, err := b.cluster.CreateNamespace(ctx, ns, map[string]string{"team": "t" + fmt.Sprint(i%10)}); err != nil {
					errs <- err
					return
				}
				for j := range perNS {
					svc := &corev1.Service{}
					svc.Namespace, svc.Name = ns, fmt.Sprintf("svc-%d", j)
					svc.Labels = map[string]string{"app": svc.Name}
					svc.Spec.Selector = map[string]string{"app": svc.Name}
					svc.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80}}
					if err := b.cluster.Client.Create(ctx, svc); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// 5. Go benchmarks: mutation, handler, and one seed-discovery decision.
func (b *bench) goBenchmarks(ctx context.Context) error {
	b.say("Go benchmarks")
	out, err := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", ".", "-benchmem", "-count", "3",
		"./webhook/", "./discovery/").CombinedOutput()
	if err != nil {
		return fmt.Errorf("go test -bench: %w\n%s", err, out)
	}
	re := regexp.MustCompile(`^(Benchmark\S+)\s+\d+\s+([\d.]+) ns/op\s+(\d+) B/op\s+(\d+) allocs/op`)
	type agg struct {
		ns          float64
		n           int
		bytes, allc string
	}
	res := map[string]*agg{}
	var order []string
	for _, line := range strings.Split(string(out), "\n") {
		m := re.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		name := strings.TrimSuffix(m[1], "-"+fmt.Sprint(runtimeCPU()))
		a := res[name]
		if a == nil {
			a = &agg{}
			res[name] = a
			order = append(order, name)
		}
		var v float64
		fmt.Sscan(m[2], &v)
		a.ns += v
		a.n++
		a.bytes, a.allc = m[3], m[4]
	}
	b.md("## 5. Go benchmarks (mean of 3 runs)")
	b.md("")
	b.md("| benchmark | time/op | B/op | allocs/op |")
	b.md("|---|---|---|---|")
	for _, name := range order {
		a := res[name]
		b.md("| %s | %.1f µs | %s | %s |", name, a.ns/float64(a.n)/1000, a.bytes, a.allc)
	}
	if d, s := res["BenchmarkDecide1000Peers"], res["BenchmarkSortIPs1000Baseline"]; d != nil && s != nil {
		b.md("")
		b.md("One seed-discovery decision over 1,000 peers costs %s a plain sort of the same 1,000 addresses.", ratio(d.ns/float64(d.n), s.ns/float64(s.n)))
	}
	mean := func(name string) float64 {
		if a := res[name]; a != nil {
			return a.ns / float64(a.n)
		}
		return 0
	}
	if one := mean("BenchmarkAPIServerPatchApply/one-label"); one > 0 {
		b.md("")
		b.md("The API server's patch application (BenchmarkAPIServerPatchApply, its own json-patch library over the bare pod): peergroup's patch costs %s a one-label patch (the diff patch %s); the same pod with the spec replaced whole would cost %s.",
			ratio(mean("BenchmarkAPIServerPatchApply/peergroup"), one), ratio(mean("BenchmarkAPIServerPatchApply/diff"), one), ratio(mean("BenchmarkAPIServerPatchApply/whole-spec"), one))
	}
	b.md("")
	return nil
}
