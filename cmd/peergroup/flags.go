package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"slices"

	"github.com/peergroup/peergroup/internal/release"
	"github.com/peergroup/peergroup/webhook/admit"
)

func newFlagSet(command string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("peergroup "+command, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// outputFlag is --output of the commands that read the cluster (kubectl's
// connection flags are kubeFlags, taken before a command parses).
func outputFlag(fs *flag.FlagSet) *string {
	output := fs.String("output", "text", "text or json")
	fs.StringVar(output, "o", "text", "text or json (--output)")
	return output
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

// checkOutput refuses an --output other than text or json.
func checkOutput(output string) error {
	if output != "text" && output != "json" {
		return fmt.Errorf("--output %q: want text or json", output)
	}
	return nil
}

// writeJSON writes v indented, ending with a newline: every command's
// --output json.
func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}
