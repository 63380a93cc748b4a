package main

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/cli-runtime/pkg/genericclioptions"
)

// kubeFlags are kubectl's own connection flags (--kubeconfig, --context,
// -n/--namespace, --cluster, --user, --as, ...), from the library kubectl
// uses, plus -A/--all-namespaces; every command that reads the cluster
// takes them, anywhere on its command line, as kubectl and its plugins do.
type kubeFlags struct {
	config        *genericclioptions.ConfigFlags
	allNamespaces bool
	set           *pflag.FlagSet
}

func newKubeFlags() *kubeFlags {
	k := &kubeFlags{config: genericclioptions.NewConfigFlags(true)}
	k.set = pflag.NewFlagSet("kubectl", pflag.ContinueOnError)
	k.config.AddFlags(k.set)
	k.set.BoolVarP(&k.allNamespaces, "all-namespaces", "A", false, "every namespace")
	return k
}

// extract takes kubectl's flags out of args, parses them, and returns the
// command's own arguments, in order.
func (k *kubeFlags) extract(args []string) ([]string, error) {
	var mine, rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		f, inline := k.lookup(a)
		if f == nil {
			rest = append(rest, a)
			continue
		}
		mine = append(mine, a)
		if !inline && f.NoOptDefVal == "" {
			if i+1 >= len(args) {
				return nil, fmt.Errorf("flag %s needs a value", a)
			}
			i++
			mine = append(mine, args[i])
		}
	}
	if err := k.set.Parse(mine); err != nil {
		return nil, err
	}
	return rest, nil
}

// lookup finds the kubectl flag arg names ("--context", "--context=x",
// "-n", "-n=x", "-A"); inline says its value is in arg. "-nx" is not
// taken: the commands accept Go's single-dash long flags
// ("-namespace-group=x"), which it would misread.
func (k *kubeFlags) lookup(arg string) (f *pflag.Flag, inline bool) {
	switch {
	case strings.HasPrefix(arg, "--"):
		name, _, hasValue := strings.Cut(arg[2:], "=")
		return k.set.Lookup(name), hasValue
	case len(arg) == 2 && arg[0] == '-':
		return k.set.ShorthandLookup(arg[1:]), false
	case len(arg) > 2 && arg[0] == '-' && arg[2] == '=':
		return k.set.ShorthandLookup(arg[1:2]), true
	}
	return nil, false
}

// refuseAll fails a command that reads one namespace when -A was given.
func (k *kubeFlags) refuseAll(command string) error {
	if k.allNamespaces {
		return fmt.Errorf("%s reads one namespace: -A/--all-namespaces is for audit", command)
	}
	return nil
}

// namespace is -n, else the kubeconfig context's, else "default";
// explicit says whether -n gave it.
func (k *kubeFlags) namespace() (ns string, explicit bool, err error) {
	ns, _, err = k.config.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", false, fmt.Errorf("kubeconfig namespace: %w", err)
	}
	return ns, k.set.Changed("namespace"), nil
}

// kubeUsage lists the kubectl flags every cluster command takes.
const kubeUsage = `kubectl's flags, on every command that reads the cluster (anywhere on the line):
  --kubeconfig FILE  --context NAME  -n/--namespace NS  -A/--all-namespaces
  --cluster NAME  --user NAME  --as USER  --as-group GROUP  --server URL  --token TOKEN  ...
`
