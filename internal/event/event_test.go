package event_test

import (
	"regexp"
	"slices"
	"testing"

	"github.com/custos-dev/custos/internal/event"
)

func TestNewID(t *testing.T) {
	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	seen := map[string]bool{}
	for range 100 {
		id := event.NewID()
		if !hex32.MatchString(id) {
			t.Fatalf("NewID() = %q, want 32 lowercase hex characters", id)
		}
		if seen[id] {
			t.Fatalf("NewID() returned %q twice", id)
		}
		seen[id] = true
	}
}

func TestClasses(t *testing.T) {
	want := []event.Class{"authn", "token", "key", "admin", "alert", "access", "incident", "audit"}
	got := event.Classes()
	if !slices.Equal(got, want) {
		t.Fatalf("Classes() = %q, want %q", got, want)
	}
	for _, c := range got {
		if !c.Valid() {
			t.Errorf("%q.Valid() = false", c)
		}
	}
	got[0] = "changed"
	if event.Classes()[0] != event.ClassAuthn {
		t.Fatal("Classes() shares its slice between calls")
	}
	for _, c := range []event.Class{"", "Authn", "authn ", "auth", "system", "changed"} {
		if c.Valid() {
			t.Errorf("%q.Valid() = true", c)
		}
	}
}
