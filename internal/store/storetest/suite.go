package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-dev/custos/internal/store"
)

// Run runs the conformance suite. open must return a fresh, empty store and
// arrange for it to be closed when the test ends.
func Run(t *testing.T, open func(t *testing.T) Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b Backend)
	}{
		{"Accounts", testAccounts},
		{"Clients", testClients},
		{"Keys", testKeys},
		{"Custodians", testCustodians},
		{"Grants", testGrants},
		{"AuthCodes", testAuthCodes},
		{"RefreshRotation", testRefreshRotation},
		{"Revocation", testRevocation},
		{"Prune", testPrune},
		{"Log", testLog},
		{"AppendChunk", testAppendChunk},
		{"NoteKeys", testNoteKeys},
		{"Witness", testWitness},
		{"Holds", testHolds},
		{"Detection", testDetection},
		{"IPBlocks", testIPBlocks},
		{"SSF", testSSF},
		{"ConcurrentWrites", testConcurrentWrites},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.fn(t, open(t)) })
	}
}

// t0 is a fixed instant; backends must round-trip times to the nanosecond.
var t0 = time.Date(2026, 5, 23, 10, 0, 0, 123456789, time.UTC)

func mustErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("got error %v, want %v", err, want)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testAccounts(t *testing.T, b Backend) {
	ctx := t.Context()
	a := store.Account{ID: "acc_1", LoginID: "kim@example.com", Name: "김민준", PasswordHash: "$argon2id$x", CreatedAt: t0, UpdatedAt: t0}
	must(t, b.CreateAccount(ctx, a))
	mustErr(t, b.CreateAccount(ctx, store.Account{ID: "acc_2", LoginID: a.LoginID, CreatedAt: t0, UpdatedAt: t0}), store.ErrConflict)
	mustErr(t, b.CreateAccount(ctx, store.Account{ID: a.ID, LoginID: "other@example.com", CreatedAt: t0, UpdatedAt: t0}), store.ErrConflict)

	got, err := b.Account(ctx, a.ID)
	must(t, err)
	if !reflect.DeepEqual(got, a) {
		t.Fatalf("Account = %+v, want %+v", got, a)
	}
	got, err = b.AccountByLoginID(ctx, a.LoginID)
	must(t, err)
	if got.ID != a.ID {
		t.Fatalf("AccountByLoginID = %q, want %q", got.ID, a.ID)
	}
	_, err = b.Account(ctx, "acc_missing")
	mustErr(t, err, store.ErrNotFound)
	_, err = b.AccountByLoginID(ctx, "nobody@example.com")
	mustErr(t, err, store.ErrNotFound)

	t1 := t0.Add(time.Hour)
	must(t, b.UpdatePasswordHash(ctx, a.ID, "$argon2id$y", t1))
	mustErr(t, b.UpdatePasswordHash(ctx, "acc_missing", "h", t1), store.ErrNotFound)
	got, _ = b.Account(ctx, a.ID)
	if got.PasswordHash != "$argon2id$y" || !got.UpdatedAt.Equal(t1) || got.Disabled() {
		t.Fatalf("after UpdatePasswordHash: %+v", got)
	}
	must(t, b.DisableAccount(ctx, a.ID, t1))
	must(t, b.DisableAccount(ctx, a.ID, t1.Add(time.Hour)))
	got, _ = b.Account(ctx, a.ID)
	if !got.DisabledAt.Equal(t1) {
		t.Fatalf("DisabledAt = %v, want the first disable time %v", got.DisabledAt, t1)
	}
	mustErr(t, b.DisableAccount(ctx, "acc_missing", t1), store.ErrNotFound)

	for i := 2; i <= 5; i++ {
		must(t, b.CreateAccount(ctx, store.Account{ID: fmt.Sprintf("acc_%d", i), LoginID: fmt.Sprintf("u%d@example.com", i), CreatedAt: t0, UpdatedAt: t0}))
	}
	page, err := b.ListAccounts(ctx, "", 2)
	must(t, err)
	if len(page) != 2 || page[0].ID != "acc_1" || page[1].ID != "acc_2" {
		t.Fatalf("first page = %v", page)
	}
	page, err = b.ListAccounts(ctx, "acc_2", 10)
	must(t, err)
	if len(page) != 3 || page[0].ID != "acc_3" || page[2].ID != "acc_5" {
		t.Fatalf("second page = %v", page)
	}

	// Many at once: all or none.
	var many []store.Account
	for i := range 100 {
		many = append(many, store.Account{ID: fmt.Sprintf("acc_m%03d", i), LoginID: fmt.Sprintf("m%03d@example.com", i), PasswordHash: "$argon2id$z", CreatedAt: t0, UpdatedAt: t0})
	}
	clash := append(append([]store.Account{}, many...), store.Account{ID: "acc_clash", LoginID: "u3@example.com", CreatedAt: t0, UpdatedAt: t0})
	mustErr(t, b.CreateAccounts(ctx, clash), store.ErrConflict)
	if _, err := b.Account(ctx, "acc_m000"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused CreateAccounts stored an account: %v", err)
	}
	must(t, b.CreateAccounts(ctx, many))
	got, err = b.AccountByLoginID(ctx, "m099@example.com")
	must(t, err)
	if got.ID != "acc_m099" || got.PasswordHash != "$argon2id$z" {
		t.Fatalf("CreateAccounts stored %+v", got)
	}
}

