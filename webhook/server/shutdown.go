package server

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
)

// shutdown is the webhook's graceful stop (docs/install.md, "Upgrades without
// refusals"). On SIGTERM the pod is still in its Service's endpoints, and
// the API server still holds keep-alive connections to it, so the server
// must not stop accepting at once:
//
//  1. readiness fails (the "shutting-down" check), and every answer carries
//     Connection: close, so the API server opens its next connection
//     through the Service, to a replica that stays;
//  2. the server keeps serving for the shutdown delay, the time endpoints
//     and kube-proxy take to drop the pod;
//  3. then the manager stops: the listener closes, idle connections are
//     closed, and admissions in flight finish, bounded by the drain
//     timeout (the manager's GracefulShutdownTimeout);
//  4. the process exits 0, or 1 if the drain overran.
type shutdown struct {
	delay time.Duration
	// draining is set from the SIGTERM on; stopped once the manager is told
	// to stop.
	draining, stopped atomic.Bool
}

// start returns the context the manager runs on: cancelled delay after
// ctx is (or never, if the manager ends first: the returned cancel).
func (s *shutdown) start(ctx context.Context, log logr.Logger) (context.Context, context.CancelFunc) {
	mgrCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		select {
		case <-ctx.Done():
		case <-mgrCtx.Done():
			return
		}
		s.draining.Store(true)
		log.Info("shutdown requested: readiness failing, serving on for the shutdown delay", "delay", s.delay)
		t := time.NewTimer(s.delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-mgrCtx.Done():
		}
		log.Info("shutdown delay over: no new connections, draining admissions in flight")
		s.stopped.Store(true)
		stop()
	}()
	return mgrCtx, stop
}

// readyCheck fails from the SIGTERM on, so endpoints drop the pod while it
// still serves.
func (s *shutdown) readyCheck(*http.Request) error {
	if s.draining.Load() {
		return errors.New("shutting down")
	}
	return nil
}

// wrap serves h with two shutdown rules. While draining, every answer
// closes its connection, so no keep-alive connection outlives the delay
// idle (closing an idle one can race with the API server sending on it).
// And an admission in flight when the manager stops finishes: the webhook
// server's request contexts derive from the manager's context
// (controller-runtime's BaseContext), which is cancelled at that moment and
// would cut the admission's API calls; the request keeps its values and
// its own deadline (the budget in ?timeout=) but not that cancellation. A
// client going away still cancels it until then.
func (s *shutdown) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.draining.Load() {
			w.Header().Set("Connection", "close")
		}
		ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
		defer cancel()
		unhook := context.AfterFunc(r.Context(), func() {
			if !s.stopped.Load() {
				cancel()
			}
		})
		defer unhook()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}
