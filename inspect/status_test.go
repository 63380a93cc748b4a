package inspect

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/peergroup/peergroup/contract"
)

var statusNow = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

// member is an injected, running, ready pod of group g started age ago.
func member(name, ip, g string, age time.Duration) corev1.Pod {
	p := corev1.Pod{}
	p.Name, p.Namespace = name, "ns"
	p.Labels = map[string]string{contract.GroupLabel: g}
	p.Annotations = map[string]string{contract.InjectedAnnotation: "0.1.0"}
	p.Spec.NodeName = "node-a"
	p.Spec.InitContainers = []corev1.Container{{Name: contract.InitContainerName}}
	p.Status.PodIP, p.Status.PodIPs = ip, []corev1.PodIP{{IP: ip}}
	p.Status.StartTime = &metav1.Time{Time: statusNow.Add(-age)}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	return p
}

func failed(p corev1.Pod) corev1.Pod {
	p.Status.Phase = corev1.PodFailed
	return p
}

// decidedSidecar gives p the refreshing sidecar, started (its startup
// probe passed: it decided).
func decidedSidecar(p corev1.Pod) corev1.Pod {
	always := corev1.ContainerRestartPolicyAlways
	p.Spec.InitContainers[0].RestartPolicy = &always
	started := true
	p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: contract.InitContainerName, Started: &started, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
	return p
}

// The lines seed-discovery writes (discovery/run.go, state.go, refresh.go).
func decided(role, seeds string) string {
	return "looking up nats.ns.svc.cluster.local. (self [10.0.0.1], seed count 2, ...)\n" +
		"view changed: 2 addresses [10.0.0.1 10.0.0.2] (own IP present: true)\n" +
		"decided after 3.2s: role " + role + ", seeds " + seeds + ", 2 peers (ip order), 7 DNS queries\n"
}

func TestStatusOf(t *testing.T) {
	founder, seed, joiner := member("a", "10.0.0.1", "nats", time.Minute), member("b", "10.0.0.2", "nats", time.Minute), member("c", "10.0.0.3", "nats", time.Minute)
	for _, tc := range []struct {
		name     string
		pods     []corev1.Pod
		logs     map[string]PodLog
		roles    string
		oneList  bool
		problems []string // substrings, members' and the group's
	}{
		{"one group, formed and refreshed", []corev1.Pod{founder, seed, joiner}, map[string]PodLog{
			"a": {Text: decided("founder", "10.0.0.1") + "peers changed: 3 pods [10.0.0.1 10.0.0.2 10.0.0.3]\n"},
			"b": {Text: decided("seed", "10.0.0.1")},
			"c": {Text: decided("joiner", "10.0.0.1,10.0.0.2")},
		}, "a=founder b=seed c=joiner", true, nil},
		{"two live founders", []corev1.Pod{founder, seed}, map[string]PodLog{
			"a": {Text: decided("founder", "10.0.0.1")}, "b": {Text: decided("founder", "10.0.0.2")},
		}, "a=founder b=founder", false, []string{"2 live founders", "no seed in common"}},
		{"a seed that decided later took the list of its moment: not a problem", []corev1.Pod{founder, seed}, map[string]PodLog{
			"a": {Text: decided("founder", "10.0.0.1")}, "b": {Text: decided("seed", "10.0.0.1,10.0.0.2")},
		}, "a=founder b=seed", false, nil},
		{"a failed founder is not a live one", []corev1.Pod{failed(founder), seed}, map[string]PodLog{
			"a": {Text: decided("founder", "10.0.0.1")}, "b": {Text: decided("founder", "10.0.0.2")},
		}, "a=founder b=founder", true, nil},
		{"a restarted sidecar keeps its decision", []corev1.Pod{founder}, map[string]PodLog{
			"a": {Text: "restarted: keeping the decision made as 10.0.0.1 (role founder, seeds 10.0.0.1)\n"},
		}, "a=founder", true, nil},
		{"every seed gone", []corev1.Pod{joiner}, map[string]PodLog{
			"c": {Text: decided("joiner", "10.0.0.1,10.0.0.2")},
		}, "c=joiner", true, []string{"every seed it took is gone"}},
		{"hostname seeds alive by pod name, and equal to the IPs a decision logs", []corev1.Pod{founder, seed}, map[string]PodLog{
			"a": {Text: "restarted: keeping the decision made as 10.0.0.1 (role founder, seeds a.nats.ns.svc.cluster.local)\n"},
			"b": {Text: decided("seed", "10.0.0.1")},
		}, "a=founder b=seed", true, nil},
		{"IPv6 seeds compare as addresses", []corev1.Pod{member("v6", "fd00::1", "nats", time.Minute)}, map[string]PodLog{
			"v6": {Text: decided("founder", "fd00:0:0::1")},
		}, "v6=founder", true, nil},
		{"an unreadable log is said, not taken for deciding", []corev1.Pod{member("d", "10.0.0.4", "nats", 10*time.Minute)}, map[string]PodLog{
			"d": {Err: errors.New("pods \"d\" is forbidden")},
		}, "d=", true, nil},
		{"a rotated log of a decided sidecar", []corev1.Pod{decidedSidecar(member("d", "10.0.0.4", "nats", 10*time.Minute))}, map[string]PodLog{
			"d": {Text: "peer files kept: ...\n"},
		}, "d=", true, nil},
		{"still deciding past its timeout", []corev1.Pod{member("d", "10.0.0.4", "nats", 10*time.Minute)}, map[string]PodLog{
			"d": {Text: "stable but waiting: 1 of 3 expected peers visible\n"},
		}, "d=", true, []string{"still deciding 10m0s after it started, past its timeout 5m0s"}},
		{"deciding within its timeout", []corev1.Pod{member("d", "10.0.0.4", "nats", time.Minute)}, map[string]PodLog{
			"d": {Text: "stable but waiting: 1 of 3 expected peers visible\n"},
		}, "d=", true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := StatusOf(tc.pods, tc.logs, "nats", "ns", statusNow)
			var roles, problems []string
			for _, m := range s.Members {
				roles = append(roles, m.Pod+"="+m.Role)
				problems = append(problems, m.Problems...)
			}
			problems = append(problems, s.Problems...)
			if got := strings.Join(roles, " "); got != tc.roles {
				t.Errorf("roles %q, want %q", got, tc.roles)
			}
			if s.OneSeedList != tc.oneList {
				t.Errorf("one seed list %v, want %v", s.OneSeedList, tc.oneList)
			}
			if len(problems) != len(tc.problems) {
				t.Fatalf("problems %q, want %d matching %q", problems, len(tc.problems), tc.problems)
			}
			for i, want := range tc.problems {
				if !strings.Contains(problems[i], want) {
					t.Errorf("problem %q, want it to say %q", problems[i], want)
				}
			}
		})
	}
}

