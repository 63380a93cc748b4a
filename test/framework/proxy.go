package framework

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy is a loopback TCP proxy for fault tests: put between a component
// and the API server (or in front of webhook replicas) it can delay
// traffic, refuse connections and cut the ones in flight, which is what a
// component sees when the API server is slow, down or restarted.
type Proxy struct {
	ln      net.Listener
	targets []string
	// endpoints, when set, chooses the targets per connection instead.
	endpoints *Endpoints
	next      atomic.Uint64
	delay     atomic.Int64
	refuse    atomic.Bool

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// StartProxy listens on 127.0.0.1 and forwards each connection to the next
// target in turn (round robin, as a Service's endpoints would be used).
func StartProxy(targets ...string) (*Proxy, error) {
	return StartProxyOn("127.0.0.1:0", targets...)
}

// StartProxyOn is StartProxy listening on listen.
func StartProxyOn(listen string, targets ...string) (*Proxy, error) {
	if len(targets) == 0 {
		return nil, errors.New("proxy needs at least one target")
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, targets: targets, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

// Addr is host:port to dial instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetDelay holds every chunk of data, in both directions, for d.
func (p *Proxy) SetDelay(d time.Duration) { p.delay.Store(int64(d)) }

// Refuse makes new connections fail (closed at once) while on, and cuts
// every open connection when turned on: the API server going away.
func (p *Proxy) Refuse(on bool) {
	p.refuse.Store(on)
	if on {
		p.Cut()
	}
}

// Cut closes every open connection; new ones are accepted as configured.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// Close stops the proxy and cuts everything.
func (p *Proxy) Close() {
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.refuse.Load() {
			c.Close()
			continue
		}
		targets := p.targets
		if p.endpoints != nil {
			targets = p.endpoints.Ready()
		}
		if len(targets) == 0 {
			c.Close() // no endpoints: the connection is refused
			continue
		}
		target := targets[p.next.Add(1)%uint64(len(targets))]
		p.wg.Add(1)
		go p.pipe(c, target)
	}
}

func (p *Proxy) track(c net.Conn, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
}

func (p *Proxy) pipe(client net.Conn, target string) {
	defer p.wg.Done()
	server, err := net.Dial("tcp", target)
	if err != nil {
		client.Close()
		return
	}
	p.track(client, true)
	p.track(server, true)
	defer func() {
		p.track(client, false)
		p.track(server, false)
	}()
	done := make(chan struct{}, 2)
	copyDelayed := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				if d := time.Duration(p.delay.Load()); d > 0 {
					time.Sleep(d)
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		dst.Close()
		src.Close()
		done <- struct{}{}
	}
	go copyDelayed(server, client)
	go copyDelayed(client, server)
	<-done
	<-done
}
