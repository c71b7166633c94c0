package clients_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/custos-dev/custos/internal/clients"
	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/store"
	"github.com/custos-dev/custos/internal/store/sqlite"
)

// recorder keeps the events the registry emits.
type recorder struct {
	mu     sync.Mutex
	events []event.Event
}

func (r *recorder) Emit(_ context.Context, e event.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	return nil
}

func registry(t *testing.T) (*clients.Registry, *recorder) {
	t.Helper()
	st, err := sqlite.Open(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rec := &recorder{}
	return clients.New(st, rec), rec
}

func TestAddValidates(t *testing.T) {
	r, _ := registry(t)
	bad := []struct {
		name  string
		spec  clients.Spec
		field string
	}{
		{"bad id", clients.Spec{ID: "-x", RedirectURIs: []string{"https://a.example/cb"}}, "id"},
		{"id with space", clients.Spec{ID: "a b", RedirectURIs: []string{"https://a.example/cb"}}, "id"},
		{"http not loopback", clients.Spec{ID: "a1", RedirectURIs: []string{"http://evil.example/cb"}}, "redirect-uri"},
		{"fragment", clients.Spec{ID: "a1", RedirectURIs: []string{"https://a.example/cb#x"}}, "redirect-uri"},
		{"relative", clients.Spec{ID: "a1", RedirectURIs: []string{"/cb"}}, "redirect-uri"},
		{"userinfo", clients.Spec{ID: "a1", RedirectURIs: []string{"https://u:p@a.example/cb"}}, "redirect-uri"},
		{"private scheme for confidential", clients.Spec{ID: "a1", RedirectURIs: []string{"com.example.app:/cb"}}, "redirect-uri"},
		{"javascript", clients.Spec{ID: "a1", Public: true, RedirectURIs: []string{"javascript:alert(1)"}}, "redirect-uri"},
		{"code without redirect", clients.Spec{ID: "a1", GrantTypes: []string{"authorization_code"}}, "redirect-uri"},
		{"redirect without code", clients.Spec{ID: "a1", RedirectURIs: []string{"https://a.example/cb"}, GrantTypes: []string{"client_credentials"}}, "redirect-uri"},
		{"public client credentials", clients.Spec{ID: "a1", Public: true, GrantTypes: []string{"client_credentials"}}, "grant"},
		{"implicit", clients.Spec{ID: "a1", RedirectURIs: []string{"https://a.example/cb"}, GrantTypes: []string{"implicit"}}, "grant"},
		{"password", clients.Spec{ID: "a1", GrantTypes: []string{"password"}}, "grant"},
		{"refresh alone", clients.Spec{ID: "a1", GrantTypes: []string{"refresh_token"}}, "grant"},
		{"bad scope", clients.Spec{ID: "a1", Scopes: []string{"a\"b"}}, "scope"},
		{"bad audience", clients.Spec{ID: "a1", Audiences: []string{"has space"}}, "audience"},
		{"control in name", clients.Spec{ID: "a1", Name: "x\ny", RedirectURIs: []string{"https://a.example/cb"}}, "name"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := r.Add(t.Context(), tc.spec, "test")
			ie, ok := errors.AsType[*clients.InputError](err)
			if !ok || ie.Field != tc.field {
				t.Fatalf("err = %v, want an InputError for %s", err, tc.field)
			}
		})
	}
	list, _ := r.List(t.Context())
	if len(list) != 0 {
		t.Fatalf("refused registrations stored clients: %v", list)
	}
}

func TestAddDefaultsAndSecrets(t *testing.T) {
	r, rec := registry(t)
	ctx := t.Context()
	web, secret, err := r.Add(ctx, clients.Spec{ID: "web", RedirectURIs: []string{"https://shop.example/cb"}}, "alice")
	if err != nil {
		t.Fatal(err)
	}
	webSecret := secret
	if web.Kind != store.ClientConfidential || len(secret) < 43 {
		t.Fatalf("confidential client: kind %s, secret of %d chars", web.Kind, len(secret))
	}
	sum := sha256.Sum256([]byte(secret))
	stored, _ := r.Get(ctx, "web")
	if string(stored.SecretHash) != string(sum[:]) {
		t.Fatal("the stored secret hash does not match the secret shown")
	}
	if !slices.Equal(web.GrantTypes, []string{"authorization_code", "refresh_token"}) || !slices.Contains(web.Scopes, "openid") {
		t.Fatalf("defaults for a redirecting client: %v %v", web.GrantTypes, web.Scopes)
	}

	app, secret, err := r.Add(ctx, clients.Spec{ID: "app", Public: true, RedirectURIs: []string{"com.example.app:/cb", "http://127.0.0.1/cb"}}, "alice")
	if err != nil || secret != "" || app.Kind != store.ClientPublic || len(app.SecretHash) != 0 {
		t.Fatalf("public client: %+v, secret %q, %v", app, secret, err)
	}
	svc, _, err := r.Add(ctx, clients.Spec{ID: "svc", Scopes: []string{"orders:read"}}, "alice")
	if err != nil || !slices.Equal(svc.GrantTypes, []string{"client_credentials"}) {
		t.Fatalf("service client: %+v %v", svc, err)
	}
	if _, _, err := r.Add(ctx, clients.Spec{ID: "svc"}, "alice"); !errors.Is(err, clients.ErrExists) {
		t.Fatalf("duplicate: %v, want ErrExists", err)
	}
	if err := r.Remove(ctx, "svc", "alice"); err != nil {
		t.Fatal(err)
	}
	if err := r.Remove(ctx, "svc", "alice"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("removing twice: %v", err)
	}

	var types []string
	for _, e := range rec.events {
		if e.Class != event.ClassAdmin || e.Actor != "alice" {
			t.Errorf("event %+v", e)
		}
		types = append(types, e.Type)
		if b, _ := json.Marshal(e); strings.Contains(string(b), webSecret) {
			t.Error("a client secret is in an event")
		}
	}
	want := []string{"client_registered", "client_registered", "client_registered", "client_removed"}
	if !slices.Equal(types, want) {
		t.Fatalf("events %v, want %v", types, want)
	}
}
