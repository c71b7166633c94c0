package store

import "time"

// Hold is a legal hold on audit-log entries: while it is active no entry
// whose event time is in [From, Until) and whose class is in Classes (every
// class when Classes is empty) may be pruned. A hold is active from its
// creation until ReleaseEffectiveAt, if a release was requested.
type Hold struct {
	ID          string
	From, Until time.Time
	Classes     []string
	Reason      string
	CreatedBy   string
	CreatedAt   time.Time

	// The release, if one was requested: zero times otherwise.
	ReleaseRequestedAt time.Time
	ReleaseEffectiveAt time.Time
	ReleasedBy         string
	ReleaseReason      string
	// ReleaseRecorded is set once the release's taking effect has been
	// recorded as an event.
	ReleaseRecorded bool
}

// HoldRelease is a request to release a hold.
type HoldRelease struct {
	ID          string
	RequestedAt time.Time
	EffectiveAt time.Time
	By, Reason  string
}

// RetentionPolicy is the stored retention of one event class: the period
// in effect and, if a shorter one was asked for, the pending change.
// Classes without a stored policy have their default retention.
type RetentionPolicy struct {
	Class     string
	Retention time.Duration
	SetBy     string
	SetReason string
	SetAt     time.Time

	// Pending is a requested retention that takes effect at
	// PendingEffectiveAt; 0 when nothing is pending.
	Pending            time.Duration
	PendingBy          string
	PendingReason      string
	PendingAt          time.Time
	PendingEffectiveAt time.Time
}

// RetentionState is a consistent snapshot of the holds and retention
// policies. Version changes with every write to either, so a writer that
// decided from a snapshot can insist that nothing changed since.
type RetentionState struct {
	Version  uint64
	Policies []RetentionPolicy // ordered by class
	Holds    []Hold            // every hold ever placed, ordered by creation
}

// OutboxEvent is an encoded audit event written in the same transaction as
// the change it records, waiting to be appended to the audit log.
type OutboxEvent struct {
	Seq  uint64
	Data []byte
}
