// Command peergroup-webhook is the peer-group injection admission webhook.
package main

import (
	"context"
	"fmt"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/peergroup/peergroup/webhook/server"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := run(ctrl.SetupSignalHandler(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "peergroup-webhook:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	opts, err := server.ParseFlags(args, os.Getenv, version, os.Stderr)
	if err != nil {
		return err
	}
	return server.Run(ctx, opts)
}
