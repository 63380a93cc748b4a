// Command noop-webhook is the performance baseline: a controller-runtime
// webhook server with the same server settings as peergroup (TLS 1.2+,
// HTTP/1.1, certwatcher) whose handler allows every pod unchanged; with
// --add-label it adds one label (the smallest mutation), with --patch-dir it
// answers a pod with a patch recorded beforehand (peergroup's own answer for
// that pod, so the API server does exactly the work peergroup's patch costs
// while the webhook does nothing).
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/peergroup/peergroup/webhook"
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
	patchDir := fs.String("patch-dir", "", "answer a pod named KEY-… with the JSON patch in DIR/KEY.json (read when first needed; a pod without one is allowed unchanged)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var handler admission.HandlerFunc
	switch {
	case *addLabel:
		handler = func(context.Context, admission.Request) admission.Response {
			return admission.Patched("", jsonpatch.JsonPatchOperation{Operation: "add", Path: "/metadata/labels/bench-mutated", Value: "true"})
		}
	case *patchDir != "":
		handler = (&recordedPatches{dir: *patchDir, byKey: map[string][]byte{}}).answer
	default:
		handler = func(context.Context, admission.Request) admission.Response { return admission.Allowed("") }
	}
	srv := ctrlwebhook.NewServer(ctrlwebhook.Options{Host: *host, Port: *port, CertDir: *certDir, TLSOpts: server.TLSOptions()})
	srv.Register(webhook.Path, &admission.Webhook{Handler: handler})
	// Registered like peergroup's two phases, so a baseline pays the same
	// second call the product does.
	srv.Register(webhook.ValidatePath, &admission.Webhook{Handler: admission.HandlerFunc(func(context.Context, admission.Request) admission.Response { return admission.Allowed("") })})
	return srv.Start(ctx)
}

// recordedPatches serves patches written by the bench after it asked
// peergroup for them.
type recordedPatches struct {
	dir   string
	mu    sync.Mutex
	byKey map[string][]byte
}

func (r *recordedPatches) answer(_ context.Context, req admission.Request) admission.Response {
	key, _, _ := strings.Cut(req.Name, "-")
	r.mu.Lock()
	patch, ok := r.byKey[key]
	if !ok {
		data, err := os.ReadFile(filepath.Join(r.dir, key+".json"))
		if err != nil && !os.IsNotExist(err) {
			r.mu.Unlock()
			return admission.Errored(http.StatusInternalServerError, err)
		}
		if err == nil {
			patch, ok = data, true
			r.byKey[key] = data
		}
	}
	r.mu.Unlock()
	if !ok {
		return admission.Allowed("")
	}
	pt := admissionv1.PatchTypeJSONPatch
	return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: true, Patch: patch, PatchType: &pt}}
}
