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
				receipt(store.ReceiptAccess, family), receipt(store.ReceiptID, family)}}
			if err := st.RotateRefresh(b.Context(), cur.Hash, time.Now(), g); err != nil {
				b.Error(err)
				return
			}
			cur = next
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rotations/s")
}

// BenchmarkAppendChunk measures durable audit-log appends as the log
// commits them: one chunk of 1024 entries of 256 bytes per commit.
func BenchmarkAppendChunk(b *testing.B) {
	st, err := sqlite.Open(b.Context(), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if _, err := st.InitLog(b.Context(), "bench.custos.test/audit"); err != nil {
		b.Fatal(err)
	}
	const n, size = 1024, 256
	chunk := make([]byte, 0, n*(size+2))
	entry := make([]byte, size)
	rand.Read(entry)
	for range n {
		chunk = binary.BigEndian.AppendUint16(chunk, size)
		chunk = append(chunk, entry...)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := st.AppendChunk(b.Context(), n, chunk); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkTileRead measures reading level-0 tiles from a store holding
// 4096 full ones, integrated (so in the tile file): the part an inclusion
// proof reads, and whole tiles.
func BenchmarkTileRead(b *testing.B) {
	st, err := sqlite.Open(b.Context(), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if _, err := st.InitLog(b.Context(), "bench.custos.test/audit"); err != nil {
		b.Fatal(err)
	}
	const tiles = 4096
	const perChunk = 4096 // one-byte entries
	chunk := make([]byte, 0, 3*perChunk)
	for range perChunk {
		chunk = append(chunk, 0, 1, 'x')
	}
	for range tiles * store.TileWidth / perChunk {
		if _, err := st.AppendChunk(b.Context(), perChunk, chunk); err != nil {
			b.Fatal(err)
		}
	}
	data := make([]byte, (2*store.TileWidth-2)*store.HashSize) // rows 0–7
	rand.Read(data)
	var parts []store.TilePart
	for i := range tiles {
		ps, err := store.SplitTile(store.Tile{Level: 0, Index: uint64(i), Width: store.TileWidth, Data: data}, 0)
		if err != nil {
			b.Fatal(err)
		}
		parts = append(parts, ps...)
		if len(parts) >= 16*len(ps) {
			if err := st.PutTiles(b.Context(), parts); err != nil {
				b.Fatal(err)
			}
			parts = parts[:0]
		}
	}
	in := store.Integration{Size: tiles * store.TileWidth, Checkpoint: []byte("bench checkpoint\n"), Time: time.Now()}
	if err := st.Integrate(b.Context(), 0, in); err != nil {
		b.Fatal(err)
	}
	b.Run("proof", func(b *testing.B) {
		i := uint64(0)
		for b.Loop() {
			i = (i*2654435761 + 1) % tiles
			ps, err := st.TileParts(b.Context(), 0, i, 1<<(i%8))
			if err != nil || len(ps) != 1 {
				b.Fatal(len(ps), err)
			}
		}
	})
	b.Run("proof-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			i := uint64(0)
			for pb.Next() {
				i = (i*2654435761 + 1) % tiles
				ps, err := st.TileParts(b.Context(), 0, i, 1<<(i%8))
				if err != nil || len(ps) != 1 {
					b.Error(len(ps), err)
					return
				}
			}
		})
	})
	b.Run("whole", func(b *testing.B) {
		i := uint64(0)
		for b.Loop() {
			i = (i*2654435761 + 1) % tiles
			if _, err := store.ReadTile(b.Context(), st, 0, i); err != nil {
				b.Fatal(err)
			}
		}
	})
}
