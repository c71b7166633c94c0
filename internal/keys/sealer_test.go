package keys_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/custos-dev/custos/internal/keys"
)

func TestSealerRoundTripAndTamper(t *testing.T) {
	ctx := t.Context()
	fileSealer, err := keys.OpenFileSealer(filepath.Join(t.TempDir(), "root.key"), true)
	if err != nil {
		t.Fatal(err)
	}
	root := make([]byte, keys.RootKeySize)
	rand.Read(root)
	envSealer, err := keys.NewEnvSealer("CUSTOS_ROOT_KEY", base64.StdEncoding.EncodeToString(root))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []keys.Sealer{fileSealer, envSealer} {
		t.Run(s.Name(), func(t *testing.T) {
			pt := []byte("a data-encryption key, 32 bytes!")
			aad := []byte("kid-A")
			sealed, err := s.Seal(ctx, pt, aad)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(sealed, pt) {
				t.Fatal("sealed output contains the plaintext")
			}
			got, err := s.Open(ctx, sealed, aad)
			if err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("Open = %q, %v", got, err)
			}
			again, _ := s.Seal(ctx, pt, aad)
			if bytes.Equal(again, sealed) {
				t.Fatal("two seals are identical: nonce not random")
			}
			if _, err := s.Open(ctx, sealed, []byte("kid-B")); !errors.Is(err, keys.ErrSealBroken) {
				t.Fatalf("Open with other AAD: %v, want ErrSealBroken", err)
			}
			for _, i := range []int{0, 23, 24, len(sealed) / 2, len(sealed) - 1} {
				bad := bytes.Clone(sealed)
				bad[i] ^= 0x01
				if _, err := s.Open(ctx, bad, aad); !errors.Is(err, keys.ErrSealBroken) {
					t.Fatalf("Open with byte %d flipped: %v, want ErrSealBroken", i, err)
				}
			}
			if _, err := s.Open(ctx, sealed[:30], aad); !errors.Is(err, keys.ErrSealBroken) {
				t.Fatalf("Open truncated: %v, want ErrSealBroken", err)
			}
		})
	}
	// A different root key cannot open it.
	sealed, _ := fileSealer.Seal(ctx, []byte("secret"), nil)
	if _, err := envSealer.Open(ctx, sealed, nil); !errors.Is(err, keys.ErrSealBroken) {
		t.Fatalf("Open with another root key: %v, want ErrSealBroken", err)
	}
	if fileSealer.Name() == envSealer.Name() {
		t.Fatal("different root keys have the same name")
	}
}

func TestFileSealer(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "root.key")
	if _, err := keys.OpenFileSealer(path, false); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file without create: %v, want ErrNotExist", err)
	}
	s1, err := keys.OpenFileSealer(path, true)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Size() != keys.RootKeySize {
		t.Fatalf("root key file mode %v size %d, want 0600 and %d", fi.Mode().Perm(), fi.Size(), keys.RootKeySize)
	}
	s2, err := keys.OpenFileSealer(path, true) // exists: loaded, not replaced
	if err != nil {
		t.Fatal(err)
	}
	if s1.Name() != s2.Name() || !strings.HasPrefix(s1.Name(), "local:") {
		t.Fatalf("reopened root key has name %q, first %q", s2.Name(), s1.Name())
	}
	sealed, _ := s1.Seal(t.Context(), []byte("x"), nil)
	if _, err := s2.Open(t.Context(), sealed, nil); err != nil {
		t.Fatalf("reopened sealer cannot open: %v", err)
	}

	write := func(name string, size int, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		b := make([]byte, size)
		rand.Read(b)
		if err := os.WriteFile(p, b, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // umask-proof
			t.Fatal(err)
		}
		return p
	}
	for _, tt := range []struct {
		name string
		path string
		want string
	}{
		{"world-readable", write("r644", 32, 0o644), "must not be accessible to group or others"},
		{"group-readable", write("r640", 32, 0o640), "must not be accessible to group or others"},
		{"short", write("short", 16, 0o600), "16 bytes, want 32"},
		{"long", write("long", 33, 0o600), "33 bytes, want 32"},
		{"directory", dir, "not a regular file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, create := range []bool{false, true} {
				_, err := keys.OpenFileSealer(tt.path, create)
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("OpenFileSealer(create=%v) = %v, want error containing %q", create, err, tt.want)
				}
			}
		})
	}
}

