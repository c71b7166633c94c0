package guard_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/custos-dev/custos/guard"
)

const shopPolicy = `custos-guard-policy v1
# The demo shop.
mode enforce

route GET /me/profile   # a customer's own profile
    subject token
    scope profile
    data name email phone
    rate 60/m burst 20

route GET /me/addresses
	subject token
	data address entrance_code third_party_address x-delivery_notes

route GET /customers/{id}/addresses
    subject path id
    staff-scope customers:read support
    purpose support fraud_review
    data address entrance_code third_party_address
    rate 600/m per client
    mode monitor

route GET /customers/{id}/orders/{order}
    data order_history
    subject path id
    rate 10/s burst 50 per subject
`

func TestParsePolicy(t *testing.T) {
	p, err := guard.ParsePolicy("shop.policy", strings.NewReader(shopPolicy))
	if err != nil {
		t.Fatal(err)
	}
	want := []guard.Route{{
		Pattern: "GET /me/profile", Line: 5, Scopes: []string{"profile"},
		Data: []guard.Category{"name", "email", "phone"},
		Rate: &guard.Rate{N: 60, Per: time.Minute, Burst: 20, Key: guard.PerClient},
	}, {
		Pattern: "GET /me/addresses", Line: 11,
		Data: []guard.Category{"address", "entrance_code", "third_party_address", "x-delivery_notes"},
	}, {
		Pattern: "GET /customers/{id}/addresses", Line: 15, SubjectParam: "id",
		StaffScopes: []string{"customers:read", "support"},
		Purposes:    []string{"support", "fraud_review"},
		Data:        []guard.Category{"address", "entrance_code", "third_party_address"},
		Rate:        &guard.Rate{N: 600, Per: time.Minute, Burst: 600, Key: guard.PerClient},
		Mode:        guard.Monitor,
	}, {
		Pattern: "GET /customers/{id}/orders/{order}", Line: 23, SubjectParam: "id",
		Data: []guard.Category{"order_history"},
		Rate: &guard.Rate{N: 10, Per: time.Second, Burst: 50, Key: guard.PerSubject},
	}}
	if sum := sha256.Sum256([]byte(shopPolicy)); p.Digest != hex.EncodeToString(sum[:]) {
		t.Fatalf("digest %s, want the file's SHA-256", p.Digest)
	}
	if p.Mode != guard.Enforce || len(p.Routes) != len(want) {
		t.Fatalf("policy mode %v, %d routes; want enforce, %d", p.Mode, len(p.Routes), len(want))
	}
	for i, rt := range p.Routes {
		got := *rt
		if !reflect.DeepEqual(exported(got), want[i]) {
			t.Errorf("route %d = %+v\nwant %+v", i, got, want[i])
		}
	}
}

// exported returns r's exported fields.
func exported(r guard.Route) guard.Route {
	return guard.Route{Pattern: r.Pattern, Line: r.Line, SubjectParam: r.SubjectParam, Scopes: r.Scopes,
		StaffScopes: r.StaffScopes, Purposes: r.Purposes, Data: r.Data, Rate: r.Rate, Mode: r.Mode}
}

