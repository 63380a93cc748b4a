// Command seed-discovery is peergroup's init container: it watches the
// group's headless Service in DNS until the view is stable, picks seeds
// deterministically and writes them to /var/run/peergroup.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/peergroup/peergroup/discovery"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(discovery.Code(err))
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	resolvConf, _ := os.ReadFile("/etc/resolv.conf")
	cfg, err := discovery.LoadConfig(args, os.Getenv, resolvConf)
	if err != nil {
		report(stderr, "/dev/termination-log", err)
		return err
	}
	r := &discovery.Runner{Config: cfg, Resolver: &discovery.Resolver{Server: cfg.DNSServer}, Log: stderr}
	if _, err := r.Run(ctx); err != nil {
		report(stderr, cfg.TerminationLog, err)
		return err
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
