// Command pause is the real node's sandbox ("pause") container: it holds
// the pod's namespaces, reaps the zombies of processes that share its PID
// namespace, and exits on SIGTERM or SIGINT, like Kubernetes' own pause.
// It is the project's own so the node needs no image from beyond the
// machine.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}
