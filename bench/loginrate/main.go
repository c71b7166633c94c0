// Command loginrate measures password sign-ins per second per core of the
// server. custos serves in a child process confined to one CPU
// (GOMAXPROCS=1 and sched_setaffinity to CPU 0); the sign-ins are driven
// from this process, confined to the other CPUs, so that the server's core
// does nothing but serve, as it would with the load coming from elsewhere.
//
//	go run ./bench/loginrate [-duration 20s] [-clients 8] [-accounts 200]
//
// One sign-in is the whole flow a browser and an app make: GET the hosted
// login page, POST the form (IP throttle, lockout check, one Argon2id
// verification at accounts.DefaultParams(), m=19 MiB, t=2, p=1; code
// stored; events recorded), then redeem the code with PKCE at the token
// endpoint (access, ID and refresh tokens signed, their receipts and the
// token_issued event committed before the response). Accounts are signed
// in round-robin. All requests come from 127.0.0.1, so the server raises
// the per-IP limit, as BenchmarkPasswordLogin does; the per-account lockout
// is unchanged.
//
// It reports sign-ins per second of wall time and per CPU-second the server
// used (from /proc/PID/stat), which is the per-core figure; the server's
// core is busy all the time when -clients is large enough, and the two
// then agree.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/custos-dev/custos/internal/accounts"
	"github.com/custos-dev/custos/internal/clients"
	"github.com/custos-dev/custos/internal/node"
)

const (
	clientID = "loginrate-app"
	redirect = "http://127.0.0.1:9/callback"
	password = "loginrate: correct horse battery staple"
)

// serverAccounts is the server's accounts configuration: the default
// Argon2id parameters, and no per-IP limit that one load generator's
// address would hit.
var serverAccounts = accounts.Config{Params: accounts.DefaultParams(), IPRate: 1e9, IPBurst: 1 << 30}

func main() {
	serve := flag.Bool("serve", false, "internal: run as the server child")
	data := flag.String("data", "", "internal: the server's data directory")
	addr := flag.String("addr", "", "internal: the server's address")
	duration := flag.Duration("duration", 20*time.Second, "how long to measure")
	nclients := flag.Int("clients", 8, "concurrent sign-ins")
	naccounts := flag.Int("accounts", 200, "accounts signed in round-robin")
	flag.Parse()
	var err error
	if *serve {
		err = runServer(*data, *addr)
	} else {
		err = run(*duration, *nclients, *naccounts)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loginrate:", err)
		os.Exit(1)
	}
}

// runServer serves custos on one CPU until it is signalled.
func runServer(data, addr string) error {
	if err := pin(func(cpu int) bool { return cpu == 0 }); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	n, err := node.Open(ctx, node.Config{DataDir: data, Addr: addr, Accounts: serverAccounts})
	if err != nil {
		return err
	}
	defer n.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Println("ready")
	return n.Serve(ctx, ln)
}

// pin confines the calling process to the CPUs keep accepts.
func pin(keep func(cpu int) bool) error {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return err
	}
	var want unix.CPUSet
	for cpu := range 1024 {
		if set.IsSet(cpu) && keep(cpu) {
			want.Set(cpu)
		}
	}
	if want.Count() == 0 {
		return errors.New("no CPU left to run on")
	}
	return unix.SchedSetaffinity(0, &want)
}

