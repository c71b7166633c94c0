package accounts_test

import (
	"context"
	"fmt"

	"github.com/custos-dev/custos/internal/accounts"
)

func ExampleNormalizeLoginID() {
	for _, in := range []string{" Min.Jun@Example.KR ", "+82 10-1234-5678", "010-1234-5678"} {
		id, err := accounts.NormalizeLoginID(in)
		fmt.Printf("%q %v\n", id, err)
	}
	// Output:
	// "min.jun@example.kr" <nil>
	// "+821012345678" <nil>
	// "" accounts: invalid login_id: enter an e-mail address or a phone number starting with '+' and the country code
}

func ExampleHasher() {
	h, err := accounts.NewHasher(accounts.DefaultParams(), 0)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	hash, _ := h.Hash(ctx, "correct horse battery staple")
	fmt.Println(hash[:31])
	ok, needsRehash, _ := h.Verify(ctx, "correct horse battery staple", hash)
	fmt.Println(ok, needsRehash)
	// Output:
	// $argon2id$v=19$m=19456,t=2,p=1$
	// true false
}
