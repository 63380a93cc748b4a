package framework

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/peergroup/peergroup/internal/ociimage"
)

// busybox is Debian's static busybox (package busybox-static): the shell
// and tools of the NATS image, as the official image's Alpine base gives
// them.
const busybox = "/bin/busybox"

// busyboxApplets are the commands the NATS image's shell script and the
// tests use.
var busyboxApplets = []string{"sh", "cat", "tr", "sed", "seq", "nc", "timeout", "date", "sleep", "echo", "ls", "id", "touch", "grep", "ip", "kill"}

// NodeImages are the image references pushed to the node's registry.
type NodeImages struct {
	// Peergroup is the product image (`make image`): webhook and
	// seed-discovery.
	Peergroup string
	// Repository and Tag name Peergroup the way the chart's image values do.
	Repository, Tag string
	// NATS is nats-server (built from its module) with a busybox shell.
	NATS string
}

// PushNodeImages builds the peergroup image like `make image` and the NATS
// image, and pushes both to the node's registry.
func PushNodeImages(ctx context.Context, n *RealNode) (NodeImages, error) {
	var imgs NodeImages
	binDir := filepath.Join(n.Dir, "build", "peergroup")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return imgs, err
	}
	if err := ociimage.BuildBinaries(binDir, "dev", ""); err != nil {
		return imgs, err
	}
	pg, err := ociimage.Build(ociimage.Peergroup(binDir, "dev"))
	if err != nil {
		return imgs, err
	}
	imgs.Repository, imgs.Tag = n.Registry.Host+"/peergroup", "dev"
	if imgs.Peergroup, err = n.Registry.Push(ctx, "peergroup:dev", pg); err != nil {
		return imgs, err
	}
	if _, err := os.Stat(busybox); err != nil {
		return imgs, fmt.Errorf("%s missing: apt-get install busybox-static", busybox)
	}
	files := map[string]ociimage.File{
		"/usr/local/bin/nats-server": {Source: filepath.Join(n.assets, "nats-server"), Mode: 0o755},
		"/bin/busybox":               {Source: busybox, Mode: 0o755},
		"/tmp/.keep":                 {Data: nil, Mode: 0o644},
	}
	for _, a := range busyboxApplets {
		files["/bin/"+a] = ociimage.File{Link: "busybox"}
	}
	nats, err := ociimage.Build(ociimage.Spec{Files: files, Entrypoint: []string{"/usr/local/bin/nats-server"}, User: ociimage.NonrootUser})
	if err != nil {
		return imgs, err
	}
	if imgs.NATS, err = n.Registry.Push(ctx, "nats:2.15.2", nats); err != nil {
		return imgs, err
	}
	// The names manifests use as written, resolved at this registry
	// (MirroredRegistries): the chart's default image and the NATS example's.
	appVersion, err := ChartAppVersion()
	if err != nil {
		return imgs, err
	}
	if _, err := n.Registry.Push(ctx, "peergroup/peergroup:"+appVersion, pg); err != nil {
		return imgs, err
	}
	if _, err := n.Registry.Push(ctx, "library/nats:2.15.2-alpine", nats); err != nil {
		return imgs, err
	}
	return imgs, nil
}