func testClients(t *testing.T, b Backend) {
	ctx := t.Context()
	c := store.Client{
		ID: "shop", Name: "Shop", Kind: store.ClientConfidential, SecretHash: []byte{1, 2, 3},
		RedirectURIs: []string{"https://shop.example/cb"}, Scopes: []string{"openid", "profile"},
		Audiences: []string{"https://api.shop.example"}, GrantTypes: []string{"authorization_code", "refresh_token"},
		CreatedAt: t0,
	}
	must(t, b.CreateClient(ctx, c))
	mustErr(t, b.CreateClient(ctx, c), store.ErrConflict)
	got, err := b.Client(ctx, "shop")
	must(t, err)
	if !reflect.DeepEqual(got, c) {
		t.Fatalf("Client = %+v, want %+v", got, c)
	}
	pub := store.Client{ID: "app", Kind: store.ClientPublic, RedirectURIs: []string{"http://127.0.0.1/cb"}, CreatedAt: t0}
	must(t, b.CreateClient(ctx, pub))
	list, err := b.ListClients(ctx)
	must(t, err)
	if len(list) != 2 || list[0].ID != "app" || list[1].ID != "shop" || len(list[0].SecretHash) != 0 {
		t.Fatalf("ListClients = %+v", list)
	}

	// Deleting a client revokes what it was issued.
	must(t, b.InsertGrant(ctx, store.Grant{Receipts: []store.Receipt{receipt("at-shop", "acc_1", "shop", "fam-shop")}, Refresh: refresh("rt-shop", "acc_1", "shop", "fam-shop")}))
	must(t, b.DeleteClient(ctx, "shop", t0.Add(time.Minute)))
	mustErr(t, b.DeleteClient(ctx, "shop", t0), store.ErrNotFound)
	_, err = b.Client(ctx, "shop")
	mustErr(t, err, store.ErrNotFound)
	r, err := b.Receipt(ctx, "at-shop")
	must(t, err)
	if !r.Revoked() {
		t.Fatal("receipt of a deleted client's token is not revoked")
	}
	rt, err := b.RefreshToken(ctx, []byte("rt-shop"))
	must(t, err)
	if rt.RevokedAt.IsZero() {
		t.Fatal("refresh token of a deleted client is not revoked")
	}
	// A removed client's id is never given to another client.
	mustErr(t, b.CreateClient(ctx, c), store.ErrConflict)
}

func testKeys(t *testing.T, b Backend) {
	ctx := t.Context()
	k := store.Key{
		ID: "kid-1", Algorithm: "EdDSA", State: store.KeyPending, PublicJWK: []byte(`{"kty":"OKP"}`),
		Sealed: []byte{9, 9, 9}, Sealer: "file:abcd", Custodian: "system", CreatedAt: t0, ActivateAt: t0.Add(10 * time.Minute),
	}
	must(t, b.InsertKey(ctx, k))
	mustErr(t, b.InsertKey(ctx, k), store.ErrConflict)
	k2 := k
	k2.ID, k2.CreatedAt, k2.Imported = "kid-2", t0.Add(time.Second), true
	must(t, b.InsertKey(ctx, k2))

	keys, err := b.Keys(ctx)
	must(t, err)
	if len(keys) != 2 || !reflect.DeepEqual(keys[0], k) || !reflect.DeepEqual(keys[1], k2) {
		t.Fatalf("Keys = %+v", keys)
	}

	// Compare-and-swap on state.
	active := k
	active.State, active.ActivatedAt, active.Note = store.KeyActive, t0.Add(time.Hour), "rotation"
	must(t, b.UpdateKey(ctx, active, store.KeyPending))
	mustErr(t, b.UpdateKey(ctx, active, store.KeyPending), store.ErrConflict)
	mustErr(t, b.UpdateKey(ctx, store.Key{ID: "kid-missing", State: store.KeyActive}, store.KeyPending), store.ErrNotFound)

	// Key material and identity never change through UpdateKey, except
	// that revoking a key destroys its sealed private key.
	tampered := active
	tampered.State, tampered.Sealed, tampered.Algorithm, tampered.RevokedAt = store.KeyRevoked, []byte("evil"), "HS256", t0.Add(2*time.Hour)
	must(t, b.UpdateKey(ctx, tampered, store.KeyActive))
	keys, _ = b.Keys(ctx)
	if keys[0].State != store.KeyRevoked || !keys[0].RevokedAt.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("after revoke: %+v", keys[0])
	}
	if len(keys[0].Sealed) != 0 || keys[0].Algorithm != "EdDSA" {
		t.Fatalf("after revoke: sealed %q, algorithm %s; want the sealed key destroyed and the algorithm kept", keys[0].Sealed, keys[0].Algorithm)
	}
	if string(keys[1].Sealed) != string(k2.Sealed) {
		t.Fatal("revoking one key touched another's sealed key")
	}
	// A revoked key's ID still cannot be reused.
	mustErr(t, b.InsertKey(ctx, k), store.ErrConflict)

	// A retired key's sealed private key can be destroyed; only a retired
	// key's, and nothing else about it changes.
	mustErr(t, b.DestroySealedKey(ctx, "kid-2"), store.ErrConflict) // pending
	mustErr(t, b.DestroySealedKey(ctx, "kid-missing"), store.ErrNotFound)
	retired := k2
	retired.State, retired.RetiredAt, retired.Note = store.KeyRetired, t0.Add(3*time.Hour), "retired: rotation"
	must(t, b.UpdateKey(ctx, retired, store.KeyPending))
	must(t, b.DestroySealedKey(ctx, "kid-2"))
	must(t, b.DestroySealedKey(ctx, "kid-2"))
	keys, _ = b.Keys(ctx)
	want := retired
	want.Sealed = keys[1].Sealed
	if len(keys[1].Sealed) != 0 || !reflect.DeepEqual(keys[1], want) {
		t.Fatalf("after DestroySealedKey: %+v, want %+v without its sealed key", keys[1], retired)
	}
}

