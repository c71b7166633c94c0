// Command detectlatency measures detection beside a busy audit log: many
// goroutines append ordinary events to a node's log (the mix of sign-ins,
// tokens and reads a shop makes) at a fixed rate, or as fast as they can,
// with a forged-token refusal every so often, while the node's detector
// runs every built-in rule over the log. It reports the append rate
// reached, how far behind the detector ends, and the alert latency: for
// each forged refusal, from when its append returned (the event durable)
// to when the detector had stored the forged_token alert grown by it.
//
//	go run ./bench/detectlatency [-rate 0] [-duration 10s] [-forged-every 1000]
//
// Appenders, log and detector share the machine.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/custos-dev/custos/internal/detect"
	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/node"
	"github.com/custos-dev/custos/internal/store"
)

func main() {
	rate := flag.Int("rate", 0, "appends per second, open loop; 0 means as fast as the appenders go")
	duration := flag.Duration("duration", 10*time.Second, "how long to append")
	appenders := flag.Int("appenders", 512, "concurrent appenders")
	every := flag.Int("forged-every", 1000, "one forged-token refusal in this many events")
	appendOnly := flag.Bool("append-only", false, "no detector: the append rate alone, for comparison")
	flag.Parse()
	if *appendOnly {
		*every = 0
	}
	if err := run(*rate, *duration, *appenders, *every, !*appendOnly); err != nil {
		fmt.Fprintln(os.Stderr, "detectlatency:", err)
		os.Exit(1)
	}
}

