package contract

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Founding says whether a pod may start a new cluster.
type Founding string

const (
	// FoundLowest: the first pod of the order founds when it is alone.
	FoundLowest Founding = "lowest"
	// FoundOrdinal0: only StatefulSet ordinal 0 founds; the others wait for it.
	FoundOrdinal0 Founding = "ordinal0"
	// FoundNever: this pod only ever joins an existing cluster.
	FoundNever Founding = "never"
)

// Foundings lists the valid founding values, in the order messages name them.
var Foundings = []Founding{FoundLowest, FoundOrdinal0, FoundNever}

// SeedAddress says how seeds and peers are written: by IP, or by the pods'
// stable DNS names (StatefulSet pods of the group's Service only).
type SeedAddress string

const (
	// AddressIP writes the pods' IP addresses (the default).
	AddressIP SeedAddress = "ip"
	// AddressHostname writes <pod>.<service>.<namespace>.svc.<domain>, a
	// name that survives the pod's restarts (its IP does not).
	AddressHostname SeedAddress = "hostname"
)

// Defaults seed-discovery applies when a tuning value is not set.
const (
	DefaultSeedCount     = 3
	DefaultExpectedPeers = 1
	DefaultStableMargin  = 5 * time.Second
	DefaultTimeout       = 300 * time.Second
	DefaultFounding      = FoundLowest
	DefaultSeedAddress   = AddressIP
)

// Ranges of the tuning values, inclusive. A pod annotation outside them is
// denied at admission, and seed-discovery refuses the same values as a
// configuration error, so a value is valid on both sides or on neither.
var (
	SeedCountRange     = IntRange{1, 100}
	ExpectedPeersRange = IntRange{1, MaxPeers} // what one DNS answer carries (MaxPeers)
	PeerPortRange      = IntRange{1, 65535}
	StableMarginRange  = DurationRange{time.Second, 10 * time.Minute}
	TimeoutRange       = DurationRange{10 * time.Second, 24 * time.Hour}
	// RefreshRange bounds the refreshing sidecar's interval: one
	// observation (two DNS queries, A and AAAA, or one SRV) per interval
	// per pod, so 5s keeps a pod at 0.4 queries/s on average (0.5 at most,
	// with the jitter), plus a TCP retry per query for groups too large for
	// one UDP answer and the PTR queries names need (docs/applications.md, "Refreshing
	// peers"); an hour is as slow as a refresh is still worth running for.
	RefreshRange = DurationRange{5 * time.Second, time.Hour}
)

// IntRange is an inclusive range of integers.
type IntRange struct{ Min, Max int }

// Contains reports whether n is in the range.
func (r IntRange) Contains(n int) bool { return n >= r.Min && n <= r.Max }

// DurationRange is an inclusive range of durations.
type DurationRange struct{ Min, Max time.Duration }

// Contains reports whether d is in the range.
func (r DurationRange) Contains(d time.Duration) bool { return d >= r.Min && d <= r.Max }

// Tuning is one value passed from a pod annotation to seed-discovery's env.
// Check is the single validation both sides run on the text.
type Tuning struct {
	// Name is the annotation's name after the domain and the flag's name
	// in seed-discovery ("seed-count").
	Name string
	// Annotation is the pod annotation ("peergroup.dev/seed-count").
	Annotation string
	// Env is what seed-discovery reads ("PEERGROUP_SEED_COUNT").
	Env string
	// Rule says in words what Check accepts; messages quote it.
	Rule  string
	check func(string) bool
}

// Check reports whether s is a valid value, returning an error that quotes
// the value and the rule.
func (t Tuning) Check(s string) error {
	if t.check(s) {
		return nil
	}
	return fmt.Errorf("%s value %q is invalid: it must be %s", t.Name, s, t.Rule)
}

// Valid reports whether s is a valid value.
func (t Tuning) Valid(s string) bool { return t.check(s) }

