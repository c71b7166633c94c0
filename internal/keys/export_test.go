package keys

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/x509"
	"fmt"
)

// SecretsForTest returns every secret custody holds for the keys in st: each
// private key's PKCS#8 DER and raw key bytes, each DEK, and the root key of
// the local sealer. Only tests can reach it.
func SecretsForTest(ctx context.Context, c *Custody) ([][]byte, error) {
	recs, err := c.st.Keys(ctx)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	switch s := c.sealer.(type) {
	case *FileSealer:
		out = append(out, s.key)
	case *EnvSealer:
		out = append(out, s.key)
	}
	for _, r := range recs {
		if len(r.Sealed) == 0 {
			continue // destroyed
		}
		e, err := parseEnvelope(r.Sealed)
		if err != nil {
			return nil, err
		}
		dek, err := c.sealer.Open(ctx, e.sealedDEK, dekAAD(r.ID))
		if err != nil {
			return nil, err
		}
		der, err := openPrivateKey(ctx, c.sealer, r.ID, r.Algorithm, r.Sealed)
		if err != nil {
			return nil, err
		}
		out = append(out, dek, der)
		k, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			return nil, err
		}
		switch k := k.(type) {
		case ed25519.PrivateKey:
			out = append(out, k.Seed(), []byte(k))
		case *ecdsa.PrivateKey:
			d, err := k.Bytes()
			if err != nil {
				return nil, err
			}
			out = append(out, d)
		default:
			return nil, fmt.Errorf("unexpected key type %T", k)
		}
	}
	return out, nil
}

// SealPrivateKey and OpenPrivateKey expose the envelope to tests.
func SealPrivateKey(ctx context.Context, s Sealer, kid, alg string, der []byte) ([]byte, error) {
	return sealPrivateKey(ctx, s, kid, alg, der)
}

func OpenPrivateKey(ctx context.Context, s Sealer, kid, alg string, blob []byte) ([]byte, error) {
	return openPrivateKey(ctx, s, kid, alg, blob)
}

// ReframeEnvelope parses b and marshals it again.
func ReframeEnvelope(b []byte) ([]byte, error) {
	e, err := parseEnvelope(b)
	if err != nil {
		return nil, err
	}
	return e.marshal(), nil
}

// ParseImportPEM exposes the import parser to fuzzing; it returns the alg.
func ParseImportPEM(b []byte) (string, error) {
	s, err := parseImportPEM(b)
	if err != nil {
		return "", err
	}
	return algorithmOf(s.Public())
}
