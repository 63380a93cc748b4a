package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/peergroup/peergroup/webhook"
	"github.com/peergroup/peergroup/webhook/server"
)

// mutationConfig registers the webhook's injection flags on fs.
func mutationConfig(fs *flag.FlagSet) (*webhook.Config, func() error) {
	cfg := webhook.DefaultConfig()
	cfg.Version = version
	finish := server.MutationFlags(fs, &cfg)
	return &cfg, func() error {
		finish()
		return server.ValidateMutation(cfg)
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
	out, res, err := webhook.InjectManifests(in, webhook.OfflineOptions{Config: *cfg, NamespaceGroup: *nsGroup, DefaultNamespace: *namespace})
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
