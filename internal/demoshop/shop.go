// Package demoshop is a small shop service full of synthetic personal data,
// for demonstrating and testing the guard: customers with Korean and
// English names, e-mail addresses, phone numbers, delivery addresses with
// building-entrance codes and third-party recipients, and order histories.
//
// Every customer is generated from the shop's seed and the customer's id,
// so any id has a customer, the same one every time, and the shop holds no
// state: it serves millions of customers as easily as ten. All of it is
// fictitious: e-mail addresses are under example.com, phone numbers are in
// ranges kept for fiction (010-0xxx in Korea, 555-01xx in North America).
package demoshop

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"
)

// Customer is one synthetic customer.
type Customer struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Email     string    `json:"email"`
	Phone     string    `json:"phone"`
	Addresses []Address `json:"addresses"`
	Orders    []Order   `json:"orders"`
}

// Address is a delivery address. A third-party address delivers to
// someone else (a parent, a friend), whose name and phone it holds.
type Address struct {
	Label          string `json:"label"`
	Recipient      string `json:"recipient"`
	RecipientPhone string `json:"recipient_phone"`
	Line1          string `json:"line1"`
	Line2          string `json:"line2,omitempty"`
	PostalCode     string `json:"postal_code"`
	EntranceCode   string `json:"entrance_code,omitempty"`
	ThirdParty     bool   `json:"third_party"`
}

// Order is a past order.
type Order struct {
	ID      string    `json:"id"`
	Placed  time.Time `json:"placed"`
	Items   []string  `json:"items"`
	Total   int64     `json:"total_krw"`
	Address string    `json:"address"` // the label of the address it went to
}

// Shop generates customers from a seed.
type Shop struct{ seed uint64 }

// New returns the shop for seed.
func New(seed uint64) *Shop { return &Shop{seed: seed} }

var (
	koreanFamily = []string{"김", "이", "박", "최", "정", "강", "조", "윤", "장", "임", "한", "오", "서", "신", "권"}
	koreanGiven  = []string{"민준", "서연", "지우", "하은", "도윤", "서준", "지민", "수빈", "예준", "채원", "시우", "지아", "주원", "윤서", "현우", "다은"}
	koreanRoman  = map[string]string{
		"김": "kim", "이": "lee", "박": "park", "최": "choi", "정": "jung", "강": "kang", "조": "cho", "윤": "yoon",
		"장": "jang", "임": "lim", "한": "han", "오": "oh", "서": "seo", "신": "shin", "권": "kwon",
	}
	englishGiven  = []string{"Olivia", "Liam", "Emma", "Noah", "Ava", "James", "Mia", "Lucas", "Grace", "Ethan", "Chloe", "Daniel"}
	englishFamily = []string{"Smith", "Johnson", "Brown", "Taylor", "Wilson", "Clark", "Lewis", "Walker", "Hall", "Young"}
	districts     = []string{"강남구 테헤란로", "마포구 월드컵북로", "송파구 올림픽로", "서초구 반포대로", "용산구 한강대로", "성동구 왕십리로", "해운대구 해운대로", "수성구 달구벌대로"}
	cities        = []string{"서울특별시", "서울특별시", "서울특별시", "서울특별시", "서울특별시", "서울특별시", "부산광역시", "대구광역시"}
	relations     = []string{"부모님 댁", "친구", "회사", "할머니 댁"}
	products      = []string{"무선 이어폰", "전기포트", "운동화", "커피 원두 1kg", "백팩", "가습기", "책상 스탠드", "러닝 재킷", "보조배터리", "텀블러"}
)

