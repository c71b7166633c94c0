package sqlite_test

import (
	"crypto/rand"
	"encoding/binary"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custos-dev/custos/internal/store"
	"github.com/custos-dev/custos/internal/store/sqlite"
)

// orderedID returns a time-ordered id, as the issuer makes them.
func orderedID(n uint64) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b, uint64(time.Now().UnixMilli())<<16|n&0xffff)
	rand.Read(b[8:])
	return b
}

// BenchmarkRotateRefresh measures the store's share of a refresh-token
// grant: spend the old token, record the new access, ID and refresh
// tokens' receipts and the new refresh token, durably, from many
// concurrent requests.
func BenchmarkRotateRefresh(b *testing.B) {
	st, err := sqlite.Open(b.Context(), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	var seq atomic.Uint64
	newRefresh := func(family string) *store.RefreshToken {
		id := orderedID(seq.Add(1))
		return &store.RefreshToken{Hash: id, JTI: string(orderedID(seq.Add(1))), FamilyID: family, ClientID: "shop", Subject: "acc_" + family,
			SessionID: "sid", Scope: "openid", Audience: "api", AuthTime: now, IssuedAt: now, ExpiresAt: now.Add(24 * time.Hour)}
	}
	receipt := func(kind store.ReceiptKind, family string) store.Receipt {
		return store.Receipt{JTI: string(orderedID(seq.Add(1))), Kind: kind, Subject: "acc_" + family, ClientID: "shop", KeyID: "kid",
			IssuedAt: now, ExpiresAt: now.Add(10 * time.Minute), SessionID: "sid", Grant: "refresh_token", ClientIP: "203.0.113.7", FamilyID: family}
	}
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		family := string(orderedID(seq.Add(1)))
		cur := newRefresh(family)
		if err := st.InsertGrant(b.Context(), store.Grant{Refresh: cur}); err != nil {
			b.Error(err)
			return
		}
		for pb.Next() {
			next := newRefresh(family)
			g := store.Grant{Refresh: next, Receipts: []store.Receipt{
				receipt(store.ReceiptAccess, family), receipt(store.ReceiptID, family), receipt(store.ReceiptRefresh, family)}}
			if err := st.RotateRefresh(b.Context(), cur.Hash, time.Now(), g); err != nil {
				b.Error(err)
				return
			}
			cur = next
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rotations/s")
}
