// Command idlerss measures the resident memory of an idle `custos serve`.
//
// It builds custos (or takes a binary with -bin), starts `custos serve` on a
// free loopback port with a fresh data directory, waits until OIDC
// discovery answers, optionally sends some traffic (-requests: discovery,
// JWKS and, with -demo, the hosted login page), lets the server sit idle,
// then reads VmRSS and VmHWM from /proc/PID/status, stops the server with
// SIGTERM and exits non-zero if VmRSS is at or above -max-mb MiB.
//
// From the repository root:
//
//	go run ./bench/idlerss
//	go run ./bench/idlerss -demo -requests 300
//
// It runs on Linux only (it reads /proc). The server's own output is not
// shown, since with -demo it lists the demo customers' passwords; only the
// tail of its log is printed if it fails to start.
package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Defaults for the flags.
const (
	defaultIdle  = 10 * time.Second
	defaultMaxMB = 50
	startTimeout = 60 * time.Second
	stopTimeout  = 15 * time.Second
	// demoClientID is the client `custos serve --demo` registers.
	demoClientID = "demo"
	// custosPkg is built when -bin is not given.
	custosPkg = "github.com/custos-dev/custos/cmd/custos"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "idlerss:", err)
		os.Exit(1)
	}
}

func run() error {
	bin := flag.String("bin", "", "custos binary to measure (default: go build "+custosPkg+" into a temporary directory)")
	idle := flag.Duration("idle", defaultIdle, "how long the server sits idle before it is measured")
	maxMB := flag.Float64("max-mb", defaultMaxMB, "fail if VmRSS is at or above this many MiB")
	demo := flag.Bool("demo", false, "run `custos serve --demo`")
	requests := flag.Int("requests", 0, "rounds of requests before idling: discovery, JWKS and, with -demo, the login page")
	flag.Parse()
	if flag.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}

	tmp, err := os.MkdirTemp("", "custos-idlerss-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	if *bin == "" {
		*bin = filepath.Join(tmp, "custos")
		build := exec.Command("go", "build", "-o", *bin, custosPkg)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("go build %s: %w", custosPkg, err)
		}
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	args := []string{"serve", "--data", filepath.Join(tmp, "data"), "--addr", addr}
	if *demo {
		args = append(args, "--demo")
	}
	srv := exec.Command(*bin, args...)
	var log tailBuffer
	srv.Stdout, srv.Stderr = io.Discard, &log
	if err := srv.Start(); err != nil {
		return fmt.Errorf("starting custos: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		srv.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			return err
		case <-time.After(stopTimeout):
			srv.Process.Kill()
			<-exited
			return fmt.Errorf("custos did not stop within %v of SIGTERM", stopTimeout)
		}
	}
	defer stop()

	base := "http://" + addr
	client := &http.Client{Timeout: 10 * time.Second}
	if err := waitReady(client, base, exited); err != nil {
		return fmt.Errorf("%w\nserver log (tail):\n%s", err, log.String())
	}
	if err := traffic(client, base, *requests, *demo); err != nil {
		return err
	}
	client.CloseIdleConnections()
	time.Sleep(*idle)

	rss, hwm, err := memory(srv.Process.Pid)
	if err != nil {
		return err
	}
	mode := "custos serve"
	if *demo {
		mode += " --demo"
	}
	fmt.Printf("%s, %d request rounds, idle %v\n", mode, *requests, *idle)
	fmt.Printf("VmRSS %8.1f MiB\n", float64(rss)/1024)
	fmt.Printf("VmHWM %8.1f MiB\n", float64(hwm)/1024)
	if err := stop(); err != nil {
		return fmt.Errorf("stopping custos: %w", err)
	}
	if limit := *maxMB * 1024; float64(rss) >= limit {
		return fmt.Errorf("VmRSS %.1f MiB is at or above the limit of %g MiB", float64(rss)/1024, *maxMB)
	}
	return nil
}

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitReady polls discovery until it answers 200, the server exits or
// startTimeout passes.
func waitReady(client *http.Client, base string, exited <-chan error) error {
	deadline := time.Now().Add(startTimeout)
	for {
		resp, err := client.Get(base + "/.well-known/openid-configuration")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-exited:
			return fmt.Errorf("custos exited before it was ready: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("discovery did not answer within %v", startTimeout)
		}
	}
}

// traffic sends rounds of requests, each of which must answer 200.
func traffic(client *http.Client, base string, rounds int, demo bool) error {
	paths := []string{"/.well-known/openid-configuration", "/oauth2/jwks"}
	for i := range rounds {
		ps := paths
		if demo {
			ps = append(ps[:len(ps):len(ps)], loginPage(base))
		}
		for _, p := range ps {
			resp, err := client.Get(base + p)
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("round %d: GET %s: %s", i, p, resp.Status)
			}
		}
	}
	return nil
}

// loginPage returns the path of an authorization request for the demo
// client, which shows the hosted login page.
func loginPage(base string) string {
	verifier := rand.Text() + rand.Text()
	sum := sha256.Sum256([]byte(verifier))
	return "/oauth2/authorize?" + url.Values{
		"client_id": {demoClientID}, "redirect_uri": {base + "/demo/callback"}, "response_type": {"code"},
		"scope": {"openid profile"}, "state": {rand.Text()},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}.Encode()
}

// memory reads VmRSS and VmHWM, in KiB, from /proc/pid/status.
func memory(pid int) (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	found := map[string]*int64{"VmRSS:": &rss, "VmHWM:": &hwm}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 || fields[2] != "kB" {
			continue
		}
		if p, ok := found[fields[0]]; ok {
			if *p, err = strconv.ParseInt(fields[1], 10, 64); err != nil {
				return 0, 0, fmt.Errorf("/proc/%d/status: %s: %w", pid, fields[0], err)
			}
			delete(found, fields[0])
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if len(found) != 0 {
		return 0, 0, errors.New("VmRSS or VmHWM missing from /proc status")
	}
	return rss, hwm, nil
}

// tailBuffer keeps the last few KiB written to it; it is the server's log.
type tailBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

const tailBytes = 8 << 10

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(p)
	if extra := t.buf.Len() - tailBytes; extra > 0 {
		t.buf.Next(extra)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}