func testCustodians(t *testing.T, b Backend) {
	ctx := t.Context()
	list, err := b.OffboardedCustodians(ctx)
	must(t, err)
	if len(list) != 0 {
		t.Fatalf("offboarded custodians of a new store: %+v", list)
	}
	bob := store.Offboarding{Custodian: "bob", At: t0.Add(time.Hour), Actor: "ops-lead", Reason: "left the company"}
	alice := store.Offboarding{Custodian: "alice", At: t0, Actor: "ops-lead", Reason: "contract ended"}
	must(t, b.OffboardCustodian(ctx, bob))
	must(t, b.OffboardCustodian(ctx, alice))
	again := bob
	again.At, again.Reason = t0.Add(2*time.Hour), "again"
	mustErr(t, b.OffboardCustodian(ctx, again), store.ErrConflict)
	list, err = b.OffboardedCustodians(ctx)
	must(t, err)
	if !reflect.DeepEqual(list, []store.Offboarding{alice, bob}) {
		t.Fatalf("offboarded custodians %+v, want alice then bob as first recorded", list)
	}
}

func receipt(jti, sub, client, family string) store.Receipt {
	return store.Receipt{
		JTI: jti, Kind: store.ReceiptAccess, Subject: sub, ClientID: client, KeyID: "kid-1",
		IssuedAt: t0, ExpiresAt: t0.Add(10 * time.Minute), SessionID: "sid-1", Grant: "authorization_code",
		ClientIP: "203.0.113.7", FamilyID: family,
	}
}

func refresh(hash, sub, client, family string) *store.RefreshToken {
	return &store.RefreshToken{
		Hash: []byte(hash), JTI: "rt-jti-" + hash, FamilyID: family, ClientID: client, Subject: sub, SessionID: "sid-1",
		Scope: "openid", Audience: "api", AuthTime: t0, IssuedAt: t0, ExpiresAt: t0.Add(24 * time.Hour),
		Grant: "authorization_code", ClientIP: "203.0.113.7",
	}
}

func testGrants(t *testing.T, b Backend) {
	ctx := t.Context()
	at := receipt("jti-a", "acc_1", "shop", "fam-1")
	id := at
	id.JTI, id.Kind = "jti-id", store.ReceiptID
	rt := refresh("hash-1", "acc_1", "shop", "fam-1")
	must(t, b.InsertGrant(ctx, store.Grant{Receipts: []store.Receipt{at, id}, Refresh: rt}))

	got, err := b.Receipt(ctx, "jti-a")
	must(t, err)
	if !reflect.DeepEqual(got, at) {
		t.Fatalf("Receipt = %+v, want %+v", got, at)
	}
	gotRT, err := b.RefreshToken(ctx, []byte("hash-1"))
	must(t, err)
	if !reflect.DeepEqual(gotRT, *rt) {
		t.Fatalf("RefreshToken = %+v, want %+v", gotRT, *rt)
	}
	_, err = b.Receipt(ctx, "jti-missing")
	mustErr(t, err, store.ErrNotFound)

	// All or nothing: a grant with a duplicate jti records nothing.
	fresh := receipt("jti-b", "acc_1", "shop", "fam-2")
	err = b.InsertGrant(ctx, store.Grant{Receipts: []store.Receipt{fresh, at}, Refresh: refresh("hash-2", "acc_1", "shop", "fam-2")})
	mustErr(t, err, store.ErrConflict)
	_, err = b.Receipt(ctx, "jti-b")
	mustErr(t, err, store.ErrNotFound)
	_, err = b.RefreshToken(ctx, []byte("hash-2"))
	mustErr(t, err, store.ErrNotFound)

	// The grant's session is active while one of its tokens lives.
	sids, err := b.ActiveSessions(ctx, t0, 10)
	must(t, err)
	if len(sids) != 1 || sids[0] != "sid-1" {
		t.Fatalf("active sessions %q", sids)
	}
	sids, err = b.ActiveSessions(ctx, t0.Add(400*24*time.Hour), 10)
	must(t, err)
	if len(sids) != 0 {
		t.Fatalf("active sessions after every token expired %q", sids)
	}
}

