package keys

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/store"
)

// NoteKeyStore keeps note-signing keys: the audit log's checkpoint key, or
// a witness's cosigning key.
type NoteKeyStore interface {
	// InsertNoteKey adds k; an error wrapping store.ErrConflict if a key
	// with k.Name exists.
	InsertNoteKey(ctx context.Context, k store.NoteKey) error
	// NoteKey returns the key called name, or an error wrapping
	// store.ErrNotFound.
	NoteKey(ctx context.Context, name string) (store.NoteKey, error)
}

// EventNoteKeyCreated is emitted (class key) when a note-signing key is
// generated. Fields: name, public (the verifier key).
const EventNoteKeyCreated = "note_key_created"

// noteKeyAlg labels note keys in their sealed envelope's associated data,
// so a note key's envelope can never be opened as a token-signing key.
const noteKeyAlg = "note-Ed25519"

// NoteKey is an Ed25519 key that signs C2SP signed notes. Like a token
// signing key it is generated inside custody, sealed at rest under the root
// key, and handed out only as a crypto.Signer; unlike one, it never
// rotates, because the checkpoints it signs are checked against it for as
// long as the log exists.
type NoteKey struct {
	name   string
	pub    ed25519.PublicKey
	signer *keySigner
}

// OpenNoteKey returns the note key called name, generating and sealing it
// on first use. A key sealed under another root key fails with a
// *RootKeyMismatchError.
func OpenNoteKey(ctx context.Context, st NoteKeyStore, sealer Sealer, sink event.Sink, name string, now time.Time) (*NoteKey, error) {
	rec, err := st.NoteKey(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		rec, err = createNoteKey(ctx, st, sealer, sink, name, now)
	}
	if err != nil {
		return nil, err
	}
	if !sameSealer(rec.Sealer, sealer) {
		return nil, &RootKeyMismatchError{KeyID: "note:" + name, SealedBy: rec.Sealer, Have: sealer.Name()}
	}
	der, err := openPrivateKey(ctx, sealer, noteKID(name), noteKeyAlg, rec.Sealed)
	if err != nil {
		return nil, err
	}
	defer clear(der)
	priv, err := parsePKCS8(der, AlgEdDSA)
	if err != nil {
		return nil, fmt.Errorf("keys: note key %q: %w", name, err)
	}
	pub := ed25519.PublicKey(rec.Public)
	if len(pub) != ed25519.PublicKeySize || !pub.Equal(priv.Public()) {
		wipe(priv)
		return nil, fmt.Errorf("keys: note key %q: sealed private key does not match its public key: %w", name, ErrSealBroken)
	}
	always := func(string) error { return nil }
	return &NoteKey{name: name, pub: pub, signer: &keySigner{kid: noteKID(name), key: priv, usable: always}}, nil
}

func noteKID(name string) string { return "note:" + name }

func createNoteKey(ctx context.Context, st NoteKeyStore, sealer Sealer, sink event.Sink, name string, now time.Time) (store.NoteKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return store.NoteKey{}, fmt.Errorf("keys: generate note key: %w", err)
	}
	defer clear(priv)
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return store.NoteKey{}, fmt.Errorf("keys: note key %q: cannot encode private key", name)
	}
	defer clear(der)
	sealed, err := sealPrivateKey(ctx, sealer, noteKID(name), noteKeyAlg, der)
	if err != nil {
		return store.NoteKey{}, err
	}
	rec := store.NoteKey{Name: name, Public: pub, Sealed: sealed, Sealer: sealer.Name(), Created: now}
	if err := st.InsertNoteKey(ctx, rec); err != nil {
		if errors.Is(err, store.ErrConflict) { // another node made it first
			return st.NoteKey(ctx, name)
		}
		return store.NoteKey{}, fmt.Errorf("keys: store note key %q: %w", name, err)
	}
	e := event.Event{Time: now, Class: event.ClassKey, Type: EventNoteKeyCreated, Actor: "system",
		Fields: map[string]any{"name": name, "public": base64.StdEncoding.EncodeToString(pub)}}
	if err := sink.Emit(ctx, e); err != nil {
		return store.NoteKey{}, fmt.Errorf("keys: record note key creation: %w", err)
	}
	return rec, nil
}

// Name is the key's name: for a log key, the log's origin.
func (k *NoteKey) Name() string { return k.name }

// PublicKey returns the Ed25519 public key.
func (k *NoteKey) PublicKey() ed25519.PublicKey { return k.pub }

// Signer returns the key as a crypto.Signer.
func (k *NoteKey) Signer() crypto.Signer { return k.signer }

func (k *NoteKey) String() string               { return "NoteKey(" + k.name + ")" }
func (k *NoteKey) GoString() string             { return k.String() }
func (k *NoteKey) Format(f fmt.State, _ rune)   { fmt.Fprint(f, k.String()) }
func (k *NoteKey) LogValue() slog.Value         { return slog.StringValue(k.String()) }
func (k *NoteKey) MarshalJSON() ([]byte, error) { return json.Marshal(k.String()) }
