package store

import "time"

// DetectorState is how far a detector has read the audit log.
type DetectorState struct {
	Name string
	// Next is the first log index the detector has not looked at.
	Next uint64
	// Warm is where a restarted detector replays from, without raising
	// alerts, to rebuild its rules' windows: the first event that may
	// still count in one.
	Warm uint64
	// RulesDigest names the rules the state was built with.
	RulesDigest string
	UpdatedAt   time.Time
}

// AlertState is an alert's place in its handling.
type AlertState string

const (
	AlertOpen  AlertState = "open"  // grows while its pattern goes on
	AlertAcked AlertState = "acked" // an operator has taken it; the pattern's next firing opens another
)

// Alert is one ongoing pattern a detection rule found: one per rule and
// group while open, its count growing with each event that fires it.
type Alert struct {
	ID       string
	Rule     string
	Severity string
	Title    string
	// Group is the values of the rule's group keys ("" for one alert per
	// rule).
	Group string
	State AlertState
	// Count is the events that fired it.
	Count int64
	// FirstIndex and LastIndex are the log indexes of the first and last
	// events that fired it; FirstAt and LastAt their times.
	FirstIndex, LastIndex uint64
	FirstAt, LastAt       time.Time
	// RaisedAt is when the detector raised it; UpdatedAt when it last
	// grew.
	RaisedAt, UpdatedAt time.Time
	AckedBy, AckNote    string
	AckedAt             time.Time
}

// Detection is what a detector stores after reading a batch of the log,
// in one transaction: its new state (only if the stored one is still at
// PrevNext), the alerts it raised (Created) or grew (the rest, only while
// still open), and the audit events that record new alerts.
type Detection struct {
	State    DetectorState
	PrevNext uint64
	Created  []Alert
	Grown    []Alert
	Events   [][]byte
	// Deliveries are new alerts on their way to webhooks.
	Deliveries []AlertDelivery
}

// AlertDelivery is an alert on its way to one webhook target.
type AlertDelivery struct {
	ID          int64 // assigned by the store
	AlertID     string
	Target      string // the webhook's name in configuration, never its URL or secret
	Payload     []byte
	CreatedAt   time.Time
	Attempts    int
	NextAt      time.Time // when to try next
	DeliveredAt time.Time
	GivenUpAt   time.Time
	LastError   string
}

// AlertFilter selects alerts. Zero fields match everything.
type AlertFilter struct {
	State AlertState
	Rule  string
	Limit int
}

// IPBlock is a client IP the guard refuses until Until.
type IPBlock struct {
	IP        string
	Until     time.Time
	Reason    string // the rule (or operator) that blocked it, and why
	CreatedAt time.Time
	UpdatedAt time.Time
}