func testAuthCodes(t *testing.T, b Backend) {
	ctx := t.Context()
	c := store.AuthCode{
		Hash: []byte("code-1"), ClientID: "shop", RedirectURI: "https://shop.example/cb", Subject: "acc_1", SessionID: "sid-1",
		Scope: "openid", Nonce: "n", CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", Audience: "api",
		AuthTime: t0, ExpiresAt: t0.Add(time.Minute),
	}
	must(t, b.InsertAuthCode(ctx, c))
	mustErr(t, b.InsertAuthCode(ctx, c), store.ErrConflict)
	got, err := b.AuthCode(ctx, c.Hash)
	must(t, err)
	if !reflect.DeepEqual(got, c) {
		t.Fatalf("AuthCode = %+v, want %+v", got, c)
	}

	g := store.Grant{Receipts: []store.Receipt{receipt("jti-code", "acc_1", "shop", "fam-c")}, Refresh: refresh("hash-c", "acc_1", "shop", "fam-c")}
	used := t0.Add(10 * time.Second)
	must(t, b.RedeemAuthCode(ctx, c.Hash, used, "fam-c", g))
	got, _ = b.AuthCode(ctx, c.Hash)
	if !got.UsedAt.Equal(used) || got.FamilyID != "fam-c" {
		t.Fatalf("after redeem: %+v", got)
	}
	if _, err := b.Receipt(ctx, "jti-code"); err != nil {
		t.Fatalf("grant receipt not recorded: %v", err)
	}

	// A replay changes nothing and records nothing.
	replay := store.Grant{Receipts: []store.Receipt{receipt("jti-replay", "acc_1", "shop", "fam-r")}}
	mustErr(t, b.RedeemAuthCode(ctx, c.Hash, used.Add(time.Second), "fam-r", replay), store.ErrReused)
	_, err = b.Receipt(ctx, "jti-replay")
	mustErr(t, err, store.ErrNotFound)
	got, _ = b.AuthCode(ctx, c.Hash)
	if got.FamilyID != "fam-c" {
		t.Fatalf("replay changed the code's family to %q", got.FamilyID)
	}
	mustErr(t, b.RedeemAuthCode(ctx, []byte("no-such-code"), used, "fam-x", store.Grant{}), store.ErrNotFound)

	// A grant that fails to record leaves the code unspent.
	c2 := c
	c2.Hash = []byte("code-2")
	must(t, b.InsertAuthCode(ctx, c2))
	mustErr(t, b.RedeemAuthCode(ctx, c2.Hash, used, "fam-d", store.Grant{Receipts: []store.Receipt{receipt("jti-code", "acc_1", "shop", "fam-d")}}), store.ErrConflict)
	got, _ = b.AuthCode(ctx, c2.Hash)
	if !got.UsedAt.IsZero() {
		t.Fatal("a failed redemption spent the code")
	}
}

func testRefreshRotation(t *testing.T, b Backend) {
	ctx := t.Context()
	must(t, b.InsertGrant(ctx, store.Grant{Refresh: refresh("r1", "acc_1", "shop", "fam")}))
	next := store.Grant{Receipts: []store.Receipt{receipt("jti-r2", "acc_1", "shop", "fam")}, Refresh: refresh("r2", "acc_1", "shop", "fam")}
	spent := t0.Add(time.Minute)
	must(t, b.RotateRefresh(ctx, []byte("r1"), spent, next))
	r1, _ := b.RefreshToken(ctx, []byte("r1"))
	if !r1.SpentAt.Equal(spent) {
		t.Fatalf("r1 not spent: %+v", r1)
	}

	// Presenting r1 again is reuse, and changes nothing.
	again := store.Grant{Receipts: []store.Receipt{receipt("jti-r3", "acc_1", "shop", "fam")}, Refresh: refresh("r3", "acc_1", "shop", "fam")}
	mustErr(t, b.RotateRefresh(ctx, []byte("r1"), spent, again), store.ErrReused)
	_, err := b.RefreshToken(ctx, []byte("r3"))
	mustErr(t, err, store.ErrNotFound)
	mustErr(t, b.RotateRefresh(ctx, []byte("missing"), spent, again), store.ErrNotFound)

	// Concurrent use of one token: exactly one rotation wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, reused := 0, 0
	for i := range 8 {
		wg.Go(func() {
			g := store.Grant{Refresh: refresh(fmt.Sprintf("r2-child-%d", i), "acc_1", "shop", "fam")}
			err := b.RotateRefresh(ctx, []byte("r2"), spent, g)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, store.ErrReused):
				reused++
			default:
				t.Errorf("concurrent rotate: %v", err)
			}
		})
	}
	wg.Wait()
	if wins != 1 || reused != 7 {
		t.Fatalf("concurrent rotation: %d won, %d reused; want 1 and 7", wins, reused)
	}

	// A revoked token cannot be rotated.
	n, err := b.RevokeFamily(ctx, "fam", spent)
	must(t, err)
	if n != 1 {
		t.Fatalf("RevokeFamily revoked %d receipts, want 1", n)
	}
	for i := range 8 {
		err := b.RotateRefresh(ctx, fmt.Appendf(nil, "r2-child-%d", i), spent, store.Grant{})
		if err == nil {
			t.Fatal("rotated a refresh token of a revoked family")
		}
	}
}

