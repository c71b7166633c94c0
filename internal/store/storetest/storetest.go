// Package storetest is the conformance suite every custos storage backend
// must pass. A backend's tests call Run with a function that opens a fresh,
// empty store; the suite checks the behaviour callers rely on — uniqueness,
// compare-and-swap, all-or-nothing grants, single-use credentials and
// revocation — not how the backend achieves it.
package storetest

import (
	"context"
	"time"

	"github.com/custos-dev/custos/internal/store"
)

// Backend is everything a storage backend provides. Callers never use it:
// each declares the narrow interface it needs, and a backend satisfies them
// all by satisfying this.
type Backend interface {
	InitLog(ctx context.Context, origin string) (store.LogState, error)
	LogState(ctx context.Context) (store.LogState, error)
	Sequence(ctx context.Context, c store.Chunk) error
	AppendChunk(ctx context.Context, count uint64, data []byte) (uint64, error)
	Chunks(ctx context.Context, from, to uint64) ([]store.Chunk, error)
	Integrate(ctx context.Context, from uint64, in store.Integration) error
	TileParts(ctx context.Context, level uint8, index uint64, parts uint16) ([]store.TilePart, error)
	PutTiles(ctx context.Context, parts []store.TilePart) error
	Checkpoints(ctx context.Context, after uint64, limit int) ([]store.LogCheckpoint, error)
	PruneEntries(ctx context.Context, before uint64) error
	InsertNoteKey(ctx context.Context, k store.NoteKey) error
	NoteKey(ctx context.Context, name string) (store.NoteKey, error)

	InitWitness(ctx context.Context, name string) (string, error)
	WitnessName(ctx context.Context) (string, error)
	WitnessLog(ctx context.Context, origin string) (store.WitnessLog, error)
	SetWitnessLog(ctx context.Context, from uint64, w store.WitnessLog) error
	AddCosignatures(ctx context.Context, c store.Cosignatures) error
	WitnessProgress(ctx context.Context, witness string) (store.WitnessProgress, error)

	RetentionState(ctx context.Context) (store.RetentionState, error)
	InsertHold(ctx context.Context, h store.Hold, ev []byte) error
	RequestHoldRelease(ctx context.Context, r store.HoldRelease, ev []byte) error
	RecordHoldReleased(ctx context.Context, id string, ev []byte) error
	SetRetention(ctx context.Context, version uint64, p store.RetentionPolicy, ev []byte) error
	PruneLog(ctx context.Context, version, before uint64, ev []byte) error
	PendingEvents(ctx context.Context, limit int) ([]store.OutboxEvent, error)
	FlushOutbox(ctx context.Context, limit int) (int, error)

	DetectorState(ctx context.Context, name string) (store.DetectorState, error)
	SaveDetection(ctx context.Context, d store.Detection) error
	Alert(ctx context.Context, id string) (store.Alert, error)
	Alerts(ctx context.Context, f store.AlertFilter) ([]store.Alert, error)
	AckAlert(ctx context.Context, a store.Alert, ev []byte) error
	DueDeliveries(ctx context.Context, now time.Time, limit int) ([]store.AlertDelivery, error)
	RecordDelivery(ctx context.Context, d store.AlertDelivery) error
	PruneDeliveries(ctx context.Context, before time.Time) (int, error)
	BlockIP(ctx context.Context, b store.IPBlock, ev []byte) error
	ActiveSessions(ctx context.Context, now time.Time, limit int) ([]string, error)
	AddSSFStream(ctx context.Context, st store.SSFStream, ev []byte) error
	RemoveSSFStream(ctx context.Context, id string, at time.Time, ev []byte) error
	SSFStreams(ctx context.Context) ([]store.SSFStream, error)
	SaveTransmission(ctx context.Context, t store.SSFTransmission) error
	PendingSSFTokens(ctx context.Context, stream string, now time.Time, limit int) ([]store.SSFToken, error)
	RecordSSFToken(ctx context.Context, t store.SSFToken) error
	AckSSFTokens(ctx context.Context, stream string, jtis []string, at time.Time) (int, error)
	PruneSSFTokens(ctx context.Context, before time.Time) (int, error)
	IPBlocks(ctx context.Context, now time.Time) ([]store.IPBlock, error)
	UnblockIP(ctx context.Context, ip string, now time.Time, ev []byte) error

	CreateAccount(ctx context.Context, a store.Account) error
	CreateAccounts(ctx context.Context, as []store.Account) error
	Account(ctx context.Context, id string) (store.Account, error)
	AccountByLoginID(ctx context.Context, loginID string) (store.Account, error)
	UpdatePasswordHash(ctx context.Context, id, hash string, at time.Time) error
	DisableAccount(ctx context.Context, id string, at time.Time) error
	ListAccounts(ctx context.Context, after string, limit int) ([]store.Account, error)

	CreateClient(ctx context.Context, c store.Client) error
	Client(ctx context.Context, id string) (store.Client, error)
	ListClients(ctx context.Context) ([]store.Client, error)
	DeleteClient(ctx context.Context, id string, at time.Time) error

	InsertKey(ctx context.Context, k store.Key) error
	Keys(ctx context.Context) ([]store.Key, error)
	UpdateKey(ctx context.Context, k store.Key, from store.KeyState) error
	RevocationEpoch(ctx context.Context) (uint64, error)
	DestroySealedKey(ctx context.Context, kid string) error
	OffboardCustodian(ctx context.Context, o store.Offboarding) error
	OffboardedCustodians(ctx context.Context) ([]store.Offboarding, error)

	InsertGrant(ctx context.Context, g store.Grant) error
	Receipt(ctx context.Context, jti string) (store.Receipt, error)
	RevokeReceipt(ctx context.Context, jti string, at time.Time) error
	RevokeSubject(ctx context.Context, subject string, at time.Time) (int, error)
	RevokeFamily(ctx context.Context, familyID string, at time.Time) (int, error)
	RevokeSession(ctx context.Context, sessionID string, at time.Time) (int, error)
	Prune(ctx context.Context, before time.Time) (int, error)

	InsertAuthCode(ctx context.Context, c store.AuthCode) error
	AuthCode(ctx context.Context, hash []byte) (store.AuthCode, error)
	RedeemAuthCode(ctx context.Context, hash []byte, at time.Time, familyID string, g store.Grant) error
	RefreshToken(ctx context.Context, hash []byte) (store.RefreshToken, error)
	RotateRefresh(ctx context.Context, old []byte, at time.Time, g store.Grant) error
}
