package framework

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Creations creates member pods through the API server while something
// happens to the webhook (a rollout, a lost node, a drain), retrying each
// that admission refused, and counts and times the refusals. The pods are
// bound to no node: admission is all they are for.
type Creations struct {
	ctx           context.Context
	c             client.Client
	ns, group     string
	prefix        string
	done, stopped chan struct{}
	stop          sync.Once

	mu           sync.Mutex
	created      []*corev1.Pod
	refused      int
	longest      time.Duration
	firstRefusal string
	other        []string
}

// CreationsLabel is on every pod a Creations loop made, with its prefix.
const CreationsLabel = "test.peergroup/creations"

// CreationsOptions says where the pods go and how many are created at
// once.
type CreationsOptions struct {
	// Namespace must exist; Group is the pods' peergroup.dev/group label.
	Namespace, Group string
	// Prefix names the pods (prefix-worker-n); unique per namespace.
	Prefix string
	// Workers create in parallel, each one pod at a time with a 100 ms
	// pause: more workers put more admissions in flight at the moment a
	// replica stops. 1 if 0.
	Workers int
}

// StartCreations starts creating; Finish stops. The loop also stops when
// ctx ends or t's test does (a scenario that fails midway).
func StartCreations(ctx context.Context, t testing.TB, c client.Client, o CreationsOptions) *Creations {
	cr := &Creations{ctx: ctx, c: c, ns: o.Namespace, group: o.Group, prefix: o.Prefix, done: make(chan struct{}), stopped: make(chan struct{})}
	var wg sync.WaitGroup
	for w := range max(o.Workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cr.run(w)
		}()
	}
	go func() {
		wg.Wait()
		close(cr.stopped)
	}()
	t.Cleanup(cr.halt)
	return cr
}

func (cr *Creations) halt() {
	cr.stop.Do(func() { close(cr.done) })
	<-cr.stopped
}

func (cr *Creations) stopping() bool {
	select {
	case <-cr.done:
		return true
	default:
		return cr.ctx.Err() != nil
	}
}

func (cr *Creations) run(worker int) {
	for i := 0; !cr.stopping(); i++ {
		p := &corev1.Pod{}
		p.Name, p.Namespace = fmt.Sprintf("%s-%d-%d", cr.prefix, worker, i), cr.ns
		p.Labels = map[string]string{"peergroup.dev/group": cr.group, CreationsLabel: cr.prefix}
		p.Spec.Containers = []corev1.Container{{Name: "c", Image: "ghcr.io/peergroup/peergroup:never-pulled"}}
		p.Spec.NodeName = "nowhere"
		var refusedSince time.Time
		for !cr.stopping() {
			ctx, cancel := context.WithTimeout(cr.ctx, 30*time.Second)
			err := cr.c.Create(ctx, p)
			cancel()
			if apierrors.IsAlreadyExists(err) {
				// An attempt whose answer was lost created it: as admitted.
				got := &corev1.Pod{}
				if err = cr.c.Get(cr.ctx, client.ObjectKeyFromObject(p), got); err == nil {
					p = got
				}
			}
			if err == nil {
				cr.mu.Lock()
				cr.created = append(cr.created, p)
				if !refusedSince.IsZero() {
					cr.longest = max(cr.longest, time.Since(refusedSince))
				}
				cr.mu.Unlock()
				break
			}
			cr.mu.Lock()
			if !strings.Contains(err.Error(), "failed calling webhook") {
				if !cr.stopping() {
					cr.other = append(cr.other, err.Error())
				}
			} else {
				if refusedSince.IsZero() {
					refusedSince = time.Now()
				}
				if cr.firstRefusal == "" {
					cr.firstRefusal = err.Error()
				}
				cr.refused++
			}
			cr.mu.Unlock()
			time.Sleep(100 * time.Millisecond)
		}
		select {
		case <-cr.done:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// CreationResult is what a Creations loop saw.
type CreationResult struct {
	// Created are the pods as admitted.
	Created []*corev1.Pod
	// Refused counts creations admission refused ("failed calling
	// webhook"); Longest is the longest time one pod took to be admitted
	// after its first refusal.
	Refused      int
	Longest      time.Duration
	FirstRefusal string
	// Other are errors that are not an admission's refusal.
	Other []string
}

// Finish stops the loop and returns what it saw.
func (cr *Creations) Finish() CreationResult {
	cr.halt()
	cr.mu.Lock()
	defer cr.mu.Unlock()
	return CreationResult{Created: cr.created, Refused: cr.refused, Longest: cr.longest, FirstRefusal: cr.firstRefusal, Other: cr.other}
}

func (r CreationResult) String() string {
	s := fmt.Sprintf("%d member pods created, %d creations refused, longest stretch of refusals %s", len(r.Created), r.Refused, r.Longest.Round(100*time.Millisecond))
	if r.FirstRefusal != "" {
		s += "; first refusal: " + r.FirstRefusal
	}
	return s
}

// Uninjected names the created pods admitted without seed-discovery.
func (r CreationResult) Uninjected() []string {
	var out []string
	for _, p := range r.Created {
		if !slices.ContainsFunc(p.Spec.InitContainers, func(c corev1.Container) bool { return c.Name == "seed-discovery" }) {
			out = append(out, p.Name)
		}
	}
	return out
}

// Require fails t when a created pod was not injected, when nothing was
// created, when a creation failed other than by admission, or, with
// noRefusals, when any creation was refused.
func (r CreationResult) Require(t testing.TB, noRefusals bool) {
	t.Helper()
	if len(r.Created) == 0 {
		t.Error("no member pod was created")
	}
	if u := r.Uninjected(); len(u) > 0 {
		t.Errorf("admitted without seed-discovery: %v", u)
	}
	if len(r.Other) > 0 {
		t.Errorf("creations failed other than by admission: %d, first: %s", len(r.Other), r.Other[0])
	}
	if noRefusals && r.Refused > 0 {
		t.Errorf("%s: want no refusal", r)
	}
}
