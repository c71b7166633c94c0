package keys_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/keys"
)

// Custody on a new installation: one active key, one pending successor, and
// an emergency rotation by revoking the active key.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "custos-example")
	defer os.RemoveAll(dir)
	sealer, err := keys.OpenFileSealer(filepath.Join(dir, "root.key"), true)
	if err != nil {
		panic(err)
	}
	sink := event.SinkFunc(func(_ context.Context, e event.Event) error {
		fmt.Println("event:", e.Type, e.Fields["state"])
		return nil
	})
	c, err := keys.Open(ctx, &memStore{}, sealer, sink, keys.Config{})
	if err != nil {
		panic(err)
	}
	sk, _ := c.Signer(ctx)
	set, _ := c.JWKS(ctx)
	fmt.Println("published keys:", len(set.Keys), "signing with", sk.Algorithm)

	if err := c.Revoke(ctx, sk.ID, "op:alice", "laptop lost"); err != nil {
		panic(err)
	}
	_, err = c.LookupKey(ctx, sk.ID)
	fmt.Println(err != nil)
	// Output:
	// event: key_created active
	// event: key_activated active
	// event: key_created pending
	// published keys: 2 signing with EdDSA
	// event: key_revoked revoked
	// event: key_activated active
	// event: key_created pending
	// true
}
