// Command seeds measures seed-discovery as a refreshing sidecar and the
// time one decision takes, each beside a baseline measured in the same run:
//
//   - the sidecar: N seed-discovery processes keep their peer files current
//     while one loopback DNS zone (test/dnszone) changes every 30 s. It
//     reports their DNS queries per second against the budget (one A and
//     one AAAA query per refresh interval), their memory against a static
//     Go program that only waits (the Go runtime's floor) and against the
//     20 MiB target, how fast the peer files follow the zone, and their
//     exit codes after SIGTERM;
//   - the decision: a joiner's seed-discovery run to exit 0 in groups of 3,
//     30 and 100 peers, as ratios to the 3-peer group.
//
// Everything stays on loopback: the zone listens on 127.0.0.1, the peers
// are 127.0.0.x addresses, and no peer port is set, so seed-discovery
// never dials a peer.
//
//	make bench-seeds   (go run ./test/bench/seeds -out test/bench/RESULTS.md)
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/test/dnszone"
)

const (
	service       = "bench"
	namespace     = "peers"
	clusterDomain = "cluster.local"
	fqdn          = service + "." + namespace + ".svc." + clusterDomain + "."
	// zoneTTL is CoreDNS's default for the kubernetes plugin's answers.
	zoneTTL      = 1
	stableMargin = time.Second
	// toggleEvery is how often the zone changes in the sidecar phase: far
	// apart enough that every sidecar sees each change on its own.
	toggleEvery = 30 * time.Second
	sampleEvery = 10 * time.Second
	// tick is the bench's own polling: process liveness, the seeds files,
	// the peer files after a change (so a lag is known to ±tick).
	tick          = 100 * time.Millisecond
	decideTimeout = time.Minute
	stopTimeout   = 10 * time.Second
	rssTarget     = 20 << 20
	// queriesPerRefresh is the refresh budget: one A and one AAAA query.
	queriesPerRefresh = 2
	// jitterMax is the longest refresh pause, the interval +20% (Keep).
	jitterMax = 1.2
)

// groupSizes are the decision phase's groups; the first is the baseline.
var groupSizes = []int{3, 30, 100}

type options struct {
	out      string
	duration time.Duration
	refresh  time.Duration
	pods     int
	runs     int
}

func main() {
	var o options
	flag.StringVar(&o.out, "out", "", "append the Markdown section to this file too")
	flag.DurationVar(&o.duration, "duration", 5*time.Minute, "sidecar phase: how long to measure after every pod decided")
	flag.IntVar(&o.pods, "pods", 30, "sidecar phase: seed-discovery processes side by side (1..253)")
	flag.DurationVar(&o.refresh, "refresh", 5*time.Second, "sidecar phase: the refresh interval ("+contract.Refresh.Env+")")
	flag.IntVar(&o.runs, "runs", 5, "decision phase: runs per group size")
	flag.Parse()
	// Ctrl-C cancels ctx, so the deferred clean-up stops every process.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-seeds:", err)
		os.Exit(1)
	}
}

func say(format string, args ...any) {
	fmt.Printf("bench-seeds: "+format+"\n", args...)
}

func (o options) check() error {
	var errs []error
	if o.pods < 1 || o.pods > 253 {
		// 127.0.0.(pods+1) is the extra peer; .255 is broadcast-like.
		errs = append(errs, fmt.Errorf("-pods %d: must be 1..253", o.pods))
	}
	if err := contract.Refresh.Check(o.refresh.String()); err != nil {
		errs = append(errs, fmt.Errorf("-refresh: %w", err))
	}
	if o.duration < toggleEvery+followBound(o.refresh)+time.Second {
		errs = append(errs, fmt.Errorf("-duration %s: too short for one zone change every %s to be followed", o.duration, toggleEvery))
	}
	if o.runs < 1 {
		errs = append(errs, fmt.Errorf("-runs %d: must be at least 1", o.runs))
	}
	return errors.Join(errs...)
}

// followBound is how late a sidecar may rewrite its peer files after a
// change: its longest pause (interval +20%) plus the stable margin.
func followBound(refresh time.Duration) time.Duration {
	return time.Duration(float64(refresh)*jitterMax) + stableMargin
}

func run(ctx context.Context, o options) error {
	if err := o.check(); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "peergroup-bench-seeds-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(work)

	bins, err := buildBinaries(ctx, work)
	if err != nil {
		return err
	}
	m, err := describeMachine(ctx)
	if err != nil {
		return err
	}
	side, err := measureSidecars(ctx, o, bins, work)
	if err != nil {
		return fmt.Errorf("sidecar phase: %w", err)
	}
	dec, err := measureDecisions(ctx, o, bins.seedDiscovery, work)
	if err != nil {
		return fmt.Errorf("decision phase: %w", err)
	}
	section := render(o, m, side, dec, time.Now().UTC())
	fmt.Print("\n" + section)
	if o.out == "" {
		return nil
	}
	if err := appendSection(o.out, section); err != nil {
		return err
	}
	say("appended the section to %s", o.out)
	return nil
}

