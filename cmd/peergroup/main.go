// Command peergroup is the offline and diagnostic companion of the webhook:
//
//	peergroup inject -f FILE|-     the webhook's injection applied to manifests, plus the Services
//	peergroup explain (-f FILE | NAMESPACE/NAME)   whether, why and how a pod is injected
//	peergroup audit [-n NAMESPACE] [--output json] [--fix [--yes]] members admitted without the injection
//	peergroup check [-n NAMESPACE]  whether the API server can call the webhook
//	peergroup status GROUP [-n NAMESPACE] [--output json]  the group as its members see it
//
// Every rule comes from package webhook, the code the webhook runs.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/peergroup/peergroup/internal/release"
)

// version is stamped by -X main.version (make build: the chart's
// appVersion); a plain go build is the release this tree is.
var version = release.Version

const usage = `usage: peergroup <command> [flags]

commands:
  inject   apply the webhook's injection to manifests (YAML or JSON, any workload kind or List)
           and print them with the headless Services the webhook would create
  explain  tell whether a pod (a file, or NAMESPACE/NAME in the cluster) would be injected, by
           which webhook entry, into which group and Service, and what would stop it
  audit    list the group members in the cluster that lack the injection; exit 1 if any;
           --fix evicts them (PodDisruptionBudgets respected) so they are recreated injected
           (a dry run unless --yes)
  check    dry-run a member pod through the API server: can it call the webhook, and if not,
           where the path likely breaks; exit 1 if not
  status   a group as its members see it (pod, node, IP, ready, role, seeds, peers now), read
           from seed-discovery's logs; exit 1 on a state to act on (two founders, a member
           whose seeds are all gone, an uninjected member, one deciding past its timeout)

Run 'peergroup <command> -h' for a command's flags.

` + kubeUsage + `
The same binary installed as kubectl-peergroup (make build makes both) is a kubectl plugin:
'kubectl peergroup <command>' with the same commands and flags.
`

// name is how the user called this program: "kubectl peergroup" when it
// runs as the kubectl plugin (kubectl runs kubectl-peergroup), else
// "peergroup".
func name() string {
	if strings.HasPrefix(filepath.Base(os.Args[0]), "kubectl-") {
		return "kubectl peergroup"
	}
	return "peergroup"
}

// usageText is the usage under the name the user called.
func usageText() string {
	return strings.ReplaceAll(usage, "usage: peergroup", "usage: "+name())
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run returns the exit code: 0 done, 1 a finding (audit found pods; explain:
// the pod would be denied), 2 bad usage or an error.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText())
		return 2
	}
	// kubectl's flags, anywhere on the line, are kube's, except for
	// inject, which reads no cluster and has a --namespace of its own.
	kube = newKubeFlags()
	if rest, err := kube.extract(args); err != nil {
		fmt.Fprintln(stderr, name()+":", err)
		return 2
	} else if len(rest) > 0 && rest[0] != "inject" {
		args = rest
	} else {
		kube = newKubeFlags()
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText())
		return 2
	}
	var err error
	code := 0
	switch args[0] {
	case "inject":
		err = inject(args[1:], stdin, stdout, stderr)
	case "explain":
		code, err = explain(ctx, args[1:], stdin, stdout, stderr)
	case "audit":
		code, err = audit(ctx, args[1:], stdout, stderr)
	case "check":
		code, err = check(ctx, args[1:], stdout, stderr)
	case "status":
		code, err = status(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, version)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usageText())
	default:
		fmt.Fprintf(stderr, "%s: unknown command %q\n\n%s", name(), args[0], usageText())
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, name()+":", err)
		return 2
	}
	return code
}
