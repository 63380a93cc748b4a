package framework

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Registry is an in-memory OCI registry on 127.0.0.1 (go-containerregistry's,
// the one `crane registry serve` runs): the real node pulls every image from
// it over plain HTTP, so pulls are real and nothing leaves the machine.
type Registry struct {
	// Host is 127.0.0.1:PORT, the registry part of every image reference.
	Host string
	srv  *http.Server
	done chan struct{}
}

// StartRegistry serves an empty registry on a free loopback port.
func StartRegistry() (*Registry, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("registry listen: %w", err)
	}
	r := &Registry{
		Host: ln.Addr().String(),
		srv:  &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: 10 * time.Second},
		done: make(chan struct{}),
	}
	go func() {
		defer close(r.done)
		if err := r.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Printf("registry: %v", err)
		}
	}()
	return r, nil
}

// Push stores img as repoTag ("nats:2.15.2") and returns its full
// reference by digest, so a pod names exactly the bytes pushed.
func (r *Registry) Push(ctx context.Context, repoTag string, img v1.Image) (string, error) {
	tag, err := name.NewTag(r.Host+"/"+repoTag, name.Insecure)
	if err != nil {
		return "", fmt.Errorf("image name %q: %w", repoTag, err)
	}
	if err := remote.Write(tag, img, remote.WithContext(ctx)); err != nil {
		return "", fmt.Errorf("push %s: %w", tag, err)
	}
	digest, err := img.Digest()
	if err != nil {
		return "", err
	}
	return tag.String() + "@" + digest.String(), nil
}

// Stop closes the registry.
func (r *Registry) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = r.srv.Shutdown(ctx)
	<-r.done
}
