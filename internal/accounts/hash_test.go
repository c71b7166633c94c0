package accounts

import (
	"context"
	"encoding/hex"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func mustHasher(t testing.TB, p Params, n int) *Hasher {
	t.Helper()
	h, err := NewHasher(p, n)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHashRoundTrip(t *testing.T) {
	ctx := context.Background()
	h := mustHasher(t, testParams, 1)
	enc, err := h.Hash(ctx, "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(enc, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("hash %q does not carry its parameters", enc)
	}
	p, salt, key, err := parsePHC(enc)
	if err != nil {
		t.Fatal(err)
	}
	if p != testParams || len(salt) != 16 || len(key) != 32 {
		t.Fatalf("parsed %+v, %d-byte salt, %d-byte key", p, len(salt), len(key))
	}
	if got := encodePHC(p, salt, key); got != enc {
		t.Fatalf("re-encoded %q, want %q", got, enc)
	}
	for _, tc := range []struct {
		pw   string
		want bool
	}{
		{"correct horse battery", true},
		{"correct horse batterY", false},
		{"", false},
	} {
		ok, rehash, err := h.Verify(ctx, tc.pw, enc)
		if err != nil || ok != tc.want || rehash {
			t.Errorf("Verify(%q) = %v, %v, %v; want %v, false, nil", tc.pw, ok, rehash, err, tc.want)
		}
	}
	enc2, _ := h.Hash(ctx, "correct horse battery")
	if enc2 == enc {
		t.Error("two hashes of one password are equal: salt not random")
	}
}

// A known answer from the reference implementation's tests (argon2 test.c,
// Argon2id v=19, t=2, m=2^16, p=1, "password", "somesalt"): our string format
// and our key derivation both match it.
func TestHashKnownAnswer(t *testing.T) {
	const enc = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"
	p, salt, key, err := parsePHC(enc)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(key) != "09316115d5cf24ed5a15a31a3ba326e5cf32edc24702987c02b6566f61913cf7" || string(salt) != "somesalt" {
		t.Fatalf("parsed salt %q key %x", salt, key)
	}
	if encodePHC(p, salt, key) != enc {
		t.Fatal("re-encoding differs")
	}
	h := mustHasher(t, testParams, 1)
	ok, rehash, err := h.Verify(context.Background(), "password", enc)
	if err != nil || !ok || !rehash {
		t.Fatalf("Verify = %v, %v, %v; want true, true (other params), nil", ok, rehash, err)
	}
}

func TestVerifyOldParamsNeedsRehash(t *testing.T) {
	ctx := context.Background()
	old := mustHasher(t, Params{Memory: 32, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}, 1)
	enc, err := old.Hash(ctx, "pass word 1")
	if err != nil {
		t.Fatal(err)
	}
	cur := mustHasher(t, testParams, 1)
	ok, rehash, err := cur.Verify(ctx, "pass word 1", enc)
	if err != nil || !ok || !rehash {
		t.Fatalf("Verify old-params hash = %v, %v, %v; want true, true, nil", ok, rehash, err)
	}
	ok, rehash, err = cur.Verify(ctx, "wrong", enc)
	if err != nil || ok || !rehash {
		t.Fatalf("Verify wrong password = %v, %v, %v; want false, true, nil", ok, rehash, err)
	}
}

// Every bit of the stored key matters, and a stored key that is a prefix of
// the derived one does not match.
func TestVerifyComparesWholeKey(t *testing.T) {
	ctx := context.Background()
	h := mustHasher(t, testParams, 1)
	p, salt, key, _ := parsePHC(must(h.Hash(ctx, "pass word 2")))
	for i := range key {
		k := append([]byte(nil), key...)
		k[i] ^= 0x01
		if ok, _, _ := h.Verify(ctx, "pass word 2", encodePHC(p, salt, k)); ok {
			t.Fatalf("flipping byte %d still verifies", i)
		}
	}
	short := p
	short.KeyLen = 16
	if ok, _, _ := h.Verify(ctx, "pass word 2", encodePHC(short, salt, key[:16])); ok {
		t.Fatal("truncated key verifies")
	}
}

// The key comparison must be constant-time: Verify calls
// subtle.ConstantTimeCompare and nothing in the package compares keys with
// bytes.Equal or ==.
func TestVerifyUsesConstantTimeCompare(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "hash.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var verify *ast.FuncDecl
	for _, d := range f.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Name.Name == "Verify" {
			verify = fd
		}
	}
	if verify == nil {
		t.Fatal("no Verify in hash.go")
	}
	var constTime, bytesEqual bool
	ast.Inspect(verify, func(n ast.Node) bool {
		if sel, ok := n.(*ast.SelectorExpr); ok {
			if id, ok := sel.X.(*ast.Ident); ok {
				constTime = constTime || id.Name == "subtle" && sel.Sel.Name == "ConstantTimeCompare"
				bytesEqual = bytesEqual || id.Name == "bytes"
			}
		}
		return true
	})
	if !constTime || bytesEqual {
		t.Fatalf("Verify: subtle.ConstantTimeCompare used = %v, bytes used = %v", constTime, bytesEqual)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestParsePHCRejects(t *testing.T) {
	const salt, key = "c29tZXNhbHRzb21lc2FsdA", "/rHDIMvUTeSTF0HjaENeYOX9pqHNNAPSR2rgDbpE2ew"
	good := "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + key
	if _, _, _, err := parsePHC(good); err != nil {
		t.Fatalf("good hash refused: %v", err)
	}
	for name, s := range map[string]string{
		"empty":           "",
		"argon2i":         "$argon2i$v=19$m=64,t=1,p=1$" + salt + "$" + key,
		"argon2d":         "$argon2d$v=19$m=64,t=1,p=1$" + salt + "$" + key,
		"bcrypt":          "$2b$10$abcdefghijklmnopqrstuu5XBXfKf2Wj0bqOe4QWTWDYMD4zK2y4a",
		"version 16":      "$argon2id$v=16$m=64,t=1,p=1$" + salt + "$" + key,
		"no version":      "$argon2id$m=64,t=1,p=1$" + salt + "$" + key,
		"order":           "$argon2id$v=19$t=1,m=64,p=1$" + salt + "$" + key,
		"extra param":     "$argon2id$v=19$m=64,t=1,p=1,k=2$" + salt + "$" + key,
		"missing param":   "$argon2id$v=19$m=64,t=1$" + salt + "$" + key,
		"spaces":          "$argon2id$v=19$m=64, t=1,p=1$" + salt + "$" + key,
		"leading zero":    "$argon2id$v=19$m=064,t=1,p=1$" + salt + "$" + key,
		"plus sign":       "$argon2id$v=19$m=+64,t=1,p=1$" + salt + "$" + key,
		"negative":        "$argon2id$v=19$m=64,t=-1,p=1$" + salt + "$" + key,
		"hex":             "$argon2id$v=19$m=0x40,t=1,p=1$" + salt + "$" + key,
		"uint32 overflow": "$argon2id$v=19$m=4294967296,t=1,p=1$" + salt + "$" + key,
		"memory > 1 GiB":  "$argon2id$v=19$m=1048577,t=1,p=1$" + salt + "$" + key,
		"memory < 8p":     "$argon2id$v=19$m=7,t=1,p=1$" + salt + "$" + key,
		"time 0":          "$argon2id$v=19$m=64,t=0,p=1$" + salt + "$" + key,
		"time 21":         "$argon2id$v=19$m=64,t=21,p=1$" + salt + "$" + key,
		"threads 0":       "$argon2id$v=19$m=64,t=1,p=0$" + salt + "$" + key,
		"threads 17":      "$argon2id$v=19$m=1024,t=1,p=17$" + salt + "$" + key,
		"salt too short":  "$argon2id$v=19$m=64,t=1,p=1$c29tZQ$" + key,
		"salt too long":   "$argon2id$v=19$m=64,t=1,p=1$" + strings.Repeat("QUFB", 22) + "$" + key,
		"key too short":   "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$AAAAAAAAAAAAAAAAAAAA",
		"padded salt":     "$argon2id$v=19$m=64,t=1,p=1$" + salt + "==$" + key,
		"url base64":      "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + strings.ReplaceAll(key, "/", "_"),
		"non-canonical":   "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + key[:len(key)-1] + "x",
		"newline in b64":  "$argon2id$v=19$m=64,t=1,p=1$" + salt[:4] + "\n" + salt[4:] + "$" + key,
		"trailing $":      good + "$",
		"extra field":     "$argon2id$v=19$m=64,t=1,p=1$data$" + salt + "$" + key,
		"too long":        "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + strings.Repeat("A", 300),
		"trailing space":  good + " ",
	} {
		if _, _, _, err := parsePHC(s); !errors.Is(err, ErrMalformedHash) {
			t.Errorf("%s: parsePHC(%q) error = %v, want ErrMalformedHash", name, s, err)
		}
	}
}

func FuzzParsePHC(f *testing.F) {
	f.Add("$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$/rHDIMvUTeSTF0HjaENeYOX9pqHNNAPSR2rgDbpE2ew")
	f.Add("$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHQ$/rHDIMvUTeSTF0HjaENeYOX9pqHNNAPSR2rgDbpE2ew")
	f.Add("$argon2id$v=19$m=64,t=1,p=1$c29tZXNhbHQ$/rHDIMvUTeSTF0HjaENeYOX9pqHNNAPSR2rgDbpE2ex")
	f.Add("$argon2id$v=19$m=1048576,t=20,p=16$c29tZXNhbHQ$AAAAAAAAAAAAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, s string) {
		p, salt, key, err := parsePHC(s)
		if err != nil {
			if !errors.Is(err, ErrMalformedHash) {
				t.Fatalf("error %v does not wrap ErrMalformedHash", err)
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("accepted out-of-bounds params %+v: %v", p, err)
		}
		if got := encodePHC(p, salt, key); got != s {
			t.Fatalf("round trip: parsed %q, re-encoded %q", s, got)
		}
	})
}

// The defaults meet OWASP's Argon2id minimum, and New accepts nothing less.
func TestDefaultParamsMeetOWASP(t *testing.T) {
	p := DefaultParams()
	if p.Memory < 19456 || p.Time < 2 || p.Threads < 1 || p.SaltLen < 16 || p.KeyLen < 16 {
		t.Fatalf("DefaultParams() = %+v, below OWASP minimum", p)
	}
	if !p.MeetsOWASP() || testParams.MeetsOWASP() {
		t.Fatal("MeetsOWASP wrong")
	}
	// One real hash at the defaults, through the public constructor.
	svc, err := New(newFakeStore(), &recorder{}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(svc.dummy, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("dummy hash %q not at default params", svc.dummy)
	}
	if ok, rehash, err := svc.hasher.Verify(context.Background(), "x", svc.dummy); ok || rehash || err != nil {
		t.Fatalf("Verify(dummy) = %v, %v, %v", ok, rehash, err)
	}
	for _, weak := range []Params{
		{Memory: 19455, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32},
		{Memory: 19456, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32},
		{Memory: 19456, Time: 2, Threads: 1, SaltLen: 8, KeyLen: 32},
	} {
		if _, err := New(newFakeStore(), &recorder{}, Config{Params: weak}); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("New with %+v: err = %v, want ErrInvalidConfig", weak, err)
		}
	}
}

// With two slots and eight parallel sign-ins, exactly two hashes run at once.
func TestConcurrentHashesBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var cur, peak atomic.Int64
		st := newFakeStore()
		cfg := Config{Params: testParams, MaxConcurrentHashes: 2, IPBurst: 100}
		slow := func(password, salt []byte, tm, m uint32, p uint8, keyLen uint32) []byte {
			time.Sleep(10 * time.Millisecond) // fake time: lets the others pile up
			return defaultKeyFunc(password, salt, tm, m, p, keyLen)
		}
		svc, err := newService(st, &recorder{}, cfg, options{allowWeakParams: true, key: slow, onHash: func(d int) {
			n := cur.Add(int64(d))
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
		}})
		if err != nil {
			t.Fatal(err)
		}
		peak.Store(0)
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				_, err := svc.Authenticate(context.Background(), "user"+string(rune('a'+i))+"@example.com", "password", Source{IP: "192.0.2.1"})
				if !errors.Is(err, ErrInvalidCredentials) {
					t.Errorf("login %d: %v", i, err)
				}
			})
		}
		wg.Wait()
		if got := peak.Load(); got != 2 {
			t.Fatalf("peak concurrent hashes = %d, want 2", got)
		}
	})
}

