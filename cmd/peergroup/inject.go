package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/peergroup/peergroup/inspect"
)

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
