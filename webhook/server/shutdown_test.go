package server

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

// SIGTERM fails readiness at once, and the manager's context ends only
// after the shutdown delay.
func TestShutdownDelaysTheManagerStop(t *testing.T) {
	const delay = 300 * time.Millisecond
	sd := &shutdown{delay: delay}
	ctx, sigterm := context.WithCancel(context.Background())
	mgrCtx, stop := sd.start(ctx, logr.Discard())
	defer stop()
	if err := sd.readyCheck(nil); err != nil {
		t.Fatalf("ready before SIGTERM: %v", err)
	}
	start := time.Now()
	sigterm()
	deadline := time.Now().Add(time.Second)
	for sd.readyCheck(nil) == nil {
		if time.Now().After(deadline) {
			t.Fatal("readiness still passing after SIGTERM")
		}
		time.Sleep(time.Millisecond)
	}
	if mgrCtx.Err() != nil {
		t.Fatal("manager stopped before the shutdown delay")
	}
	<-mgrCtx.Done()
	if took := time.Since(start); took < delay {
		t.Errorf("manager stopped %s after SIGTERM, before the %s delay", took, delay)
	}
	if !sd.stopped.Load() {
		t.Error("stopped not set when the manager's context ended")
	}
}

// A manager that ends by itself (an error) ends the shutdown goroutine
// without touching readiness.
func TestShutdownWithoutSignal(t *testing.T) {
	sd := &shutdown{delay: time.Hour}
	mgrCtx, stop := sd.start(context.Background(), logr.Discard())
	stop()
	<-mgrCtx.Done()
	time.Sleep(10 * time.Millisecond)
	if sd.draining.Load() {
		t.Error("draining without a SIGTERM")
	}
}

// While draining, answers close their connections; before, they keep them.
func TestShutdownClosesConnectionsWhileDraining(t *testing.T) {
	sd := &shutdown{}
	srv := httptest.NewServer(sd.wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})))
	defer srv.Close()
	get := func() *http.Response {
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := get(); resp.Close {
		t.Error("connection closed before the shutdown")
	}
	sd.draining.Store(true)
	if resp := get(); !resp.Close {
		t.Errorf("draining answer kept its connection: %v", resp.Header)
	}
}

// An admission in flight when the server's base context is cancelled (the
// manager stopping) keeps its context; before that, a client going away
// cancels it.
func TestShutdownKeepsInFlightContexts(t *testing.T) {
	for _, tc := range []struct {
		name       string
		stopped    bool
		wantCancel bool
	}{
		{"manager stopping", true, false},
		{"client gone while serving", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sd := &shutdown{}
			base, cancelBase := context.WithCancel(context.Background())
			defer cancelBase()
			entered, result := make(chan struct{}), make(chan error, 1)
			srv := httptest.NewUnstartedServer(sd.wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				close(entered)
				select {
				case <-r.Context().Done():
					result <- r.Context().Err()
				case <-time.After(500 * time.Millisecond):
					result <- nil
				}
			})))
			srv.Config.BaseContext = func(net.Listener) context.Context { return base }
			srv.Start()
			defer srv.Close()
			go func() {
				resp, err := http.Post(srv.URL, "application/json", strings.NewReader("{}"))
				if err == nil {
					resp.Body.Close()
				}
			}()
			<-entered
			sd.stopped.Store(tc.stopped)
			cancelBase()
			if err := <-result; (err != nil) != tc.wantCancel {
				t.Errorf("request context error %v, want cancelled %v", err, tc.wantCancel)
			}
		})
	}
}

func TestShutdownFlags(t *testing.T) {
	o, err := ParseFlags(nil, env(nil), "v", &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if o.ShutdownDelay != 10*time.Second || o.DrainTimeout != 15*time.Second {
		t.Errorf("defaults: delay %s, drain %s", o.ShutdownDelay, o.DrainTimeout)
	}
	for want, args := range map[string][]string{
		"--shutdown-delay -1s must not be negative": {"--shutdown-delay=-1s"},
		"--drain-timeout 500ms must be at least 1s": {"--drain-timeout=500ms"},
	} {
		if _, err := ParseFlags(args, env(nil), "v", &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: error %v, want %q", args, err, want)
		}
	}
	if o, err := ParseFlags([]string{"--shutdown-delay=0s"}, env(nil), "v", &bytes.Buffer{}); err != nil || o.ShutdownDelay != 0 {
		t.Errorf("--shutdown-delay=0s: %v, %s", err, o.ShutdownDelay)
	}
}
