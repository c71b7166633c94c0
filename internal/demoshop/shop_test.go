package demoshop_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/custos-dev/custos/guard"
	"github.com/custos-dev/custos/internal/demoshop"
	"github.com/custos-dev/custos/verify"
)

func TestCustomersAreDeterministic(t *testing.T) {
	a, b := demoshop.New(7), demoshop.New(7)
	if !reflect.DeepEqual(a.Customer("acc_1"), b.Customer("acc_1")) {
		t.Fatal("the same seed and id gave two customers")
	}
	if reflect.DeepEqual(a.Customer("acc_1"), demoshop.New(8).Customer("acc_1")) {
		t.Fatal("another seed gave the same customer")
	}
	if reflect.DeepEqual(a.Customer("acc_1"), a.Customer("acc_2")) {
		t.Fatal("two ids gave the same customer")
	}
}

func TestCustomersLookReal(t *testing.T) {
	s := demoshop.New(1)
	email := regexp.MustCompile(`^[a-z.0-9]+@example\.com$`)
	phone := regexp.MustCompile(`^(010-0\d{3}-\d{4}|\+1-\d{3}-555-01\d{2})$`)
	code := regexp.MustCompile(`^#\d{4}\*$`)
	var korean, english, thirdParty, codes, orders int
	for i := range 2000 {
		c := s.Customer(fmt.Sprintf("acc_%d", i))
		if !utf8.ValidString(c.Name) || !email.MatchString(c.Email) || !phone.MatchString(c.Phone) || len(c.Addresses) == 0 {
			t.Fatalf("customer %+v", c)
		}
		if strings.Contains(c.Name, " ") {
			english++
		} else {
			korean++
		}
		for i, a := range c.Addresses {
			if a.ThirdParty != (i > 0) || !phone.MatchString(a.RecipientPhone) || a.Line1 == "" {
				t.Fatalf("address %+v", a)
			}
			if a.ThirdParty {
				thirdParty++
			}
			if a.EntranceCode != "" {
				codes++
				if !code.MatchString(a.EntranceCode) {
					t.Fatalf("entrance code %q", a.EntranceCode)
				}
			}
		}
		orders += len(c.Orders)
	}
	if korean < 1000 || english < 200 || thirdParty < 500 || codes < 1000 || orders < 2000 {
		t.Fatalf("a thin mix: %d Korean, %d English names, %d third-party addresses, %d entrance codes, %d orders", korean, english, thirdParty, codes, orders)
	}
}

type verifier map[string]*verify.Claims

func (v verifier) Verify(_ context.Context, token string) (*verify.Claims, error) {
	if c, ok := v[token]; ok {
		return c, nil
	}
	return nil, &verify.Error{Reason: verify.ReasonForged}
}

type discard struct{}

func (discard) Record(context.Context, guard.Access) error { return nil }

// Behind the guard with its policy, a customer reads their own data and
// not another's; support reads anyone's with a purpose.
func TestShopBehindTheGuard(t *testing.T) {
	p, err := guard.ParsePolicy("demoshop", strings.NewReader(demoshop.Policy))
	if err != nil {
		t.Fatal(err)
	}
	shop := demoshop.New(42)
	g, err := guard.New(guard.Config{Policy: p, Recorder: discard{}, Verifier: verifier{
		"kim":     {Subject: "acc_kim", ClientID: "shop-web", SessionID: "s1"},
		"support": {Subject: "op_park", ClientID: "console", Scope: []string{"customers:read"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	h := g.Wrap(shop.Handler())
	get := func(path, token, purpose string) (int, []byte) {
		r := httptest.NewRequest("GET", path, nil)
		r.Header.Set("Authorization", "Bearer "+token)
		if purpose != "" {
			r.Header.Set(guard.PurposeHeader, purpose)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code, w.Body.Bytes()
	}
	for _, route := range p.Routes {
		_, path, _ := strings.Cut(route.Pattern, " ")
		path = strings.Replace(path, "{id}", "acc_kim", 1)
		if status, body := get(path, "kim", ""); status != 200 || !json.Valid(body) {
			t.Errorf("kim reading %s: %d %s", path, status, body)
		}
	}
	status, body := get("/me/addresses", "kim", "")
	var addrs []demoshop.Address
	if err := json.Unmarshal(body, &addrs); status != 200 || err != nil || !reflect.DeepEqual(addrs, shop.Customer("acc_kim").Addresses) {
		t.Fatalf("kim's addresses: %d %v", status, err)
	}
	if status, body := get("/customers/acc_lee/addresses", "kim", ""); status != 403 || !strings.Contains(string(body), "subject_mismatch") {
		t.Fatalf("kim reading lee's addresses: %d %s", status, body)
	}
	if status, _ := get("/customers/acc_lee/addresses", "support", "support: delivery complaint 311"); status != 200 {
		t.Fatalf("support with a purpose: %d", status)
	}
	if status, body := get("/customers/acc_lee/addresses", "support", "marketing"); status != 403 || !strings.Contains(string(body), "purpose_not_allowed") {
		t.Fatalf("support with a purpose the policy does not list: %d %s", status, body)
	}
	if status, _ := get("/me/profile", "forged", ""); status != 401 {
		t.Fatalf("forged token: %d", status)
	}
	// The shop refuses /me without the guard's header.
	w := httptest.NewRecorder()
	shop.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/me/profile", nil))
	if w.Code != 400 {
		t.Fatalf("/me without Custos-Subject: %d", w.Code)
	}
}