// appendSection adds the section after what the file holds: the earlier
// sections were measured by other commands and stay as they are.
func appendSection(path, section string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	if _, err := f.WriteString("\n" + section); err != nil {
		f.Close()
		return fmt.Errorf("append to %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}

// --- building ---

type binaries struct{ seedDiscovery, baseline string }

// baselineSource is the memory baseline: a static Go program that does
// nothing but wait for SIGTERM (so it stops, and exits 0, like the
// sidecar). Its RSS is what any Go process costs.
const baselineSource = `package main

import (
	"context"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
}
`

// buildBinaries builds seed-discovery as the image does (static, stripped)
// and the baseline the same way, so the two differ only in their code.
func buildBinaries(ctx context.Context, work string) (binaries, error) {
	say("building seed-discovery and the baseline (CGO_ENABLED=0 -trimpath -ldflags '-s -w', as the image)")
	root, err := moduleRoot(ctx)
	if err != nil {
		return binaries{}, err
	}
	b := binaries{seedDiscovery: filepath.Join(work, "seed-discovery"), baseline: filepath.Join(work, "baseline")}
	if err := goBuild(ctx, root, b.seedDiscovery, "./cmd/seed-discovery"); err != nil {
		return binaries{}, err
	}
	src := filepath.Join(work, "baseline-src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return binaries{}, fmt.Errorf("baseline source dir: %w", err)
	}
	files := map[string]string{"main.go": baselineSource, "go.mod": "module baseline\n\ngo 1.26\n"}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(src, name), []byte(text), 0o644); err != nil {
			return binaries{}, fmt.Errorf("baseline source: %w", err)
		}
	}
	if err := goBuild(ctx, src, b.baseline, "."); err != nil {
		return binaries{}, err
	}
	return b, nil
}

func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run from inside the peergroup module (go env GOMOD is empty)")
	}
	return filepath.Dir(mod), nil
}

func goBuild(ctx context.Context, dir, out, pkg string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s in %s: %w\n%s", pkg, dir, err, b)
	}
	return nil
}

type machine struct {
	cpus      int
	cpuModel  string
	goVersion string
	kernel    string
	// loadStart is the 1-minute load average when the bench began: other
	// work on the machine shows there, and in loadAverage() at the end.
	loadStart string
}

func describeMachine(ctx context.Context) (machine, error) {
	out, err := exec.CommandContext(ctx, "go", "version").Output()
	if err != nil {
		return machine{}, fmt.Errorf("go version: %w", err)
	}
	m := machine{cpus: runtime.NumCPU(), goVersion: strings.TrimPrefix(strings.TrimSpace(string(out)), "go version "), cpuModel: "unknown CPU"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpuModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(b))
	}
	m.loadStart = loadAverage()
	return m, nil
}

// loadAverage is the 1-minute load average, "?" when unknown.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}

// --- processes ---

// proc is one process the bench started; done closes when it exited.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	exit    string // set once done: "0", "1", "signal: killed", …
}

func startProc(bin string, args, env []string, name, logPath string) (*proc, error) {
	logs, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("log file for %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	// Only the env given: nothing from the bench's own (GOMAXPROCS,
	// GODEBUG, a stray PEERGROUP_PEER_PORT) changes what is measured.
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logs, logs
	// Should the bench die, its processes die with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logs.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logs.Close()
		p.exit = exitText(cmd.ProcessState)
		close(p.done)
	}()
	return p, nil
}

func exitText(s *os.ProcessState) string {
	if ws, ok := s.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "signal: " + ws.Signal().String()
	}
	return strconv.Itoa(s.ExitCode())
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the recorded pid, as the kubelet stops a
// container, and waits; what does not stop within stopTimeout is killed.
// It returns the exit status and is safe to call again.
func (p *proc) stop() string {
	if p.exited() {
		return p.exit
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.exit
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return "killed after " + stopTimeout.String() + " (" + p.exit + ")"
	}
}

// stopAll stops the processes one by one and counts their exit statuses.
func stopAll(procs []*proc) map[string]int {
	exits := map[string]int{}
	for _, p := range procs {
		exits[p.stop()]++
	}
	return exits
}

// logTail is the end of a process's log, for an error message.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// memory reads VmRSS and VmHWM (the peak RSS) in bytes.
func memory(pid int) (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("memory of pid %d: %w", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		f := strings.Fields(v)
		if len(f) < 1 || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("pid %d %s %q: %w", pid, k, v, err)
		}
		if k == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	if rss == 0 || hwm == 0 {
		return 0, 0, fmt.Errorf("pid %d: no VmRSS/VmHWM in /proc/%d/status", pid, pid)
	}
	return rss, hwm, sc.Err()
}

