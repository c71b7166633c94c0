package keys

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/crypto/chacha20poly1305"
)

// Sealer wraps data-encryption keys under a root key it never reveals. The
// default is a root key in a 0600 file in the data directory (FileSealer);
// production may pass the root key in an environment variable (EnvSealer);
// Vault Transit, PKCS#11 or a cloud KMS fit the same interface.
//
// Name identifies the root key (not the way it was loaded): it is stored
// with every key sealed under it, so starting custos with the wrong root key
// is reported clearly instead of as a decryption failure. It must not reveal
// the root key. Open fails with an error wrapping ErrSealBroken when sealed
// or aad was altered.
type Sealer interface {
	Name() string
	Seal(ctx context.Context, plaintext, aad []byte) ([]byte, error)
	Open(ctx context.Context, sealed, aad []byte) ([]byte, error)
}

// RootKeySize is the size in bytes of a local root key.
const RootKeySize = 32

// rootKeyNamePrefix starts the Name of local (file or environment) root keys.
const rootKeyNamePrefix = "local:"

// localSealer seals with XChaCha20-Poly1305 under a 32-byte root key held in
// memory. Sealed form: 24-byte random nonce ‖ ciphertext ‖ 16-byte tag.
type localSealer struct {
	name string
	key  []byte
}

func newLocalSealer(key []byte) (*localSealer, error) {
	if len(key) != RootKeySize {
		return nil, fmt.Errorf("keys: root key is %d bytes, want %d", len(key), RootKeySize)
	}
	// The name is a domain-separated SHA-256 fingerprint prefix: it identifies
	// the root key without helping anyone recover it.
	h := sha256.New()
	io.WriteString(h, "custos root key fingerprint/v1\x00")
	h.Write(key)
	return &localSealer{
		name: rootKeyNamePrefix + hex.EncodeToString(h.Sum(nil)[:8]),
		key:  append([]byte(nil), key...),
	}, nil
}

func (s *localSealer) Name() string { return s.name }

func (s *localSealer) Seal(_ context.Context, plaintext, aad []byte) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(s.key)
	if err != nil {
		return nil, fmt.Errorf("keys: seal: %w", err)
	}
	out := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("keys: seal: %w", err)
	}
	return aead.Seal(out, out, plaintext, aad), nil
}

func (s *localSealer) Open(_ context.Context, sealed, aad []byte) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(s.key)
	if err != nil {
		return nil, fmt.Errorf("keys: open: %w", err)
	}
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return nil, fmt.Errorf("keys: open with root key %s: too short: %w", s.name, ErrSealBroken)
	}
	pt, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], aad)
	if err != nil {
		return nil, fmt.Errorf("keys: open with root key %s: %w", s.name, ErrSealBroken)
	}
	return pt, nil
}

// String, GoString and Format never show the root key.
func (s *localSealer) String() string   { return "Sealer(" + s.name + ")" }
func (s *localSealer) GoString() string { return s.String() }
func (s *localSealer) Format(f fmt.State, _ rune) {
	io.WriteString(f, s.String())
}

// FileSealer is a Sealer whose root key lives in a file: the default, in the
// data directory. Its String and Format methods never show the root key.
type FileSealer struct {
	*localSealer
	path string
}

// Path returns the root key file's path.
func (s *FileSealer) Path() string { return s.path }

// OpenFileSealer loads the 32-byte root key in path. When create is true and
// path does not exist, it generates a random root key and writes it with mode
// 0600, refusing to overwrite a file that appears meanwhile (O_EXCL). It
// refuses a file that group or others may read or write, or whose size is not
// RootKeySize.
func OpenFileSealer(path string, create bool) (*FileSealer, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) && create {
		return createRootKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("keys: root key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keys: root key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("keys: root key file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("keys: root key file %s has mode %#o; it must not be accessible to group or others (chmod 600)", path, perm)
	}
	if fi.Size() != RootKeySize {
		return nil, fmt.Errorf("keys: root key file %s is %d bytes, want %d", path, fi.Size(), RootKeySize)
	}
	key := make([]byte, RootKeySize)
	defer clear(key)
	if _, err := io.ReadFull(f, key); err != nil {
		return nil, fmt.Errorf("keys: root key file %s: %w", path, err)
	}
	ls, err := newLocalSealer(key)
	if err != nil {
		return nil, err
	}
	return &FileSealer{localSealer: ls, path: path}, nil
}

func createRootKey(path string) (*FileSealer, error) {
	key := make([]byte, RootKeySize)
	defer clear(key)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("keys: generate root key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("keys: create root key file: %w", err)
	}
	if _, err := f.Write(key); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("keys: write root key file %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("keys: write root key file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("keys: write root key file %s: %w", path, err)
	}
	ls, err := newLocalSealer(key)
	if err != nil {
		return nil, err
	}
	return &FileSealer{localSealer: ls, path: path}, nil
}

// EnvSealer is a Sealer whose root key is passed in an environment variable
// (standard or URL-safe base64, padded or not, of 32 random bytes). Its
// String and Format methods never show the root key.
type EnvSealer struct {
	*localSealer
}

// NewEnvSealer decodes value, the contents of the environment variable the
// caller chose (variable names the variable, for error messages only). The
// caller reads the environment, and should unset the variable afterwards.
// Errors never include value.
func NewEnvSealer(variable, value string) (*EnvSealer, error) {
	value = strings.TrimSpace(value)
	if value == "" {
		return nil, fmt.Errorf("keys: root key variable %s is empty or unset", variable)
	}
	var key []byte
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.Strict().DecodeString(value); err == nil {
			key = k
			break
		}
	}
	if key == nil {
		return nil, fmt.Errorf("keys: root key variable %s is not base64", variable)
	}
	defer clear(key)
	if len(key) != RootKeySize {
		return nil, fmt.Errorf("keys: root key variable %s decodes to %d bytes, want %d", variable, len(key), RootKeySize)
	}
	ls, err := newLocalSealer(key)
	if err != nil {
		return nil, err
	}
	return &EnvSealer{localSealer: ls}, nil
}

// sameSealer reports whether a key sealed under name can be opened by s.
func sameSealer(name string, s Sealer) bool {
	return subtle.ConstantTimeCompare([]byte(name), []byte(s.Name())) == 1
}
