package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/peergroup/peergroup/webhook/admit"
	"github.com/peergroup/peergroup/webhook/offline"
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

// parse adds the webhook's injection flags to fs, parses args and returns
// the injection configuration they give, validated as the webhook
// validates it.
func parse(fs *flag.FlagSet, args []string) (*admit.Config, error) {
	cfg := admit.DefaultConfig()
	cfg.Version = version
	finish := admit.RegisterFlags(fs, &cfg)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	finish()
	return &cfg, cfg.Validate()
}

func inject(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("inject", stderr)
	file := fs.String("f", "", "manifests to inject: a file, or - for standard input (required)")
	nsGroup := fs.String("namespace-group", "", "stands in for the namespace label peergroup.dev/group: every pod template joins this group unless it has its own")
	namespace := fs.String("namespace", "default", "namespace of objects without metadata.namespace (for the excluded-namespace rule)")
	cfg, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *file == "" || fs.NArg() > 0 {
		return errors.New("inject: -f FILE or -f - is required, and nothing else")
	}
	in, err := readInput(*file, stdin)
	if err != nil {
		return err
	}
	out, res, err := offline.InjectManifests(in, offline.OfflineOptions{Config: *cfg, NamespaceGroup: *nsGroup, DefaultNamespace: *namespace})
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