// cpuTime is the user+system CPU time a process used so far.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("CPU time of pid %d: %w", pid, err)
	}
	// The fields after the command name, which is in parentheses and may
	// hold spaces; utime and stime are the 14th and 15th fields.
	rest := string(b)[strings.LastIndexByte(string(b), ')')+2:]
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, fmt.Errorf("pid %d: short /proc stat line", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("pid %d stat: %w", pid, err)
	}
	const userHZ = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / userHZ, nil
}

// --- the peers ---

// loopback is 127.0.0.i.
func loopback(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, 0, 0, byte(i)})
}

// loopbackPeers serves 127.0.0.from..to, A records only (no hostname, no
// port name: a Deployment's pods).
func loopbackPeers(from, to int) []dnszone.Peer {
	var peers []dnszone.Peer
	for i := from; i <= to; i++ {
		peers = append(peers, dnszone.Peer{IP: loopback(i)})
	}
	return peers
}

// setKey is a peer set written the same way whatever the order.
func setKey(hosts []string) string {
	s := slices.Clone(hosts)
	slices.Sort(s)
	return strings.Join(s, ",")
}

func peersKey(peers []dnszone.Peer) string {
	hosts := make([]string, len(peers))
	for i, p := range peers {
		hosts[i] = p.IP.String()
	}
	return setKey(hosts)
}

// podName is a Deployment-style name: not ordinal, so seed-discovery asks
// for no PTR names and a refresh costs the A and AAAA queries alone.
func podName(i int) string {
	return fmt.Sprintf("bench-5d8f7c9b4-%c%c", 'a'+i/26%26, 'a'+i%26)
}

// podEnv is the env the webhook would give seed-discovery, with the test
// zone as the DNS server and no peer port (no probes: nothing is dialled).
func podEnv(i int, dnsServer, outDir string, refresh time.Duration) []string {
	env := []string{
		contract.EnvService + "=" + service,
		contract.EnvPodNamespace + "=" + namespace,
		contract.EnvPodName + "=" + podName(i),
		contract.EnvPodIPs + "=" + loopback(i).String(),
		contract.EnvClusterDomain + "=" + clusterDomain,
		contract.StableMargin.Env + "=" + stableMargin.String(),
		contract.ExpectedPeers.Env + "=1",
		"PEERGROUP_DNS_SERVER=" + dnsServer,
		"PEERGROUP_OUTPUT_DIR=" + outDir,
	}
	if refresh > 0 {
		env = append(env, contract.Refresh.Env+"="+refresh.String())
	}
	return env
}

// seedDiscoveryArgs keeps seed-discovery from writing a termination log:
// outside a container /dev/termination-log is not the bench's to touch.
var seedDiscoveryArgs = []string{"--termination-log="}

// decision is what seed-discovery's discovery.json says about cost.
type decision struct {
	Role      string     `json:"role"`
	Queries   int64      `json:"queries"`
	Refreshed *time.Time `json:"refreshed"`
}

func readDecision(dir string) (decision, error) {
	var d decision
	b, err := os.ReadFile(filepath.Join(dir, contract.DiscoveryFileName))
	if err != nil {
		return d, fmt.Errorf("read the decision: %w", err)
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("decode %s: %w", filepath.Join(dir, contract.DiscoveryFileName), err)
	}
	return d, nil
}

// peerHostsKey reads a sidecar's peer-hosts file as a set.
func peerHostsKey(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, contract.PeerHostsFileName))
	if err != nil {
		return "", fmt.Errorf("read peer-hosts: %w", err)
	}
	return setKey(strings.Fields(string(b))), nil
}

// --- the sidecar phase ---

// pod is one seed-discovery sidecar and what the bench learnt about it.
type pod struct {
	*proc
	index int
	dir   string
	// decidedAt is the seeds file's time, decisionQueries the queries
	// discovery.json counted then.
	decidedAt       time.Time
	decisionQueries int64
}

// change is one change of the zone and how late each pod's peer files
// followed it (lags by pod index; missing = not followed before the next).
type change struct {
	at    time.Time
	added bool
	want  string
	lags  map[int]time.Duration
}

type memSample struct{ rss, hwm int64 }

type sidecarResult struct {
	pods         int
	decidedAfter time.Duration // launch → the last pod decided
	steady       time.Duration
	udp, tcp     int64 // zone queries over the steady phase
	perPodRates  []float64
	rss, baseRSS []int64 // every sample of every process
	// firstRSS and lastRSS are the first and the last sample's medians
	// (sidecars, baselines): the trend over the phase.
	firstRSS, lastRSS [2]int64
	// gcs is how many garbage collections each sidecar ran (gctrace).
	gcs             []int
	hwm, baseHWM    []int64 // the last sample's peak, per process
	cpu, baseCPU    []time.Duration
	samples         int
	changes         []change
	finalFollowing  int
	rewrites        []int
	exits, baseExit map[string]int
}

// sidecars is the running sidecar phase.
type sidecars struct {
	o         options
	zone      *dnszone.Server
	pods      []*pod
	baselines []*proc
	base      []dnszone.Peer // the pods' own addresses
	extra     dnszone.Peer   // the address that comes and goes
	withExtra bool
	res       sidecarResult
	launched  time.Time
	steadyAt  time.Time
	endAt     time.Time
	udp0      int64
	tcp0      int64
	// cpu0 is every process's CPU time (all() order) when the steady
	// phase started.
	cpu0    []time.Duration
	pending *change
}