func run(rate int, duration time.Duration, appenders, every int, detecting bool) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, err := os.MkdirTemp("", "detectlatency-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	n, err := node.Open(ctx, node.Config{DataDir: dir, Addr: "127.0.0.1:0"})
	if err != nil {
		return err
	}
	defer n.Close()
	d, err := n.Detector(ctx, detect.DefaultRules(), nil)
	if err != nil {
		return err
	}
	detDone := make(chan struct{})
	if detecting {
		go func() { d.Run(ctx); close(detDone) }()
	} else {
		close(detDone)
	}

	fmt.Printf("detectlatency: rate %s for %v, %d appenders, a forged refusal every %d events, GOMAXPROCS=%d %s\n\n",
		rateName(rate), duration, appenders, every, runtime.GOMAXPROCS(0), runtime.Version())

	// Forged refusals: index → when their append returned.
	var mu sync.Mutex
	forged := map[uint64]time.Time{}
	var seq atomic.Int64
	start := time.Now()
	deadline := start.Add(duration)
	var wg sync.WaitGroup
	for range appenders {
		wg.Go(func() {
			for {
				i := seq.Add(1) - 1
				if rate > 0 {
					due := start.Add(time.Duration(i) * time.Second / time.Duration(rate))
					if due.After(deadline) {
						return
					}
					time.Sleep(time.Until(due))
				} else if time.Now().After(deadline) {
					return
				}
				e := ordinary(int(i))
				isForged := every > 0 && i%int64(every) == int64(every/2)
				if isForged {
					e = forgedRefusal(int(i))
				}
				idx, err := n.Audit.Append(ctx, e)
				if err != nil {
					fmt.Fprintln(os.Stderr, "append:", err)
					return
				}
				if isForged {
					at := time.Now()
					mu.Lock()
					forged[idx] = at
					mu.Unlock()
				}
			}
		})
	}
	// Poll the forged_token alert's reach: an event is alerted once the
	// stored alert's last index is at or past it.
	var latencies []time.Duration
	seen := map[uint64]bool{}
	pollDone := make(chan struct{})
	stopPoll := make(chan struct{})
	go func() {
		defer close(pollDone)
		for {
			as, err := n.Store.Alerts(ctx, store.AlertFilter{State: store.AlertOpen, Rule: "forged_token"})
			now := time.Now()
			if err == nil && len(as) > 0 {
				mu.Lock()
				for idx, at := range forged {
					if !seen[idx] && idx <= as[0].LastIndex && idx >= as[0].FirstIndex {
						seen[idx] = true
						latencies = append(latencies, now.Sub(at))
					}
				}
				all := len(seen) == len(forged)
				mu.Unlock()
				select {
				case <-stopPoll:
					if all {
						return
					}
				default:
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	wg.Wait()
	appended := time.Since(start)
	ls, err := n.Store.LogState(ctx)
	if err != nil {
		return err
	}
	if !detecting {
		fmt.Printf("appended   %d events in %.2f s: %.0f events/s (no detector)\n", ls.Sequenced, appended.Seconds(), float64(ls.Sequenced)/appended.Seconds())
		return nil
	}
	lag := ls.Sequenced - min(ls.Sequenced, d.Next())
	fmt.Printf("appended   %d events in %.2f s: %.0f events/s\n", ls.Sequenced, appended.Seconds(), float64(ls.Sequenced)/appended.Seconds())
	fmt.Printf("detector   %d events behind when appending stopped\n", lag)
	caught := time.Now()
	for d.Next() < ls.Sequenced {
		time.Sleep(time.Millisecond)
	}
	fmt.Printf("detector   caught up %.2f s later: %.0f events/s over the run\n", time.Since(caught).Seconds(),
		float64(ls.Sequenced)/time.Since(start).Seconds())
	close(stopPoll)
	select {
	case <-pollDone:
	case <-time.After(30 * time.Second):
		return fmt.Errorf("forged events still unalerted after 30 s")
	}
	slices.Sort(latencies)
	if len(latencies) == 0 {
		return fmt.Errorf("no forged events")
	}
	q := func(p float64) time.Duration { return latencies[min(int(p*float64(len(latencies))), len(latencies)-1)] }
	fmt.Printf("alerts     %d forged events: latency p50 %v, p99 %v, max %v\n", len(latencies),
		q(0.5).Round(time.Millisecond), q(0.99).Round(time.Millisecond), q(1).Round(time.Millisecond))
	cancel()
	<-detDone
	return nil
}

func rateName(rate int) string {
	if rate == 0 {
		return "as fast as possible"
	}
	return fmt.Sprintf("%d/s", rate)
}

// ordinary is event i of a shop's ordinary traffic.
func ordinary(i int) event.Event {
	v := i / 6
	acc, ip, sid := fmt.Sprintf("acc_%d", v%100_000), fmt.Sprintf("198.51.%d.%d", v/250%250, v%250), fmt.Sprintf("sid_%d", v)
	switch i % 6 {
	case 0:
		return event.Event{Class: event.ClassAuthn, Type: "login_succeeded", Actor: acc, Subject: acc, IP: ip, Fields: map[string]any{"device": false}}
	case 1:
		return event.Event{Class: event.ClassToken, Type: "token_issued", Actor: "shop-app", Subject: acc, Client: "shop-app", IP: ip,
			Fields: map[string]any{"grant": "authorization_code", "kid": "kid-active", "access_jti": fmt.Sprintf("jti_%d", v), "sid": sid}}
	}
	routes := [...]string{"GET /me/profile", "GET /me/addresses", "GET /me/orders", "GET /me/orders"}
	return event.Event{Class: event.ClassAccess, Type: "data_read", Actor: acc, Subject: acc, Client: "shop-app", IP: ip,
		Fields: map[string]any{"method": "GET", "mode": "enforce", "route": routes[i%6-2], "data": "name email phone", "status": int64(200),
			"size": int64(512), "jti": fmt.Sprintf("jti_%d", v), "kid": "kid-active", "sid": sid, "user_agent": "ShopApp/3.2"}}
}

// forgedRefusal is the guard refusing a token signed with the legacy key.
func forgedRefusal(i int) event.Event {
	return event.Event{Class: event.ClassAccess, Type: "access_refused", Actor: fmt.Sprintf("acc_%d", i), Subject: fmt.Sprintf("acc_%d", i),
		Client: "shop-app", IP: fmt.Sprintf("203.0.113.%d", i%5),
		Fields: map[string]any{"method": "GET", "mode": "enforce", "route": "GET /me/profile", "reason": "forged_token", "status": int64(401),
			"jti": fmt.Sprintf("forged_%d", i), "kid": "kid-legacy", "user_agent": "python-requests/2.31.0"}}
}
