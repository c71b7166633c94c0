package detect

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/custos-dev/custos/internal/store"
)

// Webhook is a receiver of alerts: each alert raised is POSTed to it as
// JSON, signed, and retried until it answers 2xx (for up to a day).
type Webhook struct {
	// Name identifies it in the store and the log; never the URL, which
	// may carry credentials.
	Name string
	URL  *url.URL
	// Secret signs each delivery (HMAC-SHA256; see Sign).
	Secret []byte
}

// ParseWebhookURL checks a webhook URL: https, or http to a loopback
// address only, with no fragment.
func ParseWebhookURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return nil, fmt.Errorf("webhook URL: %w", err)
	case u.Host == "" || u.Fragment != "":
		return nil, errors.New("webhook URL: want scheme://host/path, without a fragment")
	case u.Scheme == "https":
		return u, nil
	case u.Scheme == "http":
		if ip := net.ParseIP(u.Hostname()); u.Hostname() == "localhost" || ip != nil && ip.IsLoopback() {
			return u, nil
		}
		return nil, errors.New("webhook URL: http only to a loopback address; use https")
	}
	return nil, errors.New("webhook URL: want https")
}

// Headers of a delivery.
const (
	HeaderSignature = "Custos-Signature" // t=UNIX,v1=HEX: HMAC-SHA256 of "UNIX.BODY" under the webhook's secret
	HeaderDelivery  = "Custos-Delivery"  // the delivery's id: the same on every retry
	HeaderAlert     = "Custos-Alert"     // the alert's id
)

// Sign returns the signature header value for body sent at t.
func Sign(secret, body []byte, t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(m.Sum(nil))
}

// alertPayload is what a webhook receives.
type alertPayload struct {
	Type  string       `json:"type"` // "alert_raised"
	Alert alertSummary `json:"alert"`
}

type alertSummary struct {
	ID         string    `json:"id"`
	Rule       string    `json:"rule"`
	Severity   string    `json:"severity"`
	Title      string    `json:"title"`
	Group      string    `json:"group"`
	FirstIndex uint64    `json:"first_index"`
	FirstAt    time.Time `json:"first_at"`
	RaisedAt   time.Time `json:"raised_at"`
}

func payload(a store.Alert) ([]byte, error) {
	return json.Marshal(alertPayload{Type: EventAlertRaised, Alert: alertSummary{
		ID: a.ID, Rule: a.Rule, Severity: a.Severity, Title: a.Title, Group: a.Group,
		FirstIndex: a.FirstIndex, FirstAt: a.FirstAt, RaisedAt: a.RaisedAt,
	}})
}

// DeliveryStore is what the deliverer reads and writes.
type DeliveryStore interface {
	DueDeliveries(ctx context.Context, now time.Time, limit int) ([]store.AlertDelivery, error)
	RecordDelivery(ctx context.Context, d store.AlertDelivery) error
}

// Delivery limits.
const (
	deliveryTimeout = 10 * time.Second
	maxBackoff      = 15 * time.Minute
	giveUpAfter     = 24 * time.Hour
)

// Deliverer sends alerts to webhooks.
type Deliverer struct {
	Store  DeliveryStore
	Hooks  []Webhook
	Client *http.Client // nil: one with a 10 s timeout that follows no redirect
	Now    func() time.Time
	Logger *slog.Logger
}

// Run delivers due alerts every interval until ctx ends.
func (dl *Deliverer) Run(ctx context.Context, interval time.Duration) {
	for {
		if _, err := dl.DeliverDue(ctx); err != nil && ctx.Err() == nil {
			dl.logger().Warn("detect: alert deliveries", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

func (dl *Deliverer) logger() *slog.Logger {
	if dl.Logger == nil {
		return slog.Default()
	}
	return dl.Logger
}

// DeliverDue makes one attempt at every due delivery and returns how many
// were delivered. Each webhook's deliveries go in order, beside the
// others': a webhook that is down delays no other.
func (dl *Deliverer) DeliverDue(ctx context.Context) (int, error) {
	due, err := dl.Store.DueDeliveries(ctx, dl.now(), 100)
	if err != nil {
		return 0, err
	}
	byTarget := map[string][]store.AlertDelivery{}
	for _, d := range due {
		byTarget[d.Target] = append(byTarget[d.Target], d)
	}
	var delivered atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, len(byTarget))
	for _, ds := range byTarget {
		wg.Go(func() {
			for _, d := range ds {
				ok, err := dl.attempt(ctx, d)
				if err != nil {
					errs <- err
					return
				}
				if ok {
					delivered.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return int(delivered.Load()), <-errs
}

// attempt makes one attempt at d and stores its outcome.
func (dl *Deliverer) attempt(ctx context.Context, d store.AlertDelivery) (bool, error) {
	hook, ok := dl.hook(d.Target)
	d.Attempts++
	switch {
	case !ok:
		d.LastError = "no webhook " + strconv.Quote(d.Target) + " is configured"
	default:
		if err := dl.send(ctx, hook, d); err == nil {
			d.DeliveredAt, d.LastError = dl.now(), ""
		} else {
			d.LastError = err.Error()
		}
	}
	if d.DeliveredAt.IsZero() {
		backoff := min(maxBackoff, time.Duration(1<<min(d.Attempts, 20))*time.Second)
		d.NextAt = dl.now().Add(backoff)
		if d.NextAt.Sub(d.CreatedAt) > giveUpAfter {
			d.GivenUpAt = dl.now()
			dl.logger().Error("detect: alert delivery given up", "alert", d.AlertID, "webhook", d.Target, "attempts", d.Attempts, "err", d.LastError)
		} else if d.Attempts == 1 || d.Attempts%10 == 0 {
			dl.logger().Warn("detect: alert delivery failed; retrying", "alert", d.AlertID, "webhook", d.Target, "attempts", d.Attempts, "err", d.LastError)
		}
	}
	return !d.DeliveredAt.IsZero(), dl.Store.RecordDelivery(ctx, d)
}

func (dl *Deliverer) hook(name string) (Webhook, bool) {
	for _, h := range dl.Hooks {
		if h.Name == name {
			return h, true
		}
	}
	return Webhook{}, false
}

func (dl *Deliverer) now() time.Time {
	if dl.Now == nil {
		return time.Now()
	}
	return dl.Now()
}

// send POSTs one delivery. Errors name the webhook, never its URL.
func (dl *Deliverer) send(ctx context.Context, h Webhook, d store.AlertDelivery) error {
	ctx, cancel := context.WithTimeout(ctx, deliveryTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", h.URL.String(), bytes.NewReader(d.Payload))
	if err != nil {
		return errors.New("bad webhook URL")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "custos-alerts/1")
	req.Header.Set(HeaderDelivery, strconv.FormatInt(d.ID, 10))
	req.Header.Set(HeaderAlert, d.AlertID)
	if len(h.Secret) > 0 {
		req.Header.Set(HeaderSignature, Sign(h.Secret, d.Payload, dl.now()))
	}
	client := dl.Client
	if client == nil {
		client = &http.Client{Timeout: deliveryTimeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL
		}
		return fmt.Errorf("webhook %s: %v", h.Name, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook %s answered %d", h.Name, resp.StatusCode)
	}
	return nil
}