func TestStatusReadsTheLog(t *testing.T) {
	m := MemberStatus{Peers: -1}
	readLog(&m, "stable but waiting: first in order, but ...\n"+decided("seed", "10.0.0.1,10.0.0.2")+
		"peers changed: 12 pods [10.0.0.1 10.0.0.2 10.0.0.3 10.0.0.4 10.0.0.5 10.0.0.6 10.0.0.7 10.0.0.8 10.0.0.9 10.0.0.10] …\n")
	if m.Role != "seed" || strings.Join(m.Seeds, ",") != "10.0.0.1,10.0.0.2" || m.Waiting != "" || m.Peers != 12 || len(m.PeerHosts) != 10 {
		t.Errorf("%+v", m)
	}
	decidedOnly := MemberStatus{Peers: -1}
	readLog(&decidedOnly, decided("joiner", "10.0.0.1"))
	if decidedOnly.Peers != 2 || decidedOnly.PeerHosts != nil {
		t.Errorf("the decision's view: %+v", decidedOnly)
	}
}

func TestStatusFlagsUninjectedMembers(t *testing.T) {
	bare := member("x", "10.0.0.9", "", time.Minute)
	delete(bare.Labels, contract.GroupLabel)
	bare.Annotations = nil
	bare.Spec.InitContainers = nil
	optedOut := bare
	optedOut.Name, optedOut.Labels = "y", map[string]string{contract.InjectLabel: "false"}
	other := member("z", "10.0.0.8", "other", time.Minute)
	members := Members([]corev1.Pod{bare, optedOut, other}, map[string]string{contract.GroupLabel: "nats"}, "nats")
	if len(members) != 1 || members[0].Name != "x" {
		t.Fatalf("members %d, want only the unlabelled pod of the labelled namespace", len(members))
	}
	s := StatusOf(members, nil, "nats", "ns", statusNow)
	if len(s.Members[0].Problems) != 1 || !strings.Contains(s.Members[0].Problems[0], "not injected") {
		t.Errorf("problems %q", s.Members[0].Problems)
	}
}

// statusClient is an API server holding namespace ns and pods.
func statusClient(pods ...corev1.Pod) client.Reader {
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	objs := []client.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}}}
	for i := range pods {
		objs = append(objs, &pods[i])
	}
	return fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).Build()
}

func running(p corev1.Pod) corev1.Pod {
	p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: contract.InitContainerName, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
	return p
}