func testRevocation(t *testing.T, b Backend) {
	ctx := t.Context()
	now := t0.Add(time.Minute)
	epoch := func() uint64 {
		t.Helper()
		e, err := b.RevocationEpoch(ctx)
		must(t, err)
		return e
	}
	expired := receipt("old", "acc_1", "shop", "")
	expired.ExpiresAt = t0.Add(-time.Minute)
	e0 := epoch()
	must(t, b.InsertGrant(ctx, store.Grant{Receipts: []store.Receipt{
		receipt("a1", "acc_1", "shop", "f1"), receipt("a2", "acc_1", "app", "f2"), receipt("b1", "acc_2", "shop", "f3"), expired,
	}, Refresh: refresh("ra", "acc_1", "shop", "f1")}))
	if epoch() != e0 {
		t.Fatal("a grant changed the revocation epoch")
	}

	must(t, b.RevokeReceipt(ctx, "b1", now))
	e1 := epoch()
	if e1 == e0 {
		t.Fatal("revoking a receipt left the revocation epoch as it was")
	}
	must(t, b.RevokeReceipt(ctx, "b1", now.Add(time.Hour)))
	if epoch() != e1 {
		t.Fatal("revoking a revoked receipt again changed the revocation epoch")
	}
	r, _ := b.Receipt(ctx, "b1")
	if !r.RevokedAt.Equal(now) {
		t.Fatalf("revoking twice moved RevokedAt to %v", r.RevokedAt)
	}
	mustErr(t, b.RevokeReceipt(ctx, "missing", now), store.ErrNotFound)

	n, err := b.RevokeSubject(ctx, "acc_1", now)
	must(t, err)
	if n != 2 {
		t.Fatalf("RevokeSubject revoked %d families, want 2 (unexpired ones only)", n)
	}
	if epoch() == e1 {
		t.Fatal("RevokeSubject left the revocation epoch as it was")
	}
	for _, jti := range []string{"a1", "a2"} {
		if r, _ := b.Receipt(ctx, jti); !r.Revoked() {
			t.Fatalf("%s not revoked", jti)
		}
	}
	if rt, _ := b.RefreshToken(ctx, []byte("ra")); rt.RevokedAt.IsZero() {
		t.Fatal("RevokeSubject left the refresh token")
	}
	// b1 was revoked alone; its family f3 was not, and f9 is new: the
	// session's two unrevoked families.
	must(t, b.InsertGrant(ctx, store.Grant{Receipts: []store.Receipt{receipt("s1", "acc_3", "shop", "f9")}}))
	n, err = b.RevokeSession(ctx, "sid-1", now)
	must(t, err)
	if n != 2 {
		t.Fatalf("RevokeSession revoked %d families, want 2", n)
	}
	if r, _ := b.Receipt(ctx, "s1"); !r.Revoked() {
		t.Fatal("RevokeSession left s1")
	}
	// A revoked session was still started by a sign-in.
	if sids, err := b.ActiveSessions(ctx, t0, 10); err != nil || !slices.Contains(sids, "sid-1") {
		t.Fatalf("active sessions after revoking sid-1: %q, %v", sids, err)
	}

	// A token refreshed shortly before its family's refresh token expires
	// outlives it, and a revocation after that expiry still reaches it.
	last := refresh("rz", "acc_4", "shop", "fz")
	last.SessionID, last.ExpiresAt = "sid-z", now.Add(time.Minute)
	must(t, b.InsertGrant(ctx, store.Grant{Refresh: last}))
	late := receipt("late", "acc_4", "shop", "fz")
	late.SessionID, late.IssuedAt, late.ExpiresAt = "sid-z", now.Add(50*time.Second), now.Add(10*time.Minute)
	must(t, b.InsertGrant(ctx, store.Grant{Receipts: []store.Receipt{late}}))
	n, err = b.RevokeSubject(ctx, "acc_4", now.Add(2*time.Minute))
	must(t, err)
	if r, _ := b.Receipt(ctx, "late"); n != 1 || !r.Revoked() {
		t.Fatalf("revoking a family past its refresh token's expiry: %d revoked, late token revoked %v", n, r.Revoked())
	}
	// A family whose every token has expired has nothing left to revoke.
	gone := refresh("ry", "acc_4", "shop", "fy")
	gone.ExpiresAt = now.Add(time.Minute)
	must(t, b.InsertGrant(ctx, store.Grant{Refresh: gone}))
	n, err = b.RevokeFamily(ctx, "fy", now.Add(time.Hour))
	must(t, err)
	if n != 0 {
		t.Fatalf("RevokeFamily of an expired family revoked %d", n)
	}
	if n, _ = b.RevokeFamily(ctx, "fy", now); n != 1 {
		t.Fatalf("RevokeFamily of a live family revoked %d, want 1", n)
	}
}