// A caller waiting for a hashing slot gives up when its context ends.
func TestHashWaitRespectsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		h, err := newHasher(testParams, 1, func(pw, salt []byte, tm, m uint32, p uint8, kl uint32) []byte {
			<-release
			return make([]byte, kl)
		})
		if err != nil {
			t.Fatal(err)
		}
		go h.Hash(context.Background(), "holds the only slot")
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err = h.Hash(ctx, "waits")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Hash while slots full = %v, want DeadlineExceeded", err)
		}
		close(release)
	})
}

// BenchmarkHashDefault is one Argon2id hash at DefaultParams: the floor on
// the cost of a password sign-in (target: ≥ 30 sign-ins/s per core).
func BenchmarkHashDefault(b *testing.B) {
	h := mustHasher(b, DefaultParams(), 1)
	ctx := context.Background()
	for b.Loop() {
		if _, err := h.Hash(ctx, "correct horse battery staple"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuthenticateDefault is a whole password sign-in at DefaultParams
// over the in-memory store.
func BenchmarkAuthenticateDefault(b *testing.B) {
	svc, err := New(newFakeStore(), &recorder{}, Config{IPRate: 1e9, IPBurst: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := svc.Register(ctx, "bench@example.com", "Bench", "correct horse battery staple", "self"); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := svc.Authenticate(ctx, "bench@example.com", "correct horse battery staple", Source{IP: "192.0.2.1"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuthenticateDefaultParallel is password sign-in throughput with
// every core busy (MaxConcurrentHashes = NumCPU).
func BenchmarkAuthenticateDefaultParallel(b *testing.B) {
	svc, err := New(newFakeStore(), &recorder{}, Config{IPRate: 1e9, IPBurst: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := svc.Register(ctx, "bench@example.com", "Bench", "correct horse battery staple", "self"); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := svc.Authenticate(ctx, "bench@example.com", "correct horse battery staple", Source{IP: "192.0.2.1"}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
