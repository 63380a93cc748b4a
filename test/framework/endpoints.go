package framework

import (
	"context"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Endpoints stands in for a Service's endpoints in front of webhook
// replicas: it polls each replica's /readyz every period, as the kubelet's
// probe and the endpoints controller together would (only much faster),
// and lists the replicas whose last probe passed.
type Endpoints struct {
	period time.Duration
	ctx    context.Context
	stop   context.CancelFunc
	client *http.Client

	mu    sync.Mutex
	ready map[string]bool // serving address -> ready
	order []string
	wg    sync.WaitGroup
}

// WatchEndpoints starts an empty set of endpoints probed every period.
func WatchEndpoints(period time.Duration) *Endpoints {
	ctx, stop := context.WithCancel(context.Background())
	return &Endpoints{
		period: period, ctx: ctx, stop: stop, ready: map[string]bool{},
		client: &http.Client{Timeout: period, Transport: &http.Transport{DisableKeepAlives: true}},
	}
}

// Add probes the webhook from now on; it is an endpoint once ready.
func (e *Endpoints) Add(w *Webhook) {
	e.mu.Lock()
	e.ready[w.Addr()] = false
	e.order = append(e.order, w.Addr())
	e.mu.Unlock()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		t := time.NewTicker(e.period)
		defer t.Stop()
		for {
			ok := e.probe(w.ProbeAddr)
			e.mu.Lock()
			e.ready[w.Addr()] = ok
			e.mu.Unlock()
			select {
			case <-e.ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

func (e *Endpoints) probe(addr string) bool {
	req, err := http.NewRequestWithContext(e.ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
	if err != nil {
		return false
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Ready lists the serving addresses of the replicas that passed their last
// probe, in the order they were added.
func (e *Endpoints) Ready() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.DeleteFunc(slices.Clone(e.order), func(a string) bool { return !e.ready[a] })
}

// Stop ends the probes.
func (e *Endpoints) Stop() {
	e.stop()
	e.wg.Wait()
}

// StartEndpointsProxy listens on 127.0.0.1 and forwards each new
// connection to the next ready endpoint in turn, as kube-proxy forwards a
// Service's: a connection already open stays with its replica until one
// side closes it, whatever that replica's readiness since; with no ready
// endpoint a connection is closed at once.
func StartEndpointsProxy(e *Endpoints) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, endpoints: e, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}
