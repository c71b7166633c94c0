package keys_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/custos-dev/custos/internal/keys"
	"github.com/custos-dev/custos/internal/leakcheck"
	"github.com/custos-dev/custos/internal/store"
)

// TestNoKeyBytesLeak runs a whole lifecycle and checks that nothing custody
// prints, returns, logs or emits contains a private key, a DEK or the root
// key, in any encoding.
func TestNoKeyBytesLeak(t *testing.T) {
	for _, alg := range []string{"EdDSA", "ES256"} {
		t.Run(alg, func(t *testing.T) {
			f := newFixture(t, func(c *keys.Config) { c.Algorithm = alg })
			ctx := t.Context()
			var out bytes.Buffer
			logger := slog.New(slog.NewJSONHandler(&out, nil))
			show := func(vs ...any) {
				for _, v := range vs {
					fmt.Fprintf(&out, "%v %+v %#v %s %q %x\n", v, v, v, v, v, v)
					if b, err := json.Marshal(v); err == nil {
						out.Write(b)
					}
					logger.Info("value", "v", v)
				}
			}
			errs := func(err error) {
				if err != nil {
					show(err, errors.Unwrap(err))
				}
			}

			sk, err := f.c.Signer(ctx)
			errs(err)
			show(sk, sk.Signer, *sk, f.c, f.sealer)
			sig, _ := sk.SignJWS([]byte("a.b"))
			show(sig)
			errs(f.c.Rotate(ctx, "op:a", "too early"))
			f.clk.Advance(f.cfg.PublishLead)
			errs(f.c.Rotate(ctx, "op:a", "scheduled"))
			_, errLookup := f.c.LookupKey(ctx, "unknown")
			errs(errLookup)

			imp, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			impDER, _ := x509.MarshalPKCS8PrivateKey(imp)
			impPEM := pemOf(t, "PRIVATE KEY", impDER)
			info, err := f.c.Import(ctx, impPEM, "op:b")
			errs(err)
			show(info)
			_, err = f.c.Import(ctx, impPEM, "op:b")
			errs(err)
			_, err = f.c.Import(ctx, impPEM[:len(impPEM)-40], "op:b")
			errs(err)
			sk2, _ := f.c.Signer(ctx)
			show(sk2)
			// The keys' secrets, before unpublishing destroys some.
			early, err := keys.SecretsForTest(ctx, f.c)
			if err != nil {
				t.Fatal(err)
			}
			errs(f.c.Revoke(ctx, sk2.ID, "op:b", "exposed"))
			_, err = sk2.SignJWS([]byte("a.b"))
			errs(err)
			f.clk.Advance(f.cfg.MaxAge)
			errs(f.c.Tick(ctx, f.clk.Now()))
			_, err = keys.Open(ctx, f.st, mustSealer(t), f.ev, f.cfg)
			errs(err)
			list, err := f.c.List(ctx)
			errs(err)
			show(list)
			set, _ := f.c.JWKS(ctx)
			jwks, _ := json.Marshal(set)
			out.Write(jwks)
			out.Write(f.ev.json(t))
			show(f.ev.all)

			secrets, err := keys.SecretsForTest(ctx, f.c)
			if err != nil {
				t.Fatal(err)
			}
			d, _ := imp.Bytes()
			secrets = append(secrets, early...)
			secrets = append(secrets, impDER, d)
			if len(secrets) < 10 {
				t.Fatalf("only %d secrets collected", len(secrets))
			}
			if found := leakcheck.Find(out.Bytes(), secrets...); len(found) > 0 {
				t.Fatalf("secrets leaked: %q", found)
			}
			// Control: the check does find a secret when one is there.
			out.WriteString(hex.EncodeToString(secrets[len(secrets)-1]))
			if len(leakcheck.Find(out.Bytes(), secrets...)) == 0 {
				t.Fatal("leak check is blind")
			}
		})
	}
}

// TestRunRotates lets Run drive rotation on a fake clock.
func TestRunRotates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		st, ev := &memStore{}, &events{}
		cfg := keys.Config{ActivePeriod: time.Hour, JWKSMaxAge: 5 * time.Minute}
		c, err := keys.Open(ctx, st, mustSealer(t), ev, cfg)
		if err != nil {
			t.Fatal(err)
		}
		first, _ := c.Signer(ctx)
		done := make(chan error)
		go func() { done <- c.Run(ctx) }()

		time.Sleep(time.Hour - time.Minute)
		synctest.Wait()
		if sk, _ := c.Signer(ctx); sk.ID != first.ID || ev.count("key_retired") != 0 {
			t.Fatal("rotated before ActivePeriod")
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		sk, _ := c.Signer(ctx)
		if sk.ID == first.ID || ev.count("key_retired") != 1 || ev.count("key_activated") != 2 {
			t.Fatalf("after ActivePeriod: signer %s, events %q", sk.ID, ev.types())
		}
		// Retired key unpublished after MaxTokenLifetime + Leeway.
		time.Sleep(keys.DefaultMaxTokenLifetime + keys.DefaultLeeway)
		synctest.Wait()
		if ev.count("key_unpublished") != 1 {
			t.Fatalf("events %q, want one key_unpublished", ev.types())
		}
		// Another node's change is picked up by the periodic reload.
		list, _ := st.Keys(ctx)
		var pending store.Key
		for _, k := range list {
			if k.State == store.KeyPending {
				pending = k
			}
		}
		pending.State, pending.RevokedAt = store.KeyRevoked, time.Now()
		if err := st.UpdateKey(ctx, pending, store.KeyPending); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if _, err := c.LookupKey(ctx, pending.ID); err == nil {
			t.Fatal("revocation by another node not picked up")
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}