func TestPolicyDefaultMode(t *testing.T) {
	p, err := guard.ParsePolicy("p", strings.NewReader("custos-guard-policy v1\nmode monitor\nroute GET /a\n subject token\n data name\nroute GET /b\n subject token\n data name\n mode enforce\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Routes[0].Mode != guard.Monitor || p.Routes[1].Mode != guard.Enforce {
		t.Fatalf("modes %v, %v; want the default (monitor), then the route's own (enforce)", p.Routes[0].Mode, p.Routes[1].Mode)
	}
}

func TestPolicyMatch(t *testing.T) {
	p, err := guard.ParsePolicy("shop.policy", strings.NewReader(shopPolicy))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		method, target string
		pattern        string // "" for no route
		subject        string
	}{
		{"GET", "/me/profile", "GET /me/profile", ""},
		{"HEAD", "/me/profile", "GET /me/profile", ""},
		{"GET", "/customers/acc_7/addresses", "GET /customers/{id}/addresses", "acc_7"},
		{"GET", "/customers/acc%2F7/addresses", "GET /customers/{id}/addresses", "acc/7"},
		{"GET", "/customers/acc_7/orders/o_1", "GET /customers/{id}/orders/{order}", "acc_7"},
		{"POST", "/me/profile", "", ""},
		{"GET", "/me/profile/", "", ""},
		{"GET", "/me//profile", "", ""},
		{"GET", "/me/../me/profile", "", ""},
		{"GET", "/customers//addresses", "", ""},
		{"GET", "/admin", "", ""},
	}
	for _, tc := range tests {
		r := httptest.NewRequest(tc.method, "http://shop.example"+tc.target, nil)
		if tc.target == "/me/../me/profile" || tc.target == "/me//profile" {
			r.URL.Path, r.URL.RawPath = tc.target, "" // as sent, not cleaned by the test client
		}
		m, ok := p.Match(r)
		switch {
		case tc.pattern == "" && ok:
			t.Errorf("%s %s matched %s; want no route", tc.method, tc.target, m.Route.Pattern)
		case tc.pattern != "" && (!ok || m.Route.Pattern != tc.pattern || m.Subject != tc.subject):
			t.Errorf("%s %s = %+v, %v; want %s with subject %q", tc.method, tc.target, m, ok, tc.pattern, tc.subject)
		}
	}
}

