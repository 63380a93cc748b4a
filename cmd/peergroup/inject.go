package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/peergroup/peergroup/inspect"
	"github.com/peergroup/peergroup/internal/release"
	"github.com/peergroup/peergroup/webhook/admit"
)

func newFlagSet(command string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("peergroup "+command, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// clusterFlags are the flags of the commands that read the cluster.
func clusterFlags(fs *flag.FlagSet) (kubeconfig, output *string) {
	kubeconfig = fs.String("kubeconfig", "", "kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
	output = fs.String("output", "text", "text or json")
	return kubeconfig, output
}

// parse adds the webhook's injection flags to fs, parses args (flags
// anywhere) and returns the injection configuration they give, validated
// as the webhook validates it, and the positional arguments.
func parse(fs *flag.FlagSet, args []string) (*admit.Config, []string, error) {
	cfg := admit.DefaultConfig()
	// What the chart of this release deploys: its image, its version.
	cfg.Version, cfg.SeedDiscoveryImage = version, release.Image(version)
	finish := admit.RegisterFlags(fs, &cfg)
	positional, err := parseAnywhere(fs, args)
	if err != nil {
		return nil, nil, err
	}
	finish()
	return &cfg, positional, cfg.Validate()
}

// parseAnywhere parses flags wherever they stand, before or after
// positional arguments, as kubectl does (Go's flag package stops at the
// first positional one). Everything after "--" is positional.
func parseAnywhere(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	if i := slices.Index(args, "--"); i >= 0 {
		args, rest = args[:i], args[i+1:]
	}
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return append(positional, rest...), nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// fileArg is the one manifest source of a command that takes -f FILE or a
// positional FILE ("-" is standard input); empty when neither is given.
func fileArg(command, flagFile string, positional []string) (string, error) {
	switch {
	case len(positional) > 1 || flagFile != "" && len(positional) > 0:
		return "", fmt.Errorf("%s: give one source of manifests, -f FILE or FILE (- for standard input); got %q", command, append([]string{flagFile}, positional...))
	case len(positional) == 1:
		return positional[0], nil
	}
	return flagFile, nil
}

func inject(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("inject", stderr)
	file := fs.String("f", "", "manifests to inject: a file, or - for standard input (or give it as the argument)")
	nsGroup := fs.String("namespace-group", "", "stands in for the namespace label peergroup.dev/group: every pod template joins this group unless it has its own")
	namespace := fs.String("namespace", "default", "namespace of objects without metadata.namespace (for the excluded-namespace rule)")
	cfg, positional, err := parse(fs, args)
	if err != nil {
		return err
	}
	source, err := fileArg("inject", *file, positional)
	if err != nil {
		return err
	}
	if source == "" {
		return errors.New("inject: manifests are required: -f FILE, FILE, or - for standard input")
	}
	in, err := readInput(source, stdin)
	if err != nil {
		return err
	}
	out, res, err := inspect.InjectManifests(in, inspect.InjectOptions{Config: *cfg, NamespaceGroup: *nsGroup, DefaultNamespace: *namespace})
	if err != nil {
		return err
	}
	for _, w := range res.Warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	_, err = stdout.Write(out)
	return err
}

func readInput(file string, stdin io.Reader) ([]byte, error) {
	if file == "-" {
		return io.ReadAll(stdin)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	return b, nil
}
