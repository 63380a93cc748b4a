// Command seed-discovery is peergroup's init container: it watches the
// group's headless Service in DNS until the view is stable, picks seeds
// deterministically and writes them to /var/run/peergroup. With a refresh
// interval it is a native sidecar that then keeps the peer files current
// until the pod stops; `seed-discovery decided [--output-dir DIR]` is its
// startup probe (exit 0 once the seeds are written); `seed-discovery
// --version` prints the version it was built as.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/peergroup/peergroup/contract"
	"github.com/peergroup/peergroup/discovery"
)

// version is stamped at build time with -ldflags "-X main.version=...",
// as for the webhook: both binaries ship in one image.
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(discovery.Code(err))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if i := decidedAt(args); i >= 0 {
		// The flags before it belong to the command the webhook was
		// given (--seed-discovery-command), which the probe repeats.
		return decided(args[i+1:])
	}
	// Before LoadConfig: the version needs none of the pod's environment.
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version") {
		err := printVersion(stdout, args)
		if err != nil {
			report(stderr, "", err) // a mistyped command line, not a pod's failure
		}
		return err
	}
	resolvConf, _ := os.ReadFile("/etc/resolv.conf")
	cfg, err := discovery.LoadConfig(args, os.Getenv, resolvConf)
	if err != nil {
		report(stderr, "/dev/termination-log", err)
		return err
	}
	r := &discovery.Runner{Config: cfg, Resolver: &discovery.Resolver{Server: cfg.DNSServer}, Log: stderr}
	d, resumed := r.Resume()
	if !resumed {
		d, err = r.Run(ctx)
	}
	if err == nil && cfg.Refresh > 0 {
		err = r.Keep(ctx, d)
	}
	if err != nil {
		report(stderr, cfg.TerminationLog, err)
	}
	return err
}

// decidedAt is the index of the `decided` subcommand, after any flags of
// the main command (`seed-discovery --dns-server=… decided …`, as the
// probe is built from --seed-discovery-command), or -1. Every flag of the
// main command takes a value, so a flag without "=" consumes the next
// argument: `--pod-name decided` names a pod, it is no subcommand.
func decidedAt(args []string) int {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "decided":
			return i
		case a == "--" || !strings.HasPrefix(a, "-"):
			return -1
		case !strings.Contains(a, "="):
			i++ // its value
		}
	}
	return -1
}

// decided is the sidecar's startup probe: success once the seeds file
// exists, so the kubelet starts the app only after the first decision.
func decided(args []string) error {
	fs := flag.NewFlagSet("seed-discovery decided", flag.ContinueOnError)
	dir := fs.String("output-dir", contract.SeedsMountPath, "directory seed-discovery writes to")
	if err := fs.Parse(args); err != nil {
		return &discovery.ConfigError{Err: err}
	}
	if fs.NArg() > 0 {
		return &discovery.ConfigError{Err: fmt.Errorf("decided: unexpected arguments %q", fs.Args())}
	}
	if !discovery.Decided(*dir) {
		return &discovery.ExitError{Code: discovery.ExitInterrupted, Err: errors.New("no decision yet")}
	}
	return nil
}

// printVersion writes the stamped version alone on its line; anything after
// the flag is a usage error (exit 2), as for the other flags.
func printVersion(stdout io.Writer, args []string) error {
	if len(args) > 1 {
		return &discovery.ConfigError{Err: fmt.Errorf("%s takes no other arguments, got %q", args[0], args[1:])}
	}
	if _, err := fmt.Fprintln(stdout, version); err != nil {
		return fmt.Errorf("print version: %w", err)
	}
	return nil
}

// report puts the reason where `kubectl logs` and `kubectl describe` show it.
func report(stderr io.Writer, terminationLog string, err error) {
	msg := fmt.Sprintf("seed-discovery: exit %d: %v", discovery.Code(err), err)
	fmt.Fprintln(stderr, msg)
	if terminationLog == "" {
		return
	}
	// The kubelet creates the file; never create one outside a container.
	if f, err := os.OpenFile(terminationLog, os.O_WRONLY|os.O_TRUNC, 0); err == nil {
		_, _ = f.WriteString(msg + "\n")
		_ = f.Close()
	}
}