func testPrune(t *testing.T, b Backend) {
	ctx := t.Context()
	old := receipt("old", "acc_1", "shop", "")
	old.ExpiresAt = t0.Add(-time.Hour)
	live := receipt("live", "acc_1", "shop", "")
	oldRT := refresh("old-rt", "acc_1", "shop", "f")
	oldRT.ExpiresAt = t0.Add(-time.Hour)
	must(t, b.InsertGrant(ctx, store.Grant{Receipts: []store.Receipt{old, live}, Refresh: oldRT}))
	must(t, b.InsertAuthCode(ctx, store.AuthCode{Hash: []byte("old-code"), ExpiresAt: t0.Add(-time.Hour)}))

	n, err := b.Prune(ctx, t0)
	must(t, err)
	if n != 1 {
		t.Fatalf("Prune deleted %d receipts, want 1", n)
	}
	_, err = b.Receipt(ctx, "old")
	mustErr(t, err, store.ErrNotFound)
	if _, err := b.Receipt(ctx, "live"); err != nil {
		t.Fatalf("Prune deleted a live receipt: %v", err)
	}
	_, err = b.RefreshToken(ctx, []byte("old-rt"))
	mustErr(t, err, store.ErrNotFound)
	_, err = b.AuthCode(ctx, []byte("old-code"))
	mustErr(t, err, store.ErrNotFound)
}

func chunk(first uint64, entries ...string) store.Chunk {
	c := store.Chunk{First: first, Count: uint64(len(entries))}
	for _, e := range entries {
		c.Data = append(c.Data, byte(len(e)>>8), byte(len(e)))
		c.Data = append(c.Data, e...)
	}
	return c
}

