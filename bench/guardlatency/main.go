// Command guardlatency measures the latency the guard adds at a fixed
// request rate: the same paced load goes, in one run, through a plain
// httputil.ReverseProxy and through the guard's proxy (as custos guard
// builds it) in front of the same upstream, over loopback.
//
//	go run ./bench/guardlatency [-rate 5000] [-duration 10s]
//
// The load is open-loop: request i is due at start + i/rate, and its
// latency is measured from when it was due, so a proxy that falls behind
// is charged for the queue it builds (no coordinated omission). A second of
// the same load runs first, unmeasured, to open connections. Each request
// carries a staff token custos issued (client credentials) for a
// route bound to the path's customer, with a purpose; the guard verifies
// it (receipt cached until the revocation epoch moves) and makes its
// access event durable before releasing the response. The load generator,
// both proxies, the upstream and custos share the machine.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/custos-dev/custos/guard"
	"github.com/custos-dev/custos/internal/clients"
	"github.com/custos-dev/custos/internal/node"
)

func main() {
	rate := flag.Int("rate", 5000, "requests per second")
	duration := flag.Duration("duration", 10*time.Second, "how long each side is loaded")
	workers := flag.Int("workers", 512, "concurrent requests at most")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "guardlatency:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(*rate, *duration, *workers); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "guardlatency:", err)
		os.Exit(1)
	}
}

func run(rate int, duration time.Duration, workers int) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, err := os.MkdirTemp("", "guardlatency-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	n, err := node.Open(ctx, node.Config{DataDir: dir, Addr: ln.Addr().String()})
	if err != nil {
		return err
	}
	defer n.Close()
	go n.Serve(ctx, ln)
	_, secret, err := n.Clients.Add(ctx, clients.Spec{ID: "support", Scopes: []string{"orders:read"}, Audiences: []string{"orders"}}, "bench")
	if err != nil {
		return err
	}
	token, err := clientToken(n.Config().Issuer, secret)
	if err != nil {
		return err
	}

	body := []byte(`{"orders":[{"id":"o_1","total":12000}]}`)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	defer upstream.Close()
	up, _ := url.Parse(upstream.URL)
	transport := func() *http.Transport {
		return &http.Transport{MaxIdleConns: workers, MaxIdleConnsPerHost: workers, IdleConnTimeout: time.Minute}
	}
	newProxy := func() http.Handler {
		return &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(up); pr.SetXForwarded() }, Transport: transport()}
	}
	policy, err := guard.ParsePolicy("bench", strings.NewReader("custos-guard-policy v1\nroute GET /customers/{id}/orders\n subject path id\n staff-scope orders:read\n data order_history\n"))
	if err != nil {
		return err
	}
	guarded, err := n.Guard(ctx, node.GuardConfig{Policy: policy, Audience: "orders", Upstream: "bench", Actor: "bench"}, newProxy())
	if err != nil {
		return err
	}
	fmt.Printf("guardlatency: %d requests/s for %v per side, at most %d at once, GOMAXPROCS=%d %s\n\n",
		rate, duration, workers, runtime.GOMAXPROCS(0), runtime.Version())
	var p99 [2]time.Duration
	for i, side := range []struct {
		name string
		h    http.Handler
	}{{"plain ReverseProxy", newProxy()}, {"guard", guarded}} {
		srv := httptest.NewServer(side.h)
		tr := transport()
		// A second of the same load first, not measured: connections
		// are opened and caches filled before the clock runs.
		if _, _, err := load(srv.URL, token, rate, time.Second, workers, tr); err != nil {
			return err
		}
		lat, failed, err := load(srv.URL, token, rate, duration, workers, tr)
		srv.Close()
		if err != nil {
			return err
		}
		slices.Sort(lat)
		q := func(p float64) time.Duration { return lat[min(int(p*float64(len(lat))), len(lat)-1)] }
		p99[i] = q(0.99)
		fmt.Printf("%-20s %d requests, %d failed: p50 %v, p99 %v, p99.9 %v, max %v\n",
			side.name, len(lat), failed, q(0.5).Round(time.Microsecond), q(0.99).Round(time.Microsecond),
			q(0.999).Round(time.Microsecond), q(1).Round(time.Microsecond))
	}
	fmt.Printf("\nadded p99: %v\n", (p99[1] - p99[0]).Round(time.Microsecond))
	return nil
}

// load sends rate requests per second for d, open-loop, and returns each
// request's latency from when it was due.
func load(base, token string, rate int, d time.Duration, workers int, tr *http.Transport) ([]time.Duration, int, error) {
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	total := int(float64(rate) * d.Seconds())
	due := make(chan time.Time, total)
	var mu sync.Mutex
	lat := make([]time.Duration, 0, total)
	failed := 0
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; ; i += workers {
				at, ok := <-due
				if !ok {
					return
				}
				if wait := time.Until(at); wait > 0 {
					time.Sleep(wait)
				}
				req, _ := http.NewRequest("GET", fmt.Sprintf("%s/customers/acc_%d/orders", base, i%1000), nil)
				req.Header.Set("Authorization", "Bearer "+token)
				req.Header.Set(guard.PurposeHeader, "bench")
				resp, err := hc.Do(req)
				ok = err == nil && resp.StatusCode == 200
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				l := time.Since(at)
				mu.Lock()
				lat = append(lat, l)
				if !ok {
					failed++
				}
				mu.Unlock()
			}
		})
	}
	start := time.Now().Add(100 * time.Millisecond)
	interval := time.Second / time.Duration(rate)
	for i := range total {
		due <- start.Add(time.Duration(i) * interval)
	}
	close(due)
	wg.Wait()
	if len(lat) == 0 {
		return nil, 0, fmt.Errorf("no requests completed")
	}
	return lat, failed, nil
}

func clientToken(issuer, secret string) (string, error) {
	req, _ := http.NewRequest("POST", issuer+"/oauth2/token", strings.NewReader(url.Values{"grant_type": {"client_credentials"}, "scope": {"orders:read"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("support", secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.AccessToken == "" {
		return "", fmt.Errorf("client credentials: status %d", resp.StatusCode)
	}
	return out.AccessToken, nil
}
