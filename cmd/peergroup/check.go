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
	namespace := fs.String("n", "default", "namespace to dry-run the probe pod in (needs create pods there)")
	group := fs.String("group", "peergroup-check", "group label of the probe pod")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig (default: $KUBECONFIG, ~/.kube/config)")
	output := fs.String("output", "text", "text or json")
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
	cfg, err := loadConfig(*kubeconfig)
	if err != nil {
		return 2, err
	}
	// Server-side dry run: the webhook answers (peergroup creates no
	// Service for a dry run: sideEffects NoneOnDryRun) and nothing is
	// stored.
	result := probe.Run(ctx, cfg, *namespace, *group)
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
