// Command peergroup-webhook is the peer-group injection admission webhook.
// `peergroup-webhook --version` prints the version it was built as.
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/peergroup/peergroup/webhook/server"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := run(ctrl.SetupSignalHandler(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "peergroup-webhook:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	// --version is answered before the server's flags are parsed, so it
	// needs neither the webhook's environment nor valid options.
	if isVersionFlag(args) {
		return printVersion(stdout, args)
	}
	opts, err := server.ParseFlags(args, os.Getenv, version, os.Stderr)
	if err != nil {
		return err
	}
	return server.Run(ctx, opts)
}

// isVersionFlag reports whether the command line asks for the version;
// both spellings the flag package accepts count.
func isVersionFlag(args []string) bool {
	return len(args) > 0 && (args[0] == "--version" || args[0] == "-version")
}

// printVersion writes the stamped version, alone on its line so scripts can
// compare it with an image tag.
func printVersion(stdout io.Writer, args []string) error {
	if len(args) > 1 {
		return fmt.Errorf("%s takes no other arguments, got %q", args[0], args[1:])
	}
	_, err := fmt.Fprintln(stdout, version)
	return err
}
