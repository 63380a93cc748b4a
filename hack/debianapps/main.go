// Command debianapps downloads and extracts, into .cache/debian, the
// Debian packages of the applications the real-node suite and `make demo
// APP=...` run (test/framework DebianApps), so the tests themselves reach
// no network. With names, only those applications.
//
//	go run ./hack/debianapps [redis rabbitmq jgroups serf]
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/peergroup/peergroup/test/framework"
)

func main() {
	names := os.Args[1:]
	if len(names) == 0 {
		for name := range framework.DebianApps {
			names = append(names, name)
		}
		slices.Sort(names)
	}
	cache := filepath.Join(framework.RepoRoot(), ".cache", "debian")
	say := func(f string, a ...any) { fmt.Printf(f+"\n", a...) }
	for _, name := range names {
		app, ok := framework.DebianApps[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "debianapps: no application %q\n", name)
			os.Exit(2)
		}
		root, err := framework.ExtractDebian(context.Background(), cache, app.Name, app.Packages, true, say)
		if err != nil {
			fmt.Fprintln(os.Stderr, "debianapps:", err)
			os.Exit(1)
		}
		fmt.Printf("debian %s: %d packages in %s\n", name, len(root.Packages), root.Dir)
	}
}
