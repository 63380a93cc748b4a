package webhook

import (
	"fmt"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// tuningKey maps one pod annotation to the env var seed-discovery reads
// (DESIGN.md section 3) and checks its value before the pod is admitted, so a
// typo is reported by `kubectl apply` instead of by a crash-looping init
// container.
type tuningKey struct {
	Annotation string
	Env        string
	Rule       string
	Valid      func(string) bool
}

func intBetween(lo, hi int) func(string) bool {
	return func(s string) bool {
		n, err := strconv.Atoi(s)
		return err == nil && n >= lo && n <= hi
	}
}

func durationBetween(lo, hi time.Duration) func(string) bool {
	return func(s string) bool {
		d, err := time.ParseDuration(s)
		return err == nil && d >= lo && d <= hi
	}
}

// TuningKeys lists the annotations passed to seed-discovery, in the order
// their env vars are written.
var TuningKeys = []tuningKey{
	{Domain + "/seed-count", "PEERGROUP_SEED_COUNT", "an integer from 1 to 100", intBetween(1, 100)},
	{Domain + "/expected-peers", "PEERGROUP_EXPECTED_PEERS", "an integer from 1 to 10000", intBetween(1, 10000)},
	{Domain + "/stable-margin", "PEERGROUP_STABLE_MARGIN", "a Go duration from 1s to 10m (e.g. 5s)", durationBetween(time.Second, 10*time.Minute)},
	{Domain + "/timeout", "PEERGROUP_TIMEOUT", "a Go duration from 10s to 24h (e.g. 300s)", durationBetween(10*time.Second, 24*time.Hour)},
	{Domain + "/founding", "PEERGROUP_FOUNDING", "one of lowest, ordinal0, never", func(s string) bool {
		return s == "lowest" || s == "ordinal0" || s == "never"
	}},
	{Domain + "/peer-port", "PEERGROUP_PEER_PORT", "a port number from 1 to 65535", intBetween(1, 65535)},
	{Domain + "/port-name", "PEERGROUP_PORT_NAME", "a container port name (IANA service name, at most 15 characters)", func(s string) bool {
		return len(validation.IsValidPortName(s)) == 0
	}},
}

// InvalidTuningError reports an out-of-range tuning annotation.
type InvalidTuningError struct {
	Annotation, Value, Rule string
}

func (e *InvalidTuningError) Error() string {
	return fmt.Sprintf("peergroup: annotation %s value %q is invalid: it must be %s", e.Annotation, e.Value, e.Rule)
}

// tuningEnv validates the pod's tuning annotations and returns them as env
// vars for seed-discovery. Absent annotations are left to seed-discovery's
// documented defaults.
func tuningEnv(annotations map[string]string) ([]envVar, error) {
	var out []envVar
	for _, k := range TuningKeys {
		v, ok := annotations[k.Annotation]
		if !ok {
			continue
		}
		if !k.Valid(v) {
			return nil, &InvalidTuningError{Annotation: k.Annotation, Value: v, Rule: k.Rule}
		}
		out = append(out, envVar{k.Env, v})
	}
	return out, nil
}

type envVar struct{ Name, Value string }
