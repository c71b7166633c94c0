package verify

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// RevocationEpoch reports custos's revocation epoch: a counter that every
// revocation of a receipt increases, in the revoking transaction. While it
// is unchanged, no receipt has been revoked.
type RevocationEpoch interface {
	RevocationEpoch(ctx context.Context) (uint64, error)
}

// Defaults for CachedReceipts.
const (
	// DefaultEpochInterval bounds how long a revocation can go unseen by a
	// receipt cache.
	DefaultEpochInterval = 5 * time.Millisecond
	// DefaultReceiptCacheSize bounds the receipts a cache remembers.
	DefaultReceiptCacheSize = 100_000
)

// ReceiptCacheConfig configures CachedReceipts.
type ReceiptCacheConfig struct {
	// EpochInterval is how often the epoch is read; 0 means
	// DefaultEpochInterval. A revocation takes effect within it.
	EpochInterval time.Duration
	// Size; 0 means DefaultReceiptCacheSize.
	Size int
	// Now; nil means time.Now.
	Now func() time.Time
}

// CachedReceipts returns a ReceiptChecker that remembers the tokens inner
// accepted and accepts them again without asking inner while the
// revocation epoch stays as it was when inner accepted them. The epoch is
// read at most once per EpochInterval, shared by every check, so a token
// revoked anywhere is refused within that interval, at the cost of one small
// read per interval instead of a receipt lookup per request. Refusals are
// never remembered.
func CachedReceipts(inner ReceiptChecker, epoch RevocationEpoch, cfg ReceiptCacheConfig) ReceiptChecker {
	if cfg.EpochInterval <= 0 {
		cfg.EpochInterval = DefaultEpochInterval
	}
	if cfg.Size <= 0 {
		cfg.Size = DefaultReceiptCacheSize
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &cachedReceipts{inner: inner, src: epoch, cfg: cfg, ok: newLRU[receiptName, uint64](cfg.Size)}
}

type cachedReceipts struct {
	inner ReceiptChecker
	src   RevocationEpoch
	cfg   ReceiptCacheConfig
	ok    *lru[receiptName, uint64] // accepted tokens, with the epoch they were accepted at

	mu    sync.Mutex
	epoch uint64
	read  time.Time // when epoch was read; zero before the first read
}

// current returns the epoch, reading it if the last read is too old.
func (c *cachedReceipts) current(ctx context.Context, now time.Time) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.read.IsZero() && now.Sub(c.read) < c.cfg.EpochInterval && !now.Before(c.read) {
		return c.epoch, nil
	}
	e, err := c.src.RevocationEpoch(ctx)
	if err != nil {
		return 0, err
	}
	c.epoch, c.read = e, now
	return e, nil
}

// receiptName names a token by every claim a receipt is compared with, so
// a token that copies an accepted jti but not the rest misses the cache.
type receiptName struct {
	jti, subject, client, kid string
	iat, exp                  int64
}

func receiptKey(cl *Claims) receiptName {
	return receiptName{cl.JTI, cl.Subject, cl.ClientID, cl.KeyID, cl.IssuedAt.Unix(), cl.ExpiresAt.Unix()}
}

func (c *cachedReceipts) CheckReceipt(ctx context.Context, cl *Claims) error {
	return c.check(ctx, cl, func() error { return c.inner.CheckReceipt(ctx, cl) })
}

// CheckTokenReceipt lets an inner checker that needs the token (an
// Introspector) be cached too.
func (c *cachedReceipts) CheckTokenReceipt(ctx context.Context, token string, cl *Claims) error {
	tc, ok := c.inner.(TokenReceiptChecker)
	if !ok {
		return c.CheckReceipt(ctx, cl)
	}
	return c.check(ctx, cl, func() error { return tc.CheckTokenReceipt(ctx, token, cl) })
}

func (c *cachedReceipts) check(ctx context.Context, cl *Claims, inner func() error) error {
	now := c.cfg.Now()
	// The epoch is read before inner is asked: a revocation committed
	// after the read is then seen by the next read.
	epoch, err := c.current(ctx, now)
	if err != nil {
		return fmt.Errorf("verify: revocation epoch: %w", err)
	}
	key := receiptKey(cl)
	if e, ok := c.ok.get(key, now); ok && e == epoch {
		return nil
	}
	if err := inner(); err != nil {
		c.ok.remove(key)
		return err
	}
	c.ok.put(key, epoch, cl.ExpiresAt)
	return nil
}
