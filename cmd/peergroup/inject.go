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

// mutationConfig registers the webhook's injection flags on fs.
func mutationConfig(fs *flag.FlagSet) (*admit.Config, func() error) {
	cfg := admit.DefaultConfig()
	cfg.Version = version
	finish := admit.RegisterFlags(fs, &cfg)
	return &cfg, func() error {
		finish()
		return cfg.Validate()
	}
}

func inject(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("peergroup inject", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("f", "", "manifests to inject: a file, or - for standard input (required)")
	nsGroup := fs.String("namespace-group", "", "stands in for the namespace label peergroup.dev/group: every pod template joins this group unless it has its own")
	namespace := fs.String("namespace", "default", "namespace of objects without metadata.namespace (for the excluded-namespace rule)")
	cfg, finish := mutationConfig(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *file == "" || fs.NArg() > 0 {
		return errors.New("inject: -f FILE or -f - is required, and nothing else")
	}
	if err := finish(); err != nil {
		return err
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