func TestPolicyErrors(t *testing.T) {
	const head = "custos-guard-policy v1\n"
	route := func(lines ...string) string {
		return head + "route GET /x/{id}\n" + strings.Join(lines, "\n") + "\n"
	}
	tests := []struct {
		name, file string
		want       []string // each "LINE: fragment"
	}{
		{"empty", "", []string{`1: the file is empty`}},
		{"comments only", "# nothing\n\n", []string{`1: the file is empty`}},
		{"no version", "route GET /a\n subject token\n data name\n", []string{`1: the first directive must be "custos-guard-policy v1"`}},
		{"other version", "custos-guard-policy v2\n", []string{`1: the first directive must be`}},
		{"version twice", head + "custos-guard-policy v1\n", []string{`2: "custos-guard-policy v1" may appear only once`}},
		{"unknown directive", head + "upstream http://x\n", []string{`2: unknown directive "upstream"`}},
		{"route directive at top level", head + "data name\n", []string{`2: data belongs to a route`}},
		{"indented outside a route", head + "  data name\n", []string{`2: indented line outside a route`}},
		{"no subject", route(" data name"), []string{`2: route GET /x/{id} has no subject line`}},
		{"no data", route(" subject token"), []string{`2: route GET /x/{id} has no data line`}},
		{"repeated directive", route(" subject token", " data name", " subject path id"), []string{`5: subject is already set for this route (line 3)`}},
		{"subject without wildcard", route(" subject path user", " data name"), []string{`3: subject path user: the pattern "GET /x/{id}" has no wildcard {user}`}},
		{"bad subject", route(" subject customer", " data name"), []string{`3: subject takes "token" or "path NAME"`}},
		{"unknown category", route(" subject token", " data name shoe_size"), []string{`4: unknown data category "shoe_size"`}},
		{"category twice", route(" subject token", " data name name"), []string{`4: data category "name" given twice`}},
		{"bad custom category", route(" subject token", " data x-Shoe"), []string{`4: unknown data category "x-Shoe"`}},
		{"bad scope", route(" subject token", " data name", ` scope "quoted"`), []string{`5: scope "\"quoted\"" is not an OAuth scope token`}},
		{"empty scope", route(" subject token", " data name", " staff-scope"), []string{`5: staff-scope takes one or more scopes`}},
		{"rate zero", route(" subject token", " data name", " rate 0/s"), []string{`5: rate: "0/s": N must be a whole number`}},
		{"rate unit", route(" subject token", " data name", " rate 5/d"), []string{`5: rate: "5/d": the unit must be s, m or h`}},
		{"rate key", route(" subject token", " data name", " rate 5/s per tenant"), []string{`5: rate: per "tenant"`}},
		{"rate trailing", route(" subject token", " data name", " rate 5/s burst 9 soon"), []string{`5: rate: unexpected "soon"`}},
		{"rate huge", route(" subject token", " data name", " rate 5000000/s"), []string{`5: rate: "5000000/s": N must be`}},
		{"unknown mode", route(" subject token", " data name", " mode audit"), []string{`5: unknown mode "audit"`}},
		{"unknown route directive", route(" subject token", " data name", " cache 60s"), []string{`5: unknown route directive "cache"`}},
		{"lower-case method", head + "route get /a\n subject token\n data name\n", []string{`2: method "get"`}},
		{"host in pattern", head + "route GET shop.example/a\n subject token\n data name\n", []string{`2: path "shop.example/a" must start with /`}},
		{"route without path", head + "route GET\n", []string{`2: route takes a method and a path`}},
		{"malformed pattern", head + "route GET /a/{id\n subject token\n data name\n", []string{`2: route GET /a/{id`}},
		{"conflicting patterns", head + "route GET /a/{x}/b\n subject token\n data name\nroute GET /a/c/{y}\n subject token\n data name\n", []string{`5: route GET /a/c/{y}: `, `conflicts`}},
		{"duplicate pattern", head + "route GET /a\n subject token\n data name\nroute GET /a\n subject token\n data name\n", []string{`5: route GET /a: `}},
		{"control character", head + "mode\x00 enforce\n", []string{`2: control character`}},
		{"invalid UTF-8", head + "mode \xff\n", []string{`2: not valid UTF-8`}},
		{"long line", head + "# " + strings.Repeat("x", 5000) + "\n", []string{`2: line longer than 4096 bytes`}},
		{"several errors", head + "mode loud\nroute GET /a\n data nope\n", []string{`2: unknown mode "loud"`, `4: unknown data category "nope"`, `3: route GET /a has no subject line`}},
		{"signed rate", route(" subject token", " data name", " rate +5/m"), []string{`5: rate: "+5/m": N must be`}},
		{"signed burst", route(" subject token", " data name", " rate 5/m burst +9"), []string{`5: rate: burst "+9"`}},
		{"staff-scope on an own-data route", route(" subject token", " data name", " staff-scope support"), []string{`5: staff-scope has no effect`}},
		{"empty purpose", route(" subject path id", " staff-scope support", " data name", " purpose"), []string{`6: purpose takes one or more purpose codes`}},
		{"bad purpose code", route(" subject path id", " staff-scope support", " data name", " purpose support Fraud"), []string{`6: purpose code "Fraud": want a lowercase letter or digit`}},
		{"purpose code too long", route(" subject path id", " staff-scope support", " data name", " purpose "+strings.Repeat("a", 65)), []string{`6: purpose code "aaaa`}},
		{"purpose code twice", route(" subject path id", " staff-scope support", " data name", " purpose support fraud_review support"), []string{`6: purpose code "support" given twice`}},
		{"purpose directive twice", route(" subject path id", " staff-scope support", " data name", " purpose support", " purpose fraud_review"), []string{`7: purpose is already set for this route (line 6)`}},
		{"purpose without staff-scope", route(" subject path id", " data name", " purpose support"), []string{`5: purpose applies only to staff reads`}},
		{"purpose at top level", head + "purpose support\n", []string{`2: purpose belongs to a route`}},
		{"default mode after a route", route(" subject token", " data name") + "mode monitor\n", []string{`5: the default mode must come before the first route`}},
		{"errors after a long line", head + "# " + strings.Repeat("x", 5000) + "\nbogus\n", []string{`2: line longer than 4096 bytes`, `3: unknown directive "bogus"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := guard.ParsePolicy("p.policy", strings.NewReader(tc.file))
			if err == nil {
				t.Fatalf("parsed: %+v", p.Routes)
			}
			if !errors.Is(err, guard.ErrPolicy) {
				t.Errorf("error does not wrap ErrPolicy: %v", err)
			}
			if _, ok := errors.AsType[*guard.PolicyError](err); !ok {
				t.Errorf("error holds no *PolicyError: %v", err)
			}
			for _, w := range tc.want {
				if w[0] >= '0' && w[0] <= '9' {
					w = "p.policy:" + w // a fragment with its line
				}
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

// A policy with many bad lines reports the first 20 by line.
func TestPolicyErrorsBounded(t *testing.T) {
	_, err := guard.ParsePolicy("p", strings.NewReader("custos-guard-policy v1\nroute GET /a\n data name\n"+strings.Repeat("bogus\n", 100)))
	if n := strings.Count(err.Error(), "unknown directive"); n != 19 || !strings.Contains(err.Error(), "p:2: route GET /a has no subject line") {
		t.Fatalf("want the route's error (line 2, found at the end) and 19 more:\n%v", err)
	}
}

func TestPolicyTooLarge(t *testing.T) {
	big := "custos-guard-policy v1\n" + strings.Repeat("# padding padding padding padding padding\n", 30000)
	if _, err := guard.ParsePolicy("p", strings.NewReader(big)); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("a file over 1 MiB: %v", err)
	}
	// With CRLF line ends, a file just over the bound is refused too,
	// rather than cut short at the bound.
	pad := strings.Repeat("# padding padding padding padding padding\r\n", (1<<20)/43)
	tail := "route GET /b/{id}\r\n subject path id\r\n data name\r\n staff-scope customers:read customers:admin\r\n"
	crlf := "custos-guard-policy v1\r\n" + pad + tail
	if len(crlf) <= 1<<20 {
		crlf = strings.Replace(crlf, "# padding", "# padding padding", 200)
	}
	if _, err := guard.ParsePolicy("p", strings.NewReader(crlf)); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("a CRLF file of %d bytes: %v", len(crlf), err)
	}
	// A 4,096-byte line with CRLF is not too long.
	line := "# " + strings.Repeat("x", 4094)
	if _, err := guard.ParsePolicy("p", strings.NewReader("custos-guard-policy v1\r\n"+line+"\r\nroute GET /a\r\n subject token\r\n data name\r\n")); err != nil {
		t.Fatalf("a 4096-byte line with CRLF: %v", err)
	}
}

func FuzzParsePolicy(f *testing.F) {
	f.Add(shopPolicy)
	f.Add("custos-guard-policy v1\nroute GET /{a}/{b...}\n subject path b\n data x-a\n rate 1/h per ip\n")
	f.Add("custos-guard-policy v1\nroute GET /c/{id}\n subject path id\n staff-scope customers:read\n purpose support fraud_review 0-a\n data name\n")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := guard.ParsePolicy("fuzz", strings.NewReader(s))
		if err != nil {
			if !errors.Is(err, guard.ErrPolicy) {
				t.Fatalf("error without ErrPolicy: %v", err)
			}
			return
		}
		// A policy that parses is whole: every route has a subject and data,
		// purposes only with staff scopes, and matches a request for its
		// own path where it has no wildcard.
		for _, rt := range p.Routes {
			if len(rt.Data) == 0 || rt.Line < 2 || len(rt.Purposes) > 0 && len(rt.StaffScopes) == 0 {
				t.Fatalf("route %+v", rt)
			}
			method, path, _ := strings.Cut(rt.Pattern, " ")
			if strings.ContainsAny(path, "{}") || path != cleanPath(path) {
				continue
			}
			r := httptest.NewRequest(method, "http://x"+path, nil)
			r.URL.RawPath = ""
			if m, ok := p.Match(r); !ok || m.Route != rt {
				t.Fatalf("%s does not match its own path", rt.Pattern)
			}
		}
	})
}

// cleanPath reports the path the mux would not redirect: no empty, "." or
// ".." segments except a trailing slash.
func cleanPath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs[1:] {
		if s == "." || s == ".." || (s == "" && i != len(segs)-2) {
			return ""
		}
	}
	return p
}
