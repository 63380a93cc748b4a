package admit

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"

	"github.com/peergroup/peergroup/contract"
)

func podWith(labels, annotations map[string]string) *corev1.Pod {
	p := &corev1.Pod{}
	p.Labels = labels
	p.Annotations = annotations
	return p
}

func TestResolveGroup(t *testing.T) {
	cases := []struct {
		name        string
		pod         *corev1.Pod
		ns          map[string]string
		wantGroup   string
		wantService string
		wantSource  Source
		wantErr     string
	}{
		{name: "no labels", pod: podWith(nil, nil)},
		{name: "namespace label", pod: podWith(nil, nil), ns: map[string]string{contract.GroupLabel: "cassandra"}, wantGroup: "cassandra", wantService: "cassandra", wantSource: SourceNamespace},
		{name: "pod label", pod: podWith(map[string]string{contract.GroupLabel: "akka"}, nil), wantGroup: "akka", wantService: "akka", wantSource: SourcePod},
		{name: "pod wins over namespace", pod: podWith(map[string]string{contract.GroupLabel: "akka"}, nil), ns: map[string]string{contract.GroupLabel: "cassandra"}, wantGroup: "akka", wantService: "akka", wantSource: SourcePod},
		{name: "opt out in labelled namespace", pod: podWith(map[string]string{contract.InjectLabel: "false"}, nil), ns: map[string]string{contract.GroupLabel: "cassandra"}},
		{name: "opt out beats pod label", pod: podWith(map[string]string{contract.InjectLabel: "false", contract.GroupLabel: "akka"}, nil)},
		{name: "inject=true is not an opt out", pod: podWith(map[string]string{contract.InjectLabel: "true"}, nil), ns: map[string]string{contract.GroupLabel: "redis"}, wantGroup: "redis", wantService: "redis", wantSource: SourceNamespace},
		{name: "service override", pod: podWith(map[string]string{contract.GroupLabel: "cassandra"}, map[string]string{contract.ServiceAnnotation: "cassandra-peers"}), wantGroup: "cassandra", wantService: "cassandra-peers", wantSource: SourcePod},
		{name: "uppercase group", pod: podWith(map[string]string{contract.GroupLabel: "Cassandra"}, nil), wantErr: `pod label peergroup.dev/group value "Cassandra"`},
		{name: "underscore group from namespace", pod: podWith(nil, nil), ns: map[string]string{contract.GroupLabel: "cass_andra"}, wantErr: `namespace label peergroup.dev/group value "cass_andra"`},
		{name: "digit first", pod: podWith(map[string]string{contract.GroupLabel: "1abc"}, nil), wantErr: `"1abc"`},
		{name: "empty group", pod: podWith(map[string]string{contract.GroupLabel: ""}, nil), wantErr: `value ""`},
		{name: "too long", pod: podWith(map[string]string{contract.GroupLabel: strings.Repeat("a", 64)}, nil), wantErr: "at most 63"},
		{name: "bad service override", pod: podWith(map[string]string{contract.GroupLabel: "ok"}, map[string]string{contract.ServiceAnnotation: "Bad.Name"}), wantErr: `annotation peergroup.dev/service value "Bad.Name"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ResolveGroup(tc.pod, tc.ns)
			if tc.wantErr != "" {
				var invalid *Denial
				if !errors.As(err, &invalid) || invalid.Reason != ReasonInvalidName || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "DNS-1035") {
					t.Fatalf("error = %v, want an invalid-name Denial containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Group != tc.wantGroup || m.Service != tc.wantService || m.Source != tc.wantSource {
				t.Errorf("got %+v, want group=%q service=%q source=%q", m, tc.wantGroup, tc.wantService, tc.wantSource)
			}
			if !m.Member() && m.Reason == "" {
				t.Error("a non-member must carry a reason")
			}
		})
	}
}

func TestServiceEnvName(t *testing.T) {
	for group, want := range map[string]string{"cassandra": "CASSANDRA_SERVICE", "redis-cluster": "REDIS_CLUSTER_SERVICE", "es7": "ES7_SERVICE"} {
		if got := contract.ServiceEnvName(group); got != want {
			t.Errorf("contract.ServiceEnvName(%q) = %q, want %q", group, got, want)
		}
	}
}

// A value of any size is quoted cut to a bound, with its length, so a
// denial never repeats megabytes back to the client, the log or an Event.
func TestMessagesCutHugeValues(t *testing.T) {
	huge := strings.Repeat("é", 512<<10) // 1 MiB, two bytes a rune: the cut must fall on a rune boundary
	pod := podWith(map[string]string{contract.GroupLabel: huge}, nil)
	_, err := ResolveGroup(pod, nil)
	if err == nil || len(err.Error()) > 1024 || !strings.Contains(err.Error(), "… (1048576 bytes)") || !utf8.ValidString(err.Error()) {
		t.Fatalf("%d-byte message: %.200v", len(err.Error()), err)
	}
	pod = podWith(map[string]string{contract.GroupLabel: "g"}, map[string]string{contract.SeedCount.Annotation: huge})
	d := decideT(t, pod, nil, nil)
	if d.Verdict != VerdictDenied || len(d.Message) > 1024 || !strings.Contains(d.Message, "(1048576 bytes)") {
		t.Fatalf("%s: %d-byte message", d.Verdict, len(d.Message))
	}
}