func testLog(t *testing.T, b Backend) {
	ctx := t.Context()
	_, err := b.LogState(ctx)
	mustErr(t, err, store.ErrNotFound)
	st, err := b.InitLog(ctx, "example.com/audit")
	must(t, err)
	if st.Origin != "example.com/audit" || st.Sequenced != 0 || st.Integrated != 0 || st.Checkpoint != nil {
		t.Fatalf("new log state %+v", st)
	}
	// A log keeps its origin.
	st, err = b.InitLog(ctx, "other.example/audit")
	must(t, err)
	if st.Origin != "example.com/audit" {
		t.Fatalf("origin changed to %q", st.Origin)
	}

	// Sequence is a compare-and-swap on the size.
	must(t, b.Sequence(ctx, chunk(0, "a", "b", "c")))
	mustErr(t, b.Sequence(ctx, chunk(0, "x")), store.ErrConflict)
	mustErr(t, b.Sequence(ctx, chunk(4, "x")), store.ErrConflict)
	must(t, b.Sequence(ctx, chunk(3, "d", "e")))
	must(t, b.Sequence(ctx, chunk(5, "f")))
	st, err = b.LogState(ctx)
	must(t, err)
	if st.Sequenced != 6 {
		t.Fatalf("sequenced %d, want 6", st.Sequenced)
	}
	cs, err := b.Chunks(ctx, 1, 4)
	must(t, err)
	if len(cs) != 2 || cs[0].First != 0 || cs[0].Count != 3 || cs[1].First != 3 || !reflect.DeepEqual(cs[1], chunk(3, "d", "e")) {
		t.Fatalf("Chunks(1, 4) = %+v", cs)
	}
	cs, err = b.Chunks(ctx, 5, 100)
	must(t, err)
	if len(cs) != 1 || cs[0].First != 5 {
		t.Fatalf("Chunks(5, 100) = %+v", cs)
	}

	// Integrate is a compare-and-swap too, and never beyond what is stored.
	part := func(level uint8, index uint64, num uint8, w int) store.TilePart {
		return store.TilePart{Level: level, Index: index, Part: num, Width: w, Data: bytes.Repeat([]byte{num}, 32*w)}
	}
	in := store.Integration{Size: 3, Tiles: []store.TilePart{part(0, 0, 0, 3)}, Checkpoint: []byte("cp3"), Time: t0}
	mustErr(t, b.Integrate(ctx, 1, in), store.ErrConflict)
	mustErr(t, b.Integrate(ctx, 0, store.Integration{Size: 7, Checkpoint: []byte("cp7"), Time: t0}), store.ErrConflict)
	must(t, b.Integrate(ctx, 0, in))
	mustErr(t, b.Integrate(ctx, 0, in), store.ErrConflict)
	wide := part(0, 0, 0, 6)
	wide.Data[0] = 0xff
	must(t, b.Integrate(ctx, 3, store.Integration{Size: 6, Tiles: []store.TilePart{wide}, Checkpoint: []byte("cp6"), Time: t0.Add(time.Second)}))
	got, err := b.TileParts(ctx, 0, 0, store.AllParts)
	must(t, err)
	if !reflect.DeepEqual(got, []store.TilePart{wide}) {
		t.Fatalf("tile 0/0 parts = %+v, want the widest part 0 (width 6)", got)
	}
	got, err = b.TileParts(ctx, 1, 0, store.AllParts)
	must(t, err)
	if len(got) != 0 {
		t.Fatalf("tile 1/0 has parts %+v before any was stored", got)
	}
	// Parts stored ahead keep the widest version too.
	top, p3, p5, other := part(0, 0, store.TopPart, 1), part(0, 0, 3, 4), part(0, 0, 5, 1), part(0, 1, 0, 2)
	must(t, b.PutTiles(ctx, []store.TilePart{part(0, 0, 0, 2), part(1, 0, 0, 1), top, p3, p5, other}))
	got, err = b.TileParts(ctx, 0, 0, 1<<0|1<<store.TopPart)
	must(t, err)
	if !reflect.DeepEqual(got, []store.TilePart{wide, top}) {
		t.Fatalf("tile 0/0 parts 0 and top = %+v; a narrower part may have replaced a wider one", got)
	}
	for _, c := range []struct {
		mask uint16
		want []store.TilePart
	}{
		{1 << 3, []store.TilePart{p3}},
		{1<<0 | 1<<3 | 1<<store.TopPart, []store.TilePart{wide, p3, top}},
		{store.AllParts, []store.TilePart{wide, p3, p5, top}},
		{1 << 1, nil},
	} {
		got, err = b.TileParts(ctx, 0, 0, c.mask)
		must(t, err)
		if !reflect.DeepEqual(got, c.want) {
			t.Fatalf("TileParts(0, 0, %b) = %+v, want %+v", c.mask, got, c.want)
		}
	}
	got, err = b.TileParts(ctx, 0, 1, store.AllParts)
	must(t, err)
	if !reflect.DeepEqual(got, []store.TilePart{other}) {
		t.Fatalf("tile 0/1 parts = %+v", got)
	}
	got, err = b.TileParts(ctx, 1, 0, store.AllParts)
	must(t, err)
	if len(got) != 1 || got[0].Width != 1 {
		t.Fatalf("PutTiles: tile 1/0 parts %+v", got)
	}
	if err := b.PutTiles(ctx, []store.TilePart{part(0, 2, store.TopPart+1, 1)}); err == nil {
		t.Fatal("PutTiles stored a part past the top part")
	}
	st, err = b.LogState(ctx)
	must(t, err)
	if st.Integrated != 6 || string(st.Checkpoint) != "cp6" {
		t.Fatalf("state after integration %+v", st)
	}
	cps, err := b.Checkpoints(ctx, 0, 10)
	must(t, err)
	if len(cps) != 2 || cps[0].Size != 3 || string(cps[0].Note) != "cp3" || !cps[0].Time.Equal(t0) || cps[1].Size != 6 {
		t.Fatalf("checkpoints %+v", cps)
	}
	cps, err = b.Checkpoints(ctx, 3, 10)
	must(t, err)
	if len(cps) != 1 || cps[0].Size != 6 {
		t.Fatalf("checkpoints after 3: %+v", cps)
	}

	// Pruning deletes whole chunks below the point, never moves back, and
	// never passes the tree.
	mustErr(t, b.PruneEntries(ctx, 7), store.ErrConflict)
	must(t, b.PruneEntries(ctx, 4))
	mustErr(t, b.PruneEntries(ctx, 2), store.ErrConflict)
	cs, err = b.Chunks(ctx, 0, 6)
	must(t, err)
	if len(cs) != 2 || cs[0].First != 3 {
		t.Fatalf("after pruning to 4, chunks %+v", cs)
	}
	st, err = b.LogState(ctx)
	must(t, err)
	if st.Pruned != 4 {
		t.Fatalf("pruned %d, want 4", st.Pruned)
	}
}

