package framework

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// CLITools are the command-line tools the README's commands use; hack/
// controlplane/build.sh builds them into the assets directory.
var CLITools = []string{"helm", "kubectl"}

// Shell runs a command line as a user would in a terminal: sh -c, with the
// assets directory (helm, kubectl) first on PATH, the cluster's kubeconfig,
// Helm's own directories under the cluster's log directory (nothing written
// to $HOME), in the repository root. Output goes to out.
func (lc *LocalCluster) Shell(ctx context.Context, out io.Writer, line string) error {
	for _, tool := range CLITools {
		if _, err := os.Stat(filepath.Join(lc.assets, tool)); err != nil {
			return fmt.Errorf("%s missing in %s: run `hack/controlplane/build.sh %s`", tool, lc.assets, strings.Join(CLITools, " "))
		}
	}
	helmHome := filepath.Join(lc.LogDir, "helm")
	cmd := exec.CommandContext(ctx, "sh", "-c", line)
	cmd.Dir = RepoRoot()
	cmd.Env = append(os.Environ(),
		"PATH="+lc.assets+":"+os.Getenv("PATH"),
		"KUBECONFIG="+lc.Kubeconfig,
		"HELM_CACHE_HOME="+filepath.Join(helmHome, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(helmHome, "config"),
		"HELM_DATA_HOME="+filepath.Join(helmHome, "data"))
	if lc.mirror != nil {
		cmd.Env = append(cmd.Env, lc.mirror.Env...)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w", line, err)
	}
	return nil
}

// NoKubeProxyValues writes the chart values a cluster without kube-proxy
// needs (the real node's): the webhook reaches the API server at its
// address on the bridge, not the `kubernetes` Service's cluster IP.
func NoKubeProxyValues(path string) error {
	values := fmt.Sprintf(`# A cluster without kube-proxy: the API server at its own address.
extraEnv:
  - {name: KUBERNETES_SERVICE_HOST, value: %q}
  - {name: KUBERNETES_SERVICE_PORT, value: "%d"}
`, RealNodeBridgeIP, APIServerBridgePort)
	return os.WriteFile(path, []byte(values), 0o644)
}

// UseItOnRealNode returns the README's "Use it" commands for a cluster
// whose node is real: as written, but `helm install` also gets the
// NoKubeProxyValues file (written into dir) and helmArgs.
func UseItOnRealNode(dir string, helmArgs ...string) ([]string, error) {
	values := filepath.Join(dir, "no-kube-proxy.yaml")
	if err := NoKubeProxyValues(values); err != nil {
		return nil, err
	}
	cmds, err := ReadmeUseIt()
	if err != nil {
		return nil, err
	}
	found := false
	for i, c := range cmds {
		if strings.HasPrefix(c, "helm install ") {
			cmds[i] = strings.Join(append([]string{c, "-f", values}, helmArgs...), " ")
			found = true
		}
	}
	if !found {
		return nil, fmt.Errorf(`README.md's "Use it" has no helm install: %q`, cmds)
	}
	return cmds, nil
}

// ReadmeUseIt returns the commands of the README's "Use it" block, one per
// line, continuation lines joined and comments dropped.
func ReadmeUseIt() ([]string, error) {
	return DocCommands("README.md", "## Use it")
}

// DocCommands returns the commands of the first code block under heading
// (a whole line, "## Use it") of the document at path in the repository,
// as ReadmeUseIt does: what a test runs as the document writes it.
func DocCommands(path, heading string) ([]string, error) {
	f, err := os.Open(filepath.Join(RepoRoot(), path))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return docCommands(f, path, heading)
}

func docCommands(r io.Reader, path, heading string) ([]string, error) {
	var cmds []string
	section, block := false, false
	var cur string
	s := bufio.NewScanner(r)
	for s.Scan() {
		line := s.Text()
		switch {
		case !block && headingLevel(line) > 0:
			// A subheading stays in the section; one of its level or
			// above ends it.
			if line == heading {
				section = true
			} else if headingLevel(line) <= headingLevel(heading) {
				section = false
			}
		case section && strings.HasPrefix(line, "```"):
			if block {
				return cmds, nil
			}
			block = true
		case section && block:
			if i := strings.Index(line, " #"); i >= 0 {
				line = line[:i]
			}
			if line = strings.TrimSpace(line); strings.HasPrefix(line, "#") {
				line = "" // a comment line
			}
			if strings.HasSuffix(line, `\`) {
				cur += strings.TrimSuffix(line, `\`)
				continue
			}
			if cur += line; strings.TrimSpace(cur) != "" {
				cmds = append(cmds, strings.Join(strings.Fields(cur), " "))
			}
			cur = ""
		}
	}
	return nil, errors.Join(fmt.Errorf("%s has no code block under %q", path, heading), s.Err())
}

// headingLevel is a Markdown heading's level (its leading #s), 0 for
// other lines.
func headingLevel(line string) int {
	n := len(line) - len(strings.TrimLeft(line, "#"))
	if n == 0 || !strings.HasPrefix(line[n:], " ") {
		return 0
	}
	return n
}

// pushChart packages charts/peergroup and pushes it to the node's
// registry as peergroup/charts/peergroup:<version>, which the mirror
// serves as oci://ghcr.io/peergroup/charts/peergroup.
func (lc *LocalCluster) pushChart(ctx context.Context) error {
	dir := filepath.Join(lc.LogDir, "chart-package")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var out strings.Builder
	line := fmt.Sprintf("helm package charts/peergroup -d %s && helm push %s/peergroup-*.tgz oci://%s/peergroup/charts --plain-http", dir, dir, lc.Node.Registry.Host)
	if err := lc.Shell(ctx, &out, line); err != nil {
		return fmt.Errorf("%w\n%s", err, out.String())
	}
	return nil
}

// ChartPulls counts the connections to ghcr.io the cluster's registry
// mirror served (the chart pulled as users pull it).
func (lc *LocalCluster) ChartPulls() int64 {
	if lc.mirror == nil {
		return 0
	}
	return lc.mirror.Tunnels()
}