func measureSidecars(ctx context.Context, o options, bins binaries, work string) (*sidecarResult, error) {
	zone, err := dnszone.Start(zoneTTL)
	if err != nil {
		return nil, fmt.Errorf("start the DNS zone: %w", err)
	}
	defer zone.Close()
	s := &sidecars{o: o, zone: zone, base: loopbackPeers(1, o.pods), extra: loopbackPeers(o.pods+1, o.pods+1)[0]}
	s.res.pods = o.pods
	zone.Set(fqdn, "", s.base...)
	// Whatever happens from here, every process started is stopped.
	defer func() { stopAll(s.all()) }()
	if err := s.launch(bins, work); err != nil {
		return nil, err
	}
	say("sidecar phase: %d seed-discovery sidecars (refresh %s) and %d baselines started; zone %s at %s", o.pods, o.refresh, o.pods, fqdn, zone.Addr)
	if err := s.observe(ctx); err != nil {
		return nil, err
	}
	if err := s.finish(); err != nil {
		return nil, err
	}
	return &s.res, nil
}

func (s *sidecars) all() []*proc {
	procs := slices.Clone(s.baselines)
	for _, p := range s.pods {
		procs = append(procs, p.proc)
	}
	return procs
}

// launch starts the sidecars and, with the same env, the baselines.
func (s *sidecars) launch(bins binaries, work string) error {
	s.launched = time.Now()
	for i := 1; i <= s.o.pods; i++ {
		dir := filepath.Join(work, fmt.Sprintf("pod-%d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("output dir of pod %d: %w", i, err)
		}
		// gctrace prints one line per garbage collection and changes
		// nothing else: a sidecar's RSS depends on whether its heap has
		// been collected yet, so the report counts them.
		env := append(podEnv(i, s.zone.Addr, dir, s.o.refresh), "GODEBUG=gctrace=1")
		p, err := startProc(bins.seedDiscovery, seedDiscoveryArgs, env, podName(i), filepath.Join(work, fmt.Sprintf("pod-%d.log", i)))
		if err != nil {
			return err
		}
		s.pods = append(s.pods, &pod{proc: p, index: i, dir: dir})
		b, err := startProc(bins.baseline, nil, env, "baseline-"+podName(i), filepath.Join(work, fmt.Sprintf("baseline-%d.log", i)))
		if err != nil {
			return err
		}
		s.baselines = append(s.baselines, b)
	}
	return nil
}

// observe runs the phase on one tick: it samples memory, waits for every
// pod's first decision (the steady phase starts then), changes the zone
// and follows the peer files until the steady phase has lasted -duration.
func (s *sidecars) observe(ctx context.Context) error {
	t := time.NewTicker(tick)
	defer t.Stop()
	nextSample := s.launched.Add(sampleEvery)
	var nextChange time.Time
	for {
		var now time.Time
		select {
		case <-ctx.Done():
			return ctx.Err()
		case now = <-t.C:
		}
		if err := s.checkAlive(); err != nil {
			return err
		}
		if !now.Before(nextSample) {
			if err := s.sample(); err != nil {
				return err
			}
			nextSample = nextSample.Add(sampleEvery)
		}
		if s.steadyAt.IsZero() {
			if err := s.waitDecided(now); err != nil {
				return err
			}
			nextChange = s.steadyAt.Add(toggleEvery)
			continue
		}
		if !now.Before(s.endAt) {
			return nil
		}
		s.follow(now)
		if !now.Before(nextChange) {
			s.maybeChange(now)
			nextChange = nextChange.Add(toggleEvery)
		}
	}
}

func (s *sidecars) checkAlive() error {
	for _, p := range s.all() {
		if p.exited() {
			return fmt.Errorf("%s (pid %d) exited early with %s:\n%s", p.name, p.pid(), p.exit, logTail(p.logPath))
		}
	}
	return nil
}

// waitDecided notes each pod's first decision (its seeds file, written
// last) and starts the steady phase once all have one.
func (s *sidecars) waitDecided(now time.Time) error {
	if now.Sub(s.launched) > decideTimeout {
		return fmt.Errorf("not every pod decided within %s", decideTimeout)
	}
	for _, p := range s.pods {
		if !p.decidedAt.IsZero() {
			continue
		}
		fi, err := os.Stat(filepath.Join(p.dir, contract.SeedsFileName))
		if err != nil {
			return nil // not yet
		}
		d, err := readDecision(p.dir)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		p.decidedAt, p.decisionQueries = fi.ModTime(), d.Queries
	}
	var err error
	if s.cpu0, err = cpuTimes(s.all()); err != nil {
		return err
	}
	s.steadyAt = now
	s.endAt = now.Add(s.o.duration)
	s.udp0, s.tcp0 = s.zone.Queries()
	s.res.decidedAfter = now.Sub(s.launched)
	say("every pod decided within %s of launch; steady phase for %s (the zone changes every %s)", s.res.decidedAfter.Round(time.Millisecond), s.o.duration, toggleEvery)
	return nil
}

// sample reads VmRSS and VmHWM of every process at one moment. VmHWM
// only grows, so the last sample's is each process's peak.
func (s *sidecars) sample() error {
	rss, hwm, err := sampleAll(procsOf(s.pods))
	if err != nil {
		return err
	}
	baseRSS, baseHWM, err := sampleAll(s.baselines)
	if err != nil {
		return err
	}
	s.res.rss = append(s.res.rss, rss...)
	s.res.baseRSS = append(s.res.baseRSS, baseRSS...)
	s.res.lastRSS = [2]int64{median(rss), median(baseRSS)}
	if s.res.samples == 0 {
		s.res.firstRSS = s.res.lastRSS
	}
	s.res.hwm, s.res.baseHWM = hwm, baseHWM
	s.res.samples++
	say("t+%s: RSS per sidecar median %s max %s, per baseline median %s", time.Since(s.launched).Round(time.Second), mib(median(rss)), mib(slices.Max(rss)), mib(median(baseRSS)))
	return nil
}

func sampleAll(procs []*proc) (rss, hwm []int64, err error) {
	for _, p := range procs {
		m, err := sampleOne(p)
		if err != nil {
			return nil, nil, err
		}
		rss, hwm = append(rss, m.rss), append(hwm, m.hwm)
	}
	return rss, hwm, nil
}

func sampleOne(p *proc) (memSample, error) {
	rss, hwm, err := memory(p.pid())
	if err != nil {
		return memSample{}, fmt.Errorf("sample %s: %w", p.name, err)
	}
	return memSample{rss, hwm}, nil
}

// maybeChange adds or removes the extra address, unless the end is too
// near for every sidecar to follow it: the end checks that every peer file
// equals the served set.
func (s *sidecars) maybeChange(now time.Time) {
	if now.Add(followBound(s.o.refresh) + time.Second).After(s.endAt) {
		return
	}
	s.closeChange()
	s.withExtra = !s.withExtra
	served := s.served()
	s.zone.Set(fqdn, "", served...)
	s.pending = &change{at: now, added: s.withExtra, want: peersKey(served), lags: map[int]time.Duration{}}
	verb := "removed"
	if s.withExtra {
		verb = "added"
	}
	say("t+%s: zone change %d: %s %s (%d addresses)", now.Sub(s.steadyAt).Round(time.Second), len(s.res.changes)+1, verb, s.extra.IP, len(served))
}

func (s *sidecars) served() []dnszone.Peer {
	if s.withExtra {
		return append(slices.Clone(s.base), s.extra)
	}
	return s.base
}

// follow notes, for the latest change, each pod whose peer-hosts now
// holds the served set.
func (s *sidecars) follow(now time.Time) {
	c := s.pending
	if c == nil {
		return
	}
	for _, p := range s.pods {
		if _, ok := c.lags[p.index]; ok {
			continue
		}
		if key, err := peerHostsKey(p.dir); err == nil && key == c.want {
			c.lags[p.index] = now.Sub(c.at)
		}
	}
	if len(c.lags) == len(s.pods) {
		s.closeChange()
	}
}

func (s *sidecars) closeChange() {
	c := s.pending
	if c == nil {
		return
	}
	s.pending = nil
	s.res.changes = append(s.res.changes, *c)
	lags := slices.Collect(maps.Values(c.lags))
	if len(lags) == 0 {
		say("zone change %d: no peer file followed it", len(s.res.changes))
		return
	}
	say("zone change %d followed by %d/%d peer files, lag median %s max %s", len(s.res.changes), len(lags), len(s.pods), median(lags).Round(time.Millisecond), slices.Max(lags).Round(time.Millisecond))
}

// finish takes the end figures while every process still runs, then stops
// them and reads their logs.
func (s *sidecars) finish() error {
	udp, tcp := s.zone.Queries()
	end := time.Now()
	s.res.udp, s.res.tcp = udp-s.udp0, tcp-s.tcp0
	s.res.steady = end.Sub(s.steadyAt)
	s.closeChange()
	// One more sample: the peaks cover the whole phase.
	if err := s.sample(); err != nil {
		return err
	}
	if err := s.finalCPU(); err != nil {
		return err
	}
	if err := s.finalFiles(); err != nil {
		return err
	}
	say("stopping every process with SIGTERM")
	s.res.exits = stopAll(procsOf(s.pods))
	s.res.baseExit = stopAll(s.baselines)
	return s.countRewrites()
}

func procsOf(pods []*pod) []*proc {
	procs := make([]*proc, len(pods))
	for i, p := range pods {
		procs[i] = p.proc
	}
	return procs
}

// finalCPU is each process's CPU time over the steady phase.
func (s *sidecars) finalCPU() error {
	cpu, err := cpuTimes(s.all())
	if err != nil {
		return err
	}
	for i := range cpu {
		cpu[i] -= s.cpu0[i]
	}
	// all() lists the baselines first.
	s.res.baseCPU, s.res.cpu = cpu[:len(s.baselines)], cpu[len(s.baselines):]
	return nil
}

func cpuTimes(procs []*proc) ([]time.Duration, error) {
	out := make([]time.Duration, len(procs))
	for i, p := range procs {
		c, err := cpuTime(p.pid())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
		out[i] = c
	}
	return out, nil
}

// finalFiles checks that every peer-hosts file holds the served set, and
// takes each pod's own query rate from its discovery.json: the queries
// between its first decision and its last rewrite, over that time.
func (s *sidecars) finalFiles() error {
	want := peersKey(s.served())
	for _, p := range s.pods {
		key, err := peerHostsKey(p.dir)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		if key == want {
			s.res.finalFollowing++
		}
		d, err := readDecision(p.dir)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		if d.Refreshed == nil || !d.Refreshed.After(p.decidedAt) {
			continue
		}
		rate := float64(d.Queries-p.decisionQueries) / d.Refreshed.Sub(p.decidedAt).Seconds()
		s.res.perPodRates = append(s.res.perPodRates, rate)
	}
	say("at the end %d/%d peer-hosts files hold the served set (%d addresses)", s.res.finalFollowing, len(s.pods), len(s.served()))
	return nil
}

// countRewrites counts the "peers changed" lines Keep logs per rewrite.
func (s *sidecars) countRewrites() error {
	for _, p := range s.pods {
		b, err := os.ReadFile(p.logPath)
		if err != nil {
			return fmt.Errorf("log of %s: %w", p.name, err)
		}
		s.res.rewrites = append(s.res.rewrites, strings.Count(string(b), "seed-discovery: peers changed"))
		s.res.gcs = append(s.res.gcs, countGCs(string(b)))
	}
	return nil
}

// countGCs counts gctrace's lines ("gc 1 @484.300s 0%: …").
func countGCs(log string) int {
	n := 0
	for line := range strings.Lines(log) {
		if strings.HasPrefix(line, "gc ") {
			n++
		}
	}
	return n
}

// --- the decision phase ---

// decisionRun is one joiner's run of seed-discovery to its decision.
type decisionRun struct {
	wall     time.Duration
	queries  int64 // discovery.json
	udp, tcp int64 // what the zone received
	role     string
}

// measureDecisions runs the last peer of each group (a joiner: never the
// lowest address) to exit 0, the group sizes interleaved run by run so
// machine noise falls on all of them alike.
func measureDecisions(ctx context.Context, o options, bin, work string) (map[int][]decisionRun, error) {
	zone, err := dnszone.Start(zoneTTL)
	if err != nil {
		return nil, fmt.Errorf("start the DNS zone: %w", err)
	}
	defer zone.Close()
	say("decision phase: groups of %v, %d runs each, stable margin %s", groupSizes, o.runs, stableMargin)
	runs := map[int][]decisionRun{}
	for r := 1; r <= o.runs; r++ {
		for _, n := range groupSizes {
			zone.Set(fqdn, "", loopbackPeers(1, n)...)
			d, err := decideOnce(ctx, bin, zone, n, work)
			if err != nil {
				return nil, fmt.Errorf("run %d, %d peers: %w", r, n, err)
			}
			runs[n] = append(runs[n], d)
			say("run %d/%d, %d peers: decided (%s) in %s with %d DNS queries (%d over TCP)", r, o.runs, n, d.role, d.wall.Round(time.Millisecond), d.queries, d.tcp)
		}
	}
	return runs, nil
}

// decideOnce times 127.0.0.n's seed-discovery from start to exit 0.
func decideOnce(ctx context.Context, bin string, zone *dnszone.Server, n int, work string) (decisionRun, error) {
	dir, err := os.MkdirTemp(work, fmt.Sprintf("decide-%d-", n))
	if err != nil {
		return decisionRun{}, fmt.Errorf("output dir: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, decideTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, seedDiscoveryArgs...)
	cmd.Env = podEnv(n, zone.Addr, dir, 0)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	udp0, tcp0 := zone.Queries()
	start := time.Now()
	err = cmd.Run()
	wall := time.Since(start)
	if err != nil {
		return decisionRun{}, fmt.Errorf("seed-discovery for %s: %w\n%s", loopback(n), err, stderr.String())
	}
	udp, tcp := zone.Queries()
	d, err := readDecision(dir)
	if err != nil {
		return decisionRun{}, err
	}
	return decisionRun{wall: wall, queries: d.Queries, udp: udp - udp0, tcp: tcp - tcp0, role: d.Role}, nil
}

// --- figures ---

type number interface {
	~int | ~int64 | ~float64
}

// median of a non-empty list (the lower middle of an even one, so it is
// always a measured value).
func median[T number](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

func mib(b int64) string {
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

func ratio[T number](a, b T) string {
	if b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", float64(a)/float64(b))
}

func seconds(d time.Duration) string {
	return fmt.Sprintf("%.2f s", d.Seconds())
}

func exitsText(exits map[string]int) string {
	var parts []string
	for _, code := range slices.Sorted(maps.Keys(exits)) {
		parts = append(parts, fmt.Sprintf("%d× exit %s", exits[code], code))
	}
	return strings.Join(parts, ", ")
}

func within(ok bool) string {
	if ok {
		return "within"
	}
	return "**over**"
}

// --- the report ---

type report struct{ b strings.Builder }

func (r *report) line(format string, args ...any) {
	fmt.Fprintf(&r.b, format+"\n", args...)
}

func render(o options, m machine, side *sidecarResult, dec map[int][]decisionRun, now time.Time) string {
	r := &report{}
	r.line("## 8. The refreshing sidecar and decision time (%s)", now.Format("2006-01-02"))
	r.line("")
	r.line("Measured by `make bench-seeds` (`go run ./test/bench/seeds`) on this machine: %d cores (%s), Linux %s, %s;", m.cpus, m.cpuModel, m.kernel, m.goVersion)
	r.line("1-minute load average %s at the start, %s at the end (other work shares the machine).", m.loadStart, loadAverage())
	r.line("seed-discovery is built as the image builds it (CGO_ENABLED=0, `-trimpath -ldflags \"-s -w\"`). DNS is `test/dnszone` on 127.0.0.1 with")
	r.line("TTL %d s, every peer a 127.0.0.x address with A records only (a Deployment's pods: no hostnames, no port name), no peer port", zoneTTL)
	r.line("(nothing is dialled), stable margin %s, expected peers 1. Each figure stands beside a baseline measured in the same run.", stableMargin)
	r.line("")
	renderSidecar(r, o, side)
	renderDecisions(r, o, dec)
	return r.b.String()
}

func renderSidecar(r *report, o options, s *sidecarResult) {
	r.line("### The refreshing sidecar: %d pods, refresh %s, %s", s.pods, o.refresh, s.steady.Round(time.Second))
	r.line("")
	r.line("%d seed-discovery processes (`%s=%s`, POD_IPS 127.0.0.1..%d) against one zone that serves them and 127.0.0.%d, which", s.pods, contract.Refresh.Env, o.refresh, s.pods, s.pods+1)
	r.line("appears and disappears every %s so refreshes really rewrite files. Every pod decided within %s of launch; the", toggleEvery, seconds(s.decidedAfter))
	r.line("steady phase (from then) lasted %s. The baseline is %d copies of a static Go program that only waits for SIGTERM", s.steady.Round(time.Second), s.pods)
	r.line("(the Go runtime's floor), started beside them with the same env; every process was sampled every %s from", sampleEvery)
	r.line("`/proc/<pid>/status` (%d samples each).", s.samples)
	r.line("")
	renderMemory(r, s)
	renderDNS(r, o, s)
	renderFollowing(r, o, s)
}

func renderMemory(r *report, s *sidecarResult) {
	r.line("| per pod | seed-discovery | baseline | ratio to baseline | target %s |", mib(rssTarget))
	r.line("|---|---|---|---|---|")
	row := func(name string, v, base int64) {
		r.line("| %s | %s | %s | %s | %s |", name, mib(v), mib(base), ratio(v, base), within(v <= rssTarget))
	}
	row("VmRSS, median of all samples", median(s.rss), median(s.baseRSS))
	row("VmRSS, max of all samples", slices.Max(s.rss), slices.Max(s.baseRSS))
	row("VmHWM (peak RSS), median over pods", median(s.hwm), median(s.baseHWM))
	row("VmHWM (peak RSS), max over pods", slices.Max(s.hwm), slices.Max(s.baseHWM))
	cpu, baseCPU := median(s.cpu), median(s.baseCPU)
	r.line("| CPU time over the steady phase, median per pod (max) | %s (%s), %.3f%% of a core | %s (%s) | %s | — |",
		cpu.Round(time.Millisecond), slices.Max(s.cpu).Round(time.Millisecond), 100*cpu.Seconds()/s.steady.Seconds(),
		baseCPU.Round(time.Millisecond), slices.Max(s.baseCPU).Round(time.Millisecond), ratio(cpu, baseCPU))
	r.line("")
	r.line("Over the phase the sidecars' median RSS went from %s (first sample) to %s (last), the baseline's from %s to %s.",
		mib(s.firstRSS[0]), mib(s.lastRSS[0]), mib(s.firstRSS[1]), mib(s.lastRSS[1]))
	r.line("The sidecars ran %d–%d garbage collections each (`GODEBUG=gctrace=1`).", slices.Min(s.gcs), slices.Max(s.gcs))
	if median(s.gcs) == 0 {
		r.line("Go collects for the first time only when the heap reaches its 4 MiB minimum goal, and its forced 2-minute")
		r.line("collections start only after that first one: a rising RSS without any collection is garbage not yet collected,")
		r.line("and the peak comes later than this phase (run with a longer `-duration` to see it).")
	}
	r.line("")
}

func renderDNS(r *report, o options, s *sidecarResult) {
	budget := queriesPerRefresh / o.refresh.Seconds()
	perPod := float64(s.udp+s.tcp) / s.steady.Seconds() / float64(s.pods)
	r.line("| DNS queries per pod | q/s | budget: %d per refresh (A + AAAA) | ratio to budget |", queriesPerRefresh)
	r.line("|---|---|---|---|")
	r.line("| the zone's counters over the steady phase (%d queries, %d over TCP, ÷ %d pods ÷ %s) | %.4f | %.4f | %.3f× %s |",
		s.udp+s.tcp, s.tcp, s.pods, s.steady.Round(time.Second), perPod, budget, perPod/budget, within(perPod <= budget))
	if len(s.perPodRates) > 0 {
		med, hi := median(s.perPodRates), slices.Max(s.perPodRates)
		r.line("| each pod's `discovery.json` `queries`, first decision → last rewrite: median (max, %d pods) | %.4f (%.4f) | %.4f | %.3f× (%.3f×) |",
			len(s.perPodRates), med, hi, budget, med/budget, hi/budget)
	}
	r.line("")
	r.line("The refresh pause is the interval ±20%% uniformly, so the expected rate is the budget itself, less the time a")
	r.line("round takes; a measured rate a fraction of a percent above it is that jitter's sampling noise.")
	r.line("")
}

func renderFollowing(r *report, o options, s *sidecarResult) {
	bound := followBound(o.refresh)
	var lags []time.Duration
	missing, late, added := 0, 0, 0
	for _, c := range s.changes {
		if c.added {
			added++
		}
		missing += s.pods - len(c.lags)
		for _, l := range c.lags {
			lags = append(lags, l)
			if l > bound {
				late++
			}
		}
	}
	r.line("| the peer files following the zone | value |")
	r.line("|---|---|")
	r.line("| zone changes | %d (%d additions, %d removals of 127.0.0.%d) |", len(s.changes), added, len(s.changes)-added, s.pods+1)
	if len(lags) > 0 {
		r.line("| change → `peer-hosts` holds the new set, over pods × changes: median (max) | %s (%s); bound: one interval +20%% + the margin = %s |",
			seconds(median(lags)), seconds(slices.Max(lags)), seconds(bound))
	}
	r.line("| files later than the bound / never following a change | %d / %d of %d |", late, missing, len(s.changes)*s.pods)
	r.line("| `peer-hosts` equal to the served set at the end | %d of %d |", s.finalFollowing, s.pods)
	r.line("| rewrites logged (`peers changed`) per pod: min–max (total; expected %d each) | %d–%d (%d) |",
		len(s.changes), slices.Min(s.rewrites), slices.Max(s.rewrites), sum(s.rewrites))
	r.line("| exit after SIGTERM | seed-discovery: %s; baseline: %s |", exitsText(s.exits), exitsText(s.baseExit))
	r.line("")
	r.line("Lags are seen by polling the files every %s.", tick)
	r.line("")
}

func sum(xs []int) int {
	t := 0
	for _, x := range xs {
		t += x
	}
	return t
}

func renderDecisions(r *report, o options, dec map[int][]decisionRun) {
	r.line("### Decision time: a joiner in groups of %v", groupSizes)
	r.line("")
	r.line("seed-discovery for the last peer, 127.0.0.N (never the founder; with the default seed count of 3 a seed in the 3-peer group,")
	r.line("a joiner in the others), with stable margin %s and the default poll interval (margin ÷ 4 = 250 ms, ±20%%), from process", stableMargin)
	r.line("start to exit 0; %d runs per group, the groups interleaved run by run. The baseline is the %d-peer group.", o.runs, groupSizes[0])
	r.line("")
	r.line("| peers | median | max | median ÷ %d-peer median | DNS queries (`discovery.json`): median (max) | over TCP per run (zone) | role |", groupSizes[0])
	r.line("|---|---|---|---|---|---|---|")
	base := median(walls(dec[groupSizes[0]]))
	for _, n := range groupSizes {
		runs := dec[n]
		w := walls(runs)
		var queries, tcp []int64
		roles := map[string]bool{}
		for _, d := range runs {
			queries, tcp = append(queries, d.queries), append(tcp, d.tcp)
			roles[d.role] = true
		}
		r.line("| %d | %s | %s | %s | %d (%d) | %d–%d | %s |", n, seconds(median(w)), seconds(slices.Max(w)), ratio(median(w), base),
			median(queries), slices.Max(queries), slices.Min(tcp), slices.Max(tcp), strings.Join(slices.Sorted(maps.Keys(roles)), ", "))
	}
	r.line("")
}

func walls(runs []decisionRun) []time.Duration {
	w := make([]time.Duration, len(runs))
	for i, d := range runs {
		w[i] = d.wall
	}
	return w
}
