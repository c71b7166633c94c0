package guard_test

import (
	"fmt"
	"net/http/httptest"
	"strings"

	"github.com/custos-dev/custos/guard"
)

func ExampleParsePolicy() {
	p, err := guard.ParsePolicy("shop.policy", strings.NewReader(`custos-guard-policy v1
route GET /customers/{id}/addresses
    subject path id
    staff-scope customers:read
    data address entrance_code
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	m, _ := p.Match(httptest.NewRequest("GET", "/customers/acc_7/addresses", nil))
	fmt.Println(m.Route.Pattern, m.Subject, m.Route.Data)

	_, err = guard.ParsePolicy("shop.policy", strings.NewReader("custos-guard-policy v1\nroute GET /me\n    data shoe_size\n"))
	fmt.Println(err)
	// Output:
	// GET /customers/{id}/addresses acc_7 [address entrance_code]
	// invalid guard policy:
	// shop.policy:2: route GET /me has no subject line
	// shop.policy:3: unknown data category "shoe_size" (see docs/spec/guard-policy.md; custom ones start with x-)
}