func run(duration time.Duration, nclients, naccounts int) error {
	if runtime.NumCPU() < 2 {
		return errors.New("needs two CPUs: one for the server, one for the load")
	}
	dir, err := os.MkdirTemp("", "loginrate-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	ln.Close()

	// Seed, then close: the server is the only process using the data.
	ctx := context.Background()
	n, err := node.Open(ctx, node.Config{DataDir: filepath.Join(dir, "data"), Addr: addr, Accounts: serverAccounts})
	if err != nil {
		return err
	}
	if _, _, err := n.Clients.Add(ctx, clients.Spec{ID: clientID, Name: "loginrate", Public: true, RedirectURIs: []string{redirect}}, "loginrate"); err != nil {
		n.Close()
		return err
	}
	news := make([]accounts.NewAccount, naccounts)
	logins := make([]string, naccounts)
	for i := range news {
		logins[i] = fmt.Sprintf("customer%05d@loginrate.example", i)
		news[i] = accounts.NewAccount{LoginID: logins[i], Name: fmt.Sprintf("Customer %d", i)}
	}
	if _, err := n.Accounts.RegisterMany(ctx, news, password, "loginrate"); err != nil {
		n.Close()
		return err
	}
	if err := n.Close(); err != nil {
		return err
	}

	srv := exec.Command(os.Args[0], "-serve", "-data", filepath.Join(dir, "data"), "-addr", addr)
	srv.Env = append(os.Environ(), "GOMAXPROCS=1")
	srv.Stderr = os.Stderr
	out, err := srv.StdoutPipe()
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() {
		srv.Process.Signal(syscall.SIGTERM)
		srv.Wait()
	}()
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		return fmt.Errorf("the server did not start: %q %v", line, err)
	}
	if err := pin(func(cpu int) bool { return cpu != 0 }); err != nil {
		return err
	}
	base := "http://" + addr

	var next, done, failed atomic.Int64
	loop := func(stop <-chan struct{}) {
		for {
			select {
			case <-stop:
				return
			default:
			}
			i := int(next.Add(1)) % naccounts
			if err := signIn(base, logins[i]); err != nil {
				failed.Add(1)
				fmt.Fprintln(os.Stderr, "sign-in:", err)
				continue
			}
			done.Add(1)
		}
	}
	measure := func(d time.Duration) {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range nclients {
			wg.Go(func() { loop(stop) })
		}
		time.Sleep(d)
		close(stop)
		wg.Wait()
	}

	measure(2 * time.Second) // warm up: connections, caches, the heap
	done.Store(0)
	failed.Store(0)
	cpu0, err := cpuTime(srv.Process.Pid)
	if err != nil {
		return err
	}
	start := time.Now()
	measure(duration)
	wall := time.Since(start)
	cpu1, err := cpuTime(srv.Process.Pid)
	if err != nil {
		return err
	}
	cpu := cpu1 - cpu0
	fmt.Printf("loginrate: server on CPU 0 (GOMAXPROCS=1), %d concurrent sign-ins from the other CPUs, %d accounts, %s %s/%s\n",
		nclients, naccounts, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Printf("  sign-ins      %d in %.1f s (%d failed): %.2f /s\n", done.Load(), wall.Seconds(), failed.Load(), float64(done.Load())/wall.Seconds())
	fmt.Printf("  server CPU    %.2f s (%.0f %% of one core): %.2f sign-ins per CPU-second\n",
		cpu.Seconds(), 100*cpu.Seconds()/wall.Seconds(), float64(done.Load())/cpu.Seconds())
	if failed.Load() > 0 {
		return fmt.Errorf("%d sign-ins failed", failed.Load())
	}
	return nil
}

// cpuTime is the user and system CPU time process pid has used.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may
	// hold spaces: utime and stime are the 12th and 13th of them.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, err
		}
		ticks += v
	}
	const hz = 100 // USER_HZ, fixed by the kernel's ABI
	return time.Duration(ticks) * time.Second / hz, nil
}

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// signIn runs the authorization code flow with PKCE through the hosted
// login page with a fresh cookie jar, as a new browser would, and checks
// that it ends with an access token.
func signIn(base, loginID string) error {
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	verifier := rand.Text() + rand.Text()
	sum := sha256.Sum256([]byte(verifier))
	resp, err := browser.Get(base + "/oauth2/authorize?" + url.Values{
		"client_id": {clientID}, "redirect_uri": {redirect}, "response_type": {"code"}, "scope": {"openid profile"},
		"state": {"s"}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}.Encode())
	if err != nil {
		return err
	}
	page, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("login page: %d %v", resp.StatusCode, err)
	}
	form := url.Values{"login_id": {loginID}, "password": {password}}
	for _, m := range hiddenInput.FindAllStringSubmatch(string(page), -1) {
		form.Set(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
	}
	resp, err = browser.PostForm(base+"/oauth2/authorize", form)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	loc, err := resp.Location()
	if resp.StatusCode != http.StatusSeeOther || err != nil || loc.Query().Get("code") == "" {
		return fmt.Errorf("sign-in of %s: %d %v", loginID, resp.StatusCode, err)
	}
	resp, err = browser.PostForm(base+"/oauth2/token", url.Values{
		"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "redirect_uri": {redirect},
		"client_id": {clientID}, "code_verifier": {verifier},
	})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != http.StatusOK || tok.AccessToken == "" {
		return fmt.Errorf("token endpoint: %d %v", resp.StatusCode, err)
	}
	return nil
}

// transport keeps connections alive across sign-ins.
var transport = &http.Transport{MaxIdleConnsPerHost: 64}