// A member whose seed-discovery never ran (a pending pod) has no log: it
// costs no request and is said to be not started, a problem only past
// its timeout. One that ran, even before a restart, is read.
func TestStatusReadsNoLogOfAPendingMember(t *testing.T) {
	pending := member("pending", "", "nats", time.Minute)
	pending.Status.StartTime = nil
	pulling := member("pulling", "10.0.0.5", "nats", 10*time.Minute)
	pulling.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: contract.InitContainerName, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff"}}}}
	restarted := member("restarted", "10.0.0.6", "nats", time.Minute)
	restarted.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: contract.InitContainerName,
		State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
		LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 3}}}}
	attaching := member("attaching", "10.0.0.7", "nats", 10*time.Minute)
	attaching.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: contract.InitContainerName, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}}}
	done := member("done", "10.0.0.8", "nats", time.Minute)
	done.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: contract.InitContainerName, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}}}
	ran := running(member("ran", "10.0.0.1", "nats", time.Minute))
	var mu sync.Mutex
	read := map[string]int{}
	logs := func(_ context.Context, _, pod, _ string) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		read[pod]++
		return decided("founder", "10.0.0.1"), nil
	}
	s, err := Status(context.Background(), statusClient(pending, pulling, attaching, restarted, done, ran), logs, "ns", "nats", statusNow)
	if err != nil {
		t.Fatal(err)
	}
	if len(read) != 3 || read["ran"] != 1 || read["restarted"] != 1 || read["done"] != 1 {
		t.Errorf("logs read %v, want only ran's, restarted's and done's", read)
	}
	want := map[string]struct {
		started  bool
		note     string
		problems string
	}{
		"pending": {false, "seed-discovery not started", ""},
		"pulling": {false, "seed-discovery not started: ImagePullBackOff", "seed-discovery not started: ImagePullBackOff 10m0s after the pod started, past its timeout 5m0s"},
		// The pod's own wait (a volume attaching): said, not a problem.
		"attaching": {false, "seed-discovery not started: PodInitializing", ""},
		"restarted": {true, "", ""},
		"done":      {true, "", ""},
		"ran":       {true, "", ""},
	}
	if len(s.Members) != len(want) {
		t.Errorf("%d members, want %d", len(s.Members), len(want))
	}
	for _, m := range s.Members {
		w := want[m.Pod]
		if m.Started != w.started || m.Note != w.note || strings.Join(m.Problems, "; ") != w.problems {
			t.Errorf("%s: started %v, note %q, problems %q; want %v, %q, %q", m.Pod, m.Started, m.Note, m.Problems, w.started, w.note, w.problems)
		}
	}
}

// A group's logs are read several at once, never more than
// concurrentLogReads: a large group is read in a fraction of the time
// one request after another takes.
func TestStatusReadsLogsConcurrently(t *testing.T) {
	var pods []corev1.Pod
	for i := range 3 * concurrentLogReads {
		pods = append(pods, running(member(fmt.Sprintf("m%02d", i), fmt.Sprintf("10.0.0.%d", i+1), "nats", time.Minute)))
	}
	var mu sync.Mutex
	inFlight, most := 0, 0
	full := make(chan struct{})
	logs := func(ctx context.Context, _, _, _ string) (string, error) {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		if inFlight == concurrentLogReads {
			select {
			case <-full:
			default:
				close(full)
			}
		}
		mu.Unlock()
		defer func() { mu.Lock(); inFlight--; mu.Unlock() }()
		// The first reads wait until the bound is reached: one at a time,
		// they would wait forever (here, until the test's deadline).
		select {
		case <-full:
		case <-time.After(2 * time.Second):
			return "", errors.New("read alone")
		}
		return decided("joiner", "10.0.0.1"), nil
	}
	s, err := Status(context.Background(), statusClient(pods...), logs, "ns", "nats", statusNow)
	if err != nil {
		t.Fatal(err)
	}
	if most != 8 {
		t.Errorf("%d log reads in flight at most, want 8 (docs/cli.md)", most)
	}
	for _, m := range s.Members {
		if m.Role != "joiner" || m.Note != "" {
			t.Errorf("%s: role %q, note %q", m.Pod, m.Role, m.Note)
		}
	}
}

// A cancelled status (Ctrl-C) stops reading and says so, rather than
// printing every member's log as unavailable.
func TestStatusStopsWhenCancelled(t *testing.T) {
	var pods []corev1.Pod
	for i := range 3 * concurrentLogReads {
		pods = append(pods, running(member(fmt.Sprintf("m%02d", i), fmt.Sprintf("10.0.0.%d", i+1), "nats", time.Minute)))
	}
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	reads := 0
	logs := func(ctx context.Context, _, _, _ string) (string, error) {
		mu.Lock()
		reads++
		mu.Unlock()
		cancel()
		<-ctx.Done()
		return "", ctx.Err()
	}
	_, err := Status(ctx, statusClient(pods...), logs, "ns", "nats", statusNow)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("status after cancel: %v, want context.Canceled", err)
	}
	if reads > concurrentLogReads {
		t.Errorf("%d logs read after the cancel, want at most the %d in flight", reads, concurrentLogReads)
	}
}
