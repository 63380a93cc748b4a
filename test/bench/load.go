package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"time"
)

// result is one measured series.
type result struct {
	count     int
	failures  int
	elapsed   time.Duration
	latencies []time.Duration
}

func (r *result) add(o result) {
	r.count += o.count
	r.failures += o.failures
	r.elapsed += o.elapsed
	r.latencies = append(r.latencies, o.latencies...)
}

func (r result) rate() float64 {
	if r.elapsed == 0 {
		return 0
	}
	return float64(r.count) / r.elapsed.Seconds()
}

func (r result) pct(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	l := slices.Clone(r.latencies)
	slices.Sort(l)
	i := int(p / 100 * float64(len(l)-1))
	return l[i]
}

func (r result) mean() time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	var sum time.Duration
	for _, l := range r.latencies {
		sum += l
	}
	return sum / time.Duration(len(r.latencies))
}

// keepAliveClient trusts ca and keeps up to conns connections open, as the
// API server does towards a webhook.
func keepAliveClient(ca []byte, conns int) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
	}}
}

// hammer posts body to url from c goroutines for d.
func hammer(ctx context.Context, client *http.Client, url string, body []byte, c int, d time.Duration) result {
	var mu sync.Mutex
	total := result{}
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := result{}
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t0 := time.Now()
				resp, err := client.Post(url, "application/json", bytes.NewReader(body))
				if err != nil {
					local.failures++
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					local.failures++
					continue
				}
				local.count++
				local.latencies = append(local.latencies, time.Since(t0))
			}
			mu.Lock()
			total.add(local)
			mu.Unlock()
		}()
	}
	wg.Wait()
	total.elapsed = time.Since(start)
	return total
}

func hammerOnce(ctx context.Context, client *http.Client, url string, body []byte) result {
	t0 := time.Now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return result{failures: 1}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return result{failures: 1}
	}
	return result{count: 1, latencies: []time.Duration{time.Since(t0)}}
}

func runtimeCPU() int { return runtime.GOMAXPROCS(0) }
