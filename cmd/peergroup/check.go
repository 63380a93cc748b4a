package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/peergroup/peergroup/probe"
)

// check dry-runs a member pod through the API server and says whether the
// API server can call the webhook, and if not, where the path likely
// breaks. Exit 0 reachable, 1 a finding, 2 an error of the check itself.
func check(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	fs := flag.NewFlagSet("peergroup check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	group := fs.String("group", "peergroup-check", "group label of the probe pod")
	output := outputFlag(fs)
	positional, err := parseAnywhere(fs, args)
	if err != nil {
		return 2, err
	}
	if len(positional) > 0 {
		return 2, fmt.Errorf("check: unexpected arguments %q", positional)
	}
	if err := checkOutput(*output); err != nil {
		return 2, err
	}
	if err := kube.refuseAll("check"); err != nil {
		return 2, err
	}
	cfg, err := restConfig()
	if err != nil {
		return 2, err
	}
	// -n, else the context's namespace, else default; the probe pod is
	// dry-run there (it needs create pods there).
	namespace, _, err := kube.namespace()
	if err != nil {
		return 2, err
	}
	// Server-side dry run: the webhook answers (peergroup creates no
	// Service for a dry run: sideEffects NoneOnDryRun) and nothing is
	// stored.
	result := probe.Run(ctx, cfg, namespace, *group)
	if err := printCheck(stdout, result, *output); err != nil {
		return 2, err
	}
	switch result.Outcome {
	case probe.Reachable:
		return 0, nil
	case probe.Error:
		return 2, nil
	}
	return 1, nil
}

func printCheck(w io.Writer, r probe.Result, output string) error {
	if output == "json" {
		return writeJSON(w, r)
	}
	fmt.Fprintf(w, "%s: %s\n", r.Outcome, r.Detail)
	for _, h := range r.Hints {
		fmt.Fprintf(w, "  - %s\n", h)
	}
	return nil
}