// MaxTuningLength bounds a tuning value's text. Every valid value is short
// ("300s", "2328"); without the bound, leading zeros and fraction digits
// ("000…3", "10.000…0s") make megabyte values that parse, and each one
// would be carried into the webhook's caches and answers.
const MaxTuningLength = 32

func tuning(name, rule string, check func(string) bool) Tuning {
	env := "PEERGROUP_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
	bounded := func(s string) bool { return len(s) <= MaxTuningLength && check(s) }
	return Tuning{Name: name, Annotation: Domain + "/" + name, Env: env, Rule: rule + fmt.Sprintf(", at most %d characters", MaxTuningLength), check: bounded}
}

// The tuning values (docs/applications.md, "seed-discovery").
var (
	SeedCount     = tuning("seed-count", fmt.Sprintf("an integer from %d to %d", SeedCountRange.Min, SeedCountRange.Max), intIn(SeedCountRange))
	ExpectedPeers = tuning("expected-peers", fmt.Sprintf("an integer from %d to %d", ExpectedPeersRange.Min, ExpectedPeersRange.Max), intIn(ExpectedPeersRange))
	StableMargin  = tuning("stable-margin", fmt.Sprintf("a Go duration from %s to %s (e.g. 5s)", fmtDuration(StableMarginRange.Min), fmtDuration(StableMarginRange.Max)), durationIn(StableMarginRange))
	Timeout       = tuning("timeout", fmt.Sprintf("a Go duration from %s to %s (e.g. 300s)", fmtDuration(TimeoutRange.Min), fmtDuration(TimeoutRange.Max)), durationIn(TimeoutRange))
	FoundingValue = tuning("founding", "one of lowest, ordinal0, never", func(s string) bool {
		for _, f := range Foundings {
			if s == string(f) {
				return true
			}
		}
		return false
	})
	PeerPort = tuning("peer-port", fmt.Sprintf("a port number from %d to %d", PeerPortRange.Min, PeerPortRange.Max), intIn(PeerPortRange))
	PortName = tuning("port-name", "a container port name (IANA service name, at most 15 characters)", func(s string) bool {
		return len(validation.IsValidPortName(s)) == 0
	})
	SeedAddressValue = tuning("seed-address", "ip or hostname", func(s string) bool {
		return s == string(AddressIP) || s == string(AddressHostname)
	})
	// Refresh turns seed-discovery into a native sidecar that keeps the
	// peer files current after its first decision (docs/applications.md, "Refreshing peers").
	Refresh = tuning("refresh", fmt.Sprintf("a Go duration from %s to %s (e.g. 30s)", fmtDuration(RefreshRange.Min), fmtDuration(RefreshRange.Max)), durationIn(RefreshRange))
)

// Tunings lists every tuning value, in the order the webhook writes their
// env vars.
var Tunings = []Tuning{SeedCount, ExpectedPeers, StableMargin, Timeout, FoundingValue, PeerPort, PortName, SeedAddressValue, Refresh}

func intIn(r IntRange) func(string) bool {
	return func(s string) bool {
		n, err := strconv.Atoi(s)
		return err == nil && r.Contains(n)
	}
}

func durationIn(r DurationRange) func(string) bool {
	return func(s string) bool {
		d, err := time.ParseDuration(s)
		return err == nil && r.Contains(d)
	}
}

// fmtDuration writes whole minutes and hours the way users type them
// ("10m", "24h") rather than time.Duration's "10m0s".
func fmtDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return strconv.Itoa(int(d/time.Hour)) + "h"
	case d%time.Minute == 0:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	}
	return d.String()
}

// ServiceEnvName is the env var naming the Service in app containers: group
// "cassandra" gives CASSANDRA_SERVICE, the name the Cassandra
// KubernetesSeedProvider reads.
func ServiceEnvName(group string) string {
	return strings.ToUpper(strings.ReplaceAll(group, "-", "_")) + ServiceEnvSuffix
}