// Customer returns the customer with id. Every id has one.
func (s *Shop) Customer(id string) Customer {
	h := fnv.New64a()
	h.Write([]byte(id))
	r := rand.New(rand.NewPCG(s.seed, h.Sum64()))
	pick := func(list []string) string { return list[r.IntN(len(list))] }

	c := Customer{ID: id}
	korean := r.IntN(4) != 0
	if korean {
		family, given := pick(koreanFamily), pick(koreanGiven)
		c.Name = family + given
		c.Email = fmt.Sprintf("%s.%04d@example.com", koreanRoman[family], r.IntN(10000))
		c.Phone = fmt.Sprintf("010-0%03d-%04d", r.IntN(1000), r.IntN(10000))
	} else {
		given, family := pick(englishGiven), pick(englishFamily)
		c.Name = given + " " + family
		c.Email = fmt.Sprintf("%s.%s%d@example.com", strings.ToLower(given), strings.ToLower(family), r.IntN(100))
		c.Phone = fmt.Sprintf("+1-%03d-555-01%02d", 200+r.IntN(800), r.IntN(100))
	}
	n := 1 + r.IntN(3)
	for i := range n {
		d := r.IntN(len(districts))
		a := Address{
			Label:          "집",
			Recipient:      c.Name,
			RecipientPhone: c.Phone,
			Line1:          fmt.Sprintf("%s %s %d", cities[d], districts[d], 1+r.IntN(500)),
			Line2:          fmt.Sprintf("%d동 %d호", 101+r.IntN(20), 101+r.IntN(1500)),
			PostalCode:     fmt.Sprintf("%05d", 1000+r.IntN(62000)),
		}
		if r.IntN(3) != 0 {
			a.EntranceCode = fmt.Sprintf("#%04d*", r.IntN(10000))
		}
		if i > 0 {
			a.Label, a.ThirdParty = pick(relations), true
			a.Recipient = pick(koreanFamily) + pick(koreanGiven)
			a.RecipientPhone = fmt.Sprintf("010-0%03d-%04d", r.IntN(1000), r.IntN(10000))
		}
		c.Addresses = append(c.Addresses, a)
	}
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range r.IntN(6) {
		o := Order{
			ID:      fmt.Sprintf("o_%s_%d", shortHash(id), i+1),
			Placed:  start.Add(time.Duration(r.IntN(365*24)) * time.Hour),
			Address: c.Addresses[r.IntN(len(c.Addresses))].Label,
		}
		for range 1 + r.IntN(3) {
			o.Items = append(o.Items, pick(products))
			o.Total += int64(5+r.IntN(200)) * 1000
		}
		c.Orders = append(c.Orders, o)
	}
	return c
}

func shortHash(s string) string {
	h := fnv.New32a()
	h.Write([]byte(s))
	return fmt.Sprintf("%08x", h.Sum32())
}

// Policy is the guard policy for the shop's routes
// (docs/spec/guard-policy.md).
const Policy = `custos-guard-policy v1
# A customer reads their own data; support staff read anyone's with the
# customers:read scope and a declared purpose: support or fraud_review.
route GET /me/profile
    subject token
    data name email phone
route GET /me/addresses
    subject token
    data name phone address entrance_code third_party_address third_party_name third_party_phone
route GET /me/orders
    subject token
    data order_history
route GET /customers/{id}/profile
    subject path id
    staff-scope customers:read
    purpose support fraud_review
    data name email phone
    rate 600/m per client
route GET /customers/{id}/addresses
    subject path id
    staff-scope customers:read
    purpose support fraud_review
    data name phone address entrance_code third_party_address third_party_name third_party_phone
    rate 600/m per client
route GET /customers/{id}/orders
    subject path id
    staff-scope customers:read
    purpose support fraud_review
    data order_history
    rate 600/m per client
`

// Handler serves the shop's routes. It trusts the Custos-Subject header for
// "/me/..." routes: it must only be reached through the guard, which sets
// that header from the verified token.
func (s *Shop) Handler() http.Handler {
	mux := http.NewServeMux()
	me := func(r *http.Request) string { return r.Header.Get("Custos-Subject") }
	path := func(r *http.Request) string { return r.PathValue("id") }
	for _, who := range []struct {
		prefix string
		id     func(*http.Request) string
	}{{"GET /me", me}, {"GET /customers/{id}", path}} {
		mux.HandleFunc(who.prefix+"/profile", s.serve(who.id, func(c Customer) any {
			return map[string]string{"id": c.ID, "name": c.Name, "email": c.Email, "phone": c.Phone}
		}))
		mux.HandleFunc(who.prefix+"/addresses", s.serve(who.id, func(c Customer) any { return c.Addresses }))
		mux.HandleFunc(who.prefix+"/orders", s.serve(who.id, func(c Customer) any { return c.Orders }))
	}
	return mux
}

func (s *Shop) serve(id func(*http.Request) string, view func(Customer) any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who := id(r)
		if who == "" {
			http.Error(w, `{"error":"no customer"}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		json.NewEncoder(w).Encode(view(s.Customer(who)))
	}
}
