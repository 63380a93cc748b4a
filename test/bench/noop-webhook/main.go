// Command noop-webhook is the performance baseline: a controller-runtime
// webhook server with the same server settings as peergroup (TLS 1.2+,
// HTTP/1.1, certwatcher) whose handler allows every pod unchanged (or, with
// --add-label, adds one label: the smallest mutation).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"gomodules.xyz/jsonpatch/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/peergroup/peergroup/webhook/server"
)

func main() {
	if err := run(ctrl.SetupSignalHandler(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "noop-webhook:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("noop-webhook", flag.ContinueOnError)
	host := fs.String("host", "127.0.0.1", "bind address")
	port := fs.Int("port", 9443, "port")
	certDir := fs.String("cert-dir", "", "directory with tls.crt and tls.key")
	addLabel := fs.Bool("add-label", false, "answer with a one-label patch: the cheapest possible mutation, to tell the API server's cost of any mutation from peergroup's")
	if err := fs.Parse(args); err != nil {
		return err
	}
	srv := ctrlwebhook.NewServer(ctrlwebhook.Options{Host: *host, Port: *port, CertDir: *certDir, TLSOpts: server.TLSOptions()})
	srv.Register("/mutate-v1-pod", &admission.Webhook{Handler: admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
		if *addLabel {
			return admission.Patched("", jsonpatch.JsonPatchOperation{Operation: "add", Path: "/metadata/labels/bench-mutated", Value: "true"})
		}
		return admission.Allowed("")
	})})
	return srv.Start(ctx)
}
