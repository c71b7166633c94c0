package sqlite_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/custos-dev/custos/internal/store"

	"github.com/custos-dev/custos/internal/store/sqlite"
	"github.com/custos-dev/custos/internal/store/storetest"
)

var _ storetest.Backend = (*sqlite.Store)(nil)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		s, err := sqlite.Open(t.Context(), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestReopenKeepsWrites(t *testing.T) {
	dir := t.TempDir()
	s, err := sqlite.Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	a := store.Account{ID: "acc_1", LoginID: "kim@example.com", Name: "김민준", PasswordHash: "h", CreatedAt: time.Unix(1, 0).UTC(), UpdatedAt: time.Unix(1, 0).UTC()}
	if err := s.CreateAccount(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAccount(t.Context(), a); !errors.Is(err, sqlite.ErrClosed) {
		t.Fatalf("write after Close: %v, want ErrClosed", err)
	}

	s, err = sqlite.Open(t.Context(), dir) // migrations are idempotent
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Account(t.Context(), "acc_1")
	if err != nil || got.Name != a.Name {
		t.Fatalf("after reopen: %+v, %v", got, err)
	}
	fi, err := os.Stat(filepath.Join(dir, sqlite.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("database mode %v, want 0600", fi.Mode().Perm())
	}
}
