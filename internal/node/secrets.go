package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/custos-dev/custos/internal/accounts"
	"github.com/custos-dev/custos/internal/keys"
)

// secrets are the node's symmetric keys, kept sealed under the root key so
// that a copy of the data directory without the root key reveals nothing.
type secrets struct {
	DeviceKey accounts.DeviceKey
	CSRFKey   []byte
}

const secretsAAD = "custos-node-secrets/v1"

// loadSecrets opens the sealed secrets file, creating it on first start.
func loadSecrets(ctx context.Context, path string, s keys.Sealer) (*secrets, error) {
	blob, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return createSecrets(ctx, path, s)
	}
	if err != nil {
		return nil, fmt.Errorf("node secrets: %w", err)
	}
	plain, err := s.Open(ctx, blob, []byte(secretsAAD))
	if err != nil {
		return nil, fmt.Errorf("node secrets in %s do not open with this root key: %w", path, err)
	}
	if len(plain) != 64 {
		return nil, fmt.Errorf("node secrets in %s are damaged", path)
	}
	return &secrets{DeviceKey: accounts.DeviceKey(plain[:32]), CSRFKey: plain[32:]}, nil
}

func createSecrets(ctx context.Context, path string, s keys.Sealer) (*secrets, error) {
	plain := make([]byte, 64)
	rand.Read(plain)
	blob, err := s.Seal(ctx, plain, []byte(secretsAAD))
	if err != nil {
		return nil, fmt.Errorf("sealing node secrets: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("node secrets: %w", err)
	}
	if _, err := f.Write(blob); err != nil {
		f.Close()
		return nil, fmt.Errorf("node secrets: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("node secrets: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return &secrets{DeviceKey: accounts.DeviceKey(plain[:32]), CSRFKey: plain[32:]}, nil
}
