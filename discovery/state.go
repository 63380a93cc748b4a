package discovery

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/internal/atomicfile"
)

// Write stores the decision, each file atomically (README, "Seed files"):
// the peer files and discovery.json (writePeers), then the seed files:
// `seeds`, one comma-separated line (ready for CASSANDRA_SEEDS), `seed-hosts`
// one host per line, and with a port `seed-hostports` (host:port per line)
// and `seed-jgroups` (host[port],…). A host is an IP, or a pod's DNS name
// with seed-address=hostname (Hosts fills them in).
func Write(dir string, d Decision) error {
	if err := writePeers(dir, d); err != nil {
		return err
	}
	files := []namedFile{{contract.SeedHostsFileName, lines(d.SeedHosts)}}
	if d.Port > 0 {
		files = append(files,
			namedFile{contract.SeedHostPortsFileName, lines(hostPorts(d.SeedHosts, d.Port))},
			namedFile{contract.SeedJGroupsFileName, []byte(jgroups(d.SeedHosts, d.Port) + "\n")})
	}
	// Last: an app waiting for `seeds` finds the others already there.
	files = append(files, namedFile{contract.SeedsFileName, []byte(strings.Join(d.SeedHosts, ",") + "\n")})
	return writeFiles(dir, files)
}

// writePeers stores what the refreshing sidecar keeps current: `peers`, one
// pod per line in order (its addresses comma-separated, so one address per
// line in a single-stack group; its DNS name with seed-address=hostname),
// `peer-hosts` one host per line, with a port `peer-hostports`, and
// discovery.json.
func writePeers(dir string, d Decision) error {
	peers := make([]string, len(d.Peers))
	for i, p := range d.Peers {
		peers[i] = joinIPs(p.IPs, ",")
	}
	if d.Address == contract.AddressHostname {
		peers = d.PeerHosts // one name per pod
	}
	doc, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", contract.DiscoveryFileName, err)
	}
	// discovery.json first: whoever sees a peer file changed finds the
	// document that explains it.
	files := []namedFile{
		{contract.DiscoveryFileName, append(doc, '\n')},
		{contract.PeersFileName, lines(peers)},
		{contract.PeerHostsFileName, lines(d.PeerHosts)},
	}
	if d.Port > 0 {
		files = append(files, namedFile{contract.PeerHostPortsFileName, lines(hostPorts(d.PeerHosts, d.Port))})
	}
	return writeFiles(dir, files)
}

type namedFile struct {
	name string
	data []byte
}

func writeFiles(dir string, files []namedFile) error {
	for _, f := range files {
		// Readable by the app containers, whatever user they run as.
		if err := atomicfile.Write(filepath.Join(dir, f.name), f.data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func checkWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".writable-*")
	if err != nil {
		return fmt.Errorf("output directory %s is not writable: %w", dir, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// Decided reports whether dir holds a decision: the seeds file, written
// last. The sidecar's startup probe runs it, so the app starts only after
// the first decision.
func Decided(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, contract.SeedsFileName))
	return err == nil
}

// Forget removes the seeds file, so Decided is false until the next
// decision.
func Forget(dir string) error {
	if err := os.Remove(filepath.Join(dir, contract.SeedsFileName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove the earlier seeds: %w", err)
	}
	return nil
}

// LoadDecision reads the decision a previous run of this pod's sidecar
// wrote, so a restarted sidecar goes on refreshing instead of deciding
// again (its seeds must not change). ok is false when there is none.
func LoadDecision(dir string) (d Decision, ok bool, err error) {
	if !Decided(dir) {
		return Decision{}, false, nil
	}
	b, err := os.ReadFile(filepath.Join(dir, contract.DiscoveryFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return Decision{}, false, nil
	}
	if err != nil {
		return Decision{}, false, fmt.Errorf("read the previous decision: %w", err)
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return Decision{}, false, fmt.Errorf("read the previous decision in %s: %w", contract.DiscoveryFileName, err)
	}
	return d, true, nil
}

// Resume is what a restarted sidecar decided before (the seeds
// volume outlives its container): its seeds stay. A plain init container
// decides again each time it runs, as it always has. So does a sidecar
// whose pod has a new address (its sandbox was recreated, and every init
// container runs again) and one whose earlier decision cannot be read:
// seeds for an address the pod no longer has, or a document it cannot
// trust, would be worse than a new decision.
func (r *Runner) Resume() (Decision, bool) {
	cfg := r.Config
	if cfg.Refresh == 0 {
		return Decision{}, false
	}
	d, ok, err := LoadDecision(cfg.OutputDir)
	again := ""
	switch {
	case err != nil:
		again = err.Error()
	case ok && !slices.Contains(cfg.PodIPs, d.Self):
		again = fmt.Sprintf("the earlier decision was made as %s, and this pod is now %v", d.Self, cfg.PodIPs)
	}
	if again != "" {
		// Until the new decision, the startup probe must not pass on the
		// old seeds.
		if err := Forget(cfg.OutputDir); err != nil {
			again += fmt.Sprintf(" (and %v)", err)
		}
		r.logf("deciding again: %s", again)
		return Decision{}, false
	}
	if ok {
		r.logf("restarted: keeping the decision made as %s (role %s, seeds %s)", d.Self, d.Role, strings.Join(d.SeedHosts, ","))
	}
	return d, ok
}