func TestEnvSealer(t *testing.T) {
	root := make([]byte, keys.RootKeySize)
	rand.Read(root)
	var names []string
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		s, err := keys.NewEnvSealer("V", enc.EncodeToString(root)+"\n")
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, s.Name())
	}
	for _, n := range names {
		if n != names[0] {
			t.Fatalf("one root key, several names: %q", names)
		}
	}
	// Same root key by file and by environment: same name, so moving the
	// root key from the data directory to the environment keeps keys usable.
	path := filepath.Join(t.TempDir(), "root.key")
	os.WriteFile(path, root, 0o600)
	fs, err := keys.OpenFileSealer(path, false)
	if err != nil {
		t.Fatal(err)
	}
	if fs.Name() != names[0] {
		t.Fatalf("file sealer %q, env sealer %q: same root key, different names", fs.Name(), names[0])
	}
	short := base64.StdEncoding.EncodeToString(root[:20])
	for _, tt := range []struct{ value, want string }{
		{"", "empty or unset"},
		{"not base64 !!", "not base64"},
		{short, "20 bytes, want 32"},
	} {
		_, err := keys.NewEnvSealer("CUSTOS_ROOT_KEY", tt.value)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "CUSTOS_ROOT_KEY") {
			t.Fatalf("NewEnvSealer(%q) = %v, want error naming the variable and %q", tt.value, err, tt.want)
		}
		if tt.value != "" && strings.Contains(err.Error(), tt.value) {
			t.Fatalf("error %q repeats the value", err)
		}
	}
}

func TestEnvelope(t *testing.T) {
	ctx := t.Context()
	s, _ := keys.OpenFileSealer(filepath.Join(t.TempDir(), "root.key"), true)
	other, _ := keys.OpenFileSealer(filepath.Join(t.TempDir(), "root.key"), true)
	der := []byte("pretend this is a PKCS#8 private key")
	blob, err := keys.SealPrivateKey(ctx, s, "kidA", "EdDSA", der)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(blob, []byte("custos-sealed-key/v1\n")) {
		t.Fatalf("blob does not start with its format line")
	}
	got, err := keys.OpenPrivateKey(ctx, s, "kidA", "EdDSA", blob)
	if err != nil || !bytes.Equal(got, der) {
		t.Fatalf("round trip: %q, %v", got, err)
	}
	blobB, _ := keys.SealPrivateKey(ctx, s, "kidB", "EdDSA", der)
	// kidB's blob with kidA's sealed DEK spliced in, and vice versa.
	reframed, _ := keys.ReframeEnvelope(blob)
	if !bytes.Equal(reframed, blob) {
		t.Fatal("reframing changed the blob")
	}
	tests := []struct {
		name      string
		sealer    keys.Sealer
		kid, alg  string
		blob      []byte
		wantError error
	}{
		{"blob of kid A presented as kid B", s, "kidB", "EdDSA", blob, keys.ErrSealBroken},
		{"algorithm relabelled", s, "kidA", "ES256", blob, keys.ErrSealBroken},
		{"other root key", other, "kidA", "EdDSA", blob, keys.ErrSealBroken},
		{"DEK header of B on A", s, "kidA", "EdDSA", append(bytes.Clone(blobB[:len(blobB)-len(der)-16-24]), blob[len(blob)-len(der)-16-24:]...), keys.ErrSealBroken},
		{"flipped ciphertext bit", s, "kidA", "EdDSA", flip(blob, len(blob)-20), keys.ErrSealBroken},
		{"flipped magic", s, "kidA", "EdDSA", flip(blob, 3), keys.ErrSealBroken},
		{"truncated", s, "kidA", "EdDSA", blob[:len(blob)-17], keys.ErrSealBroken},
		{"empty", s, "kidA", "EdDSA", nil, keys.ErrSealBroken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := keys.OpenPrivateKey(ctx, tt.sealer, tt.kid, tt.alg, tt.blob)
			if !errors.Is(err, tt.wantError) {
				t.Fatalf("OpenPrivateKey = %v, want %v", err, tt.wantError)
			}
		})
	}
}

func flip(b []byte, i int) []byte {
	b = bytes.Clone(b)
	b[i] ^= 0x80
	return b
}

// FuzzEnvelope checks that the framing parser never panics, is bounded, and
// is exact: whatever it accepts it writes back byte for byte.
func FuzzEnvelope(f *testing.F) {
	s, _ := keys.OpenFileSealer(filepath.Join(f.TempDir(), "root.key"), true)
	blob, _ := keys.SealPrivateKey(f.Context(), s, "kid", "EdDSA", []byte("seed corpus private key"))
	f.Add(blob)
	f.Add([]byte("custos-sealed-key/v1\n"))
	f.Add([]byte("custos-sealed-key/v1\n\x00\x01x"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := keys.ReframeEnvelope(b)
		if err != nil {
			if !errors.Is(err, keys.ErrSealBroken) {
				t.Fatalf("parse error %v does not wrap ErrSealBroken", err)
			}
			return
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("round trip changed %x into %x", b, out)
		}
	})
}