// testAppendChunk checks appends that take the next index inside their
// transaction, alone and with a grant, and that a failed grant appends
// nothing.
func testAppendChunk(t *testing.T, b Backend) {
	ctx := t.Context()
	_, err := b.AppendChunk(ctx, 1, chunk(0, "x").Data)
	mustErr(t, err, store.ErrNotFound) // no log yet
	_, err = b.InitLog(ctx, "example.com/audit")
	must(t, err)
	first, err := b.AppendChunk(ctx, 2, chunk(0, "a", "b").Data)
	must(t, err)
	if first != 0 {
		t.Fatalf("first append at %d", first)
	}
	must(t, b.InsertGrant(ctx, store.Grant{Receipts: []store.Receipt{receipt("j1", "acc_1", "shop", "")}, Events: [][]byte{[]byte("issued-1")}}))
	// A grant that fails writes neither its receipts nor its events.
	err = b.InsertGrant(ctx, store.Grant{Receipts: []store.Receipt{receipt("j1", "acc_1", "shop", "")}, Events: [][]byte{[]byte("issued-again")}})
	mustErr(t, err, store.ErrConflict)
	first, err = b.AppendChunk(ctx, 1, chunk(0, "c").Data)
	must(t, err)
	if first != 3 {
		t.Fatalf("append after a grant's event at %d, want 3", first)
	}
	// Concurrent appends get disjoint indexes.
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[uint64]bool{}
	for range 20 {
		wg.Go(func() {
			f, err := b.AppendChunk(ctx, 2, chunk(0, "p", "q").Data)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if seen[f] || seen[f+1] {
				t.Errorf("index %d given twice", f)
			}
			seen[f], seen[f+1] = true, true
		})
	}
	wg.Wait()
	st, err := b.LogState(ctx)
	must(t, err)
	if st.Sequenced != 44 {
		t.Fatalf("sequenced %d, want 44", st.Sequenced)
	}
	cs, err := b.Chunks(ctx, 2, 3)
	must(t, err)
	if len(cs) != 1 || cs[0].First != 2 || cs[0].Count != 1 || string(cs[0].Data[2:]) != "issued-1" {
		t.Fatalf("the grant's event chunk: %+v", cs)
	}

	// A large append may be stored in several chunks; read back, they
	// hold exactly its entries, in order.
	var entries []string
	for i := range 300 {
		entries = append(entries, strings.Repeat(string(rune('a'+i%26)), 1+i*7%1500))
	}
	big := chunk(0, entries...)
	first, err = b.AppendChunk(ctx, uint64(len(entries)), big.Data)
	must(t, err)
	if first != 44 {
		t.Fatalf("large append at %d, want 44", first)
	}
	cs, err = b.Chunks(ctx, first, first+uint64(len(entries)))
	must(t, err)
	var got []byte
	next := first
	for _, c := range cs {
		if c.First != next {
			t.Fatalf("chunks of the large append: one starts at %d, want %d", c.First, next)
		}
		got = append(got, c.Data...)
		next += c.Count
	}
	if next != first+uint64(len(entries)) || !bytes.Equal(got, big.Data) {
		t.Fatalf("the large append read back as %d entries (%d bytes), want %d (%d bytes)", next-first, len(got), len(entries), len(big.Data))
	}

	// A chunk whose data does not hold count entries is refused and
	// appends nothing.
	for _, bad := range []struct {
		count uint64
		data  []byte
	}{
		{3, chunk(0, "a", "b").Data},
		{1, chunk(0, "a", "b").Data},
		{1, chunk(0, "abc").Data[:3]},
		{1, []byte{0}},
	} {
		if _, err := b.AppendChunk(ctx, bad.count, bad.data); err == nil {
			t.Fatalf("AppendChunk(%d, %q) succeeded", bad.count, bad.data)
		}
	}
	st, err = b.LogState(ctx)
	must(t, err)
	if st.Sequenced != 344 {
		t.Fatalf("sequenced %d after refused appends, want 344", st.Sequenced)
	}
}

func testNoteKeys(t *testing.T, b Backend) {
	ctx := t.Context()
	k := store.NoteKey{Name: "example.com/audit", Public: []byte("0123456789abcdef0123456789abcdef"), Sealed: []byte("sealed"), Sealer: "local:x", Created: t0}
	_, err := b.NoteKey(ctx, k.Name)
	mustErr(t, err, store.ErrNotFound)
	must(t, b.InsertNoteKey(ctx, k))
	mustErr(t, b.InsertNoteKey(ctx, k), store.ErrConflict)
	got, err := b.NoteKey(ctx, k.Name)
	must(t, err)
	if !reflect.DeepEqual(got, k) {
		t.Fatalf("NoteKey = %+v, want %+v", got, k)
	}
}

// testConcurrentWrites checks that concurrent writes all land, and that a
// failing write among them does not undo the others.
func testConcurrentWrites(t *testing.T, b Backend) {
	ctx := context.Background()
	must(t, b.InsertGrant(ctx, store.Grant{Receipts: []store.Receipt{receipt("dup", "acc_1", "shop", "")}}))
	const n = 200
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			jti := fmt.Sprintf("c-%d", i)
			if i%10 == 0 {
				jti = "dup" // conflicts
			}
			errs[i] = b.InsertGrant(ctx, store.Grant{Receipts: []store.Receipt{receipt(jti, "acc_1", "shop", "")}})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if i%10 == 0 {
			mustErr(t, err, store.ErrConflict)
			continue
		}
		must(t, err)
		if _, err := b.Receipt(ctx, fmt.Sprintf("c-%d", i)); err != nil {
			t.Fatalf("write %d acknowledged but not found: %v", i, err)
		}
	}
}
