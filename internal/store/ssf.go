package store

import "time"

// SSFStream is a receiver of Security Event Tokens (Shared Signals).
type SSFStream struct {
	ID       string
	Audience string // the aud of its tokens
	Delivery string // "push" (RFC 8935) or "poll" (RFC 8936)
	// Endpoint and AuthEnv: where push delivers, and the environment
	// variable holding the Authorization header it sends (never the
	// header itself).
	Endpoint, AuthEnv string
	// PollHash is the SHA-256 of a poll receiver's bearer secret.
	PollHash []byte
	Events   []string // event type URIs it receives
	// StartIndex is the log index of the event that recorded the
	// stream's addition: it receives what comes after it.
	StartIndex uint64
	CreatedAt  time.Time
	RemovedAt  time.Time
}

// SSFToken is a Security Event Token on its way to a stream.
type SSFToken struct {
	ID       int64
	StreamID string
	JTI      string
	// Claims are the token's claims, JSON: it is signed when sent, with
	// the key then active, so that a receiver can always check it against
	// the published keys.
	Claims    []byte
	CreatedAt time.Time
	Attempts  int
	NextAt    time.Time
	DoneAt    time.Time // delivered (push) or acknowledged (poll)
	GivenUpAt time.Time
	LastError string
}

// SSFTransmission is what the transmitter stores after reading a batch of
// the log, in one transaction: its position (as a DetectorState named for
// it, only if the stored one is at PrevNext) and the tokens it queued.
type SSFTransmission struct {
	State    DetectorState
	PrevNext uint64
	Tokens   []SSFToken
}
