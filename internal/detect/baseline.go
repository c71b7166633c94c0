package detect

import (
	"errors"
	"strconv"
	"time"

	"github.com/custos-dev/custos/internal/event"
	"github.com/custos-dev/custos/internal/lru"
)

var baselineParams = map[string]string{
	// Fires when a customer's reads of their own data in an hour reach
	// factor times their usual hourly reads...
	"factor": "10",
	// ...and at least this many: a customer without history, or with
	// little, may read this much in an hour.
	"min_reads": "200",
	// How many customers it remembers.
	"customers": "1000000",
}

// readBaselineRule fires when a customer reads their own data far more
// than they usually do: a stolen session, or a script on their account.
// A customer's usual rate is an average of their past hours (each hour
// weighing a tenth), kept in memory: after a restart it builds up again,
// and until then only min_reads applies.
var readBaselineRule = codeRule{
	doc:    "a customer's reads of their own data far above their own baseline",
	params: baselineParams,
	check: func(params map[string]string) error {
		return checkParams(params, baselineParams, func(name, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 10_000_000 || name == "customers" && n < 1000 {
				return errors.New("want a number from 1 to 10000000 (customers: at least 1000)")
			}
			return nil
		})
	},
	start: func(r *Rule) (evaluator, error) {
		var v [3]int
		for i, name := range []string{"factor", "min_reads", "customers"} {
			n, err := strconv.Atoi(param(r, baselineParams, name))
			if err != nil {
				return nil, err
			}
			v[i] = n
		}
		return &readBaseline{factor: float64(v[0]), min: v[1], subjects: lru.New[string, *readHistory](v[2])}, nil
	},
}

type readBaseline struct {
	factor   float64
	min      int
	subjects *lru.Map[string, *readHistory]
}

// readHistory is one customer's reads.
type readHistory struct {
	hour  time.Time // the hour being counted
	count int       // reads in it
	avg   float64   // reads per hour before it, a moving average
}

// horizon: a restart re-reads the current clock hour, so the hour's count
// comes out as it was; the average of hours before is lost.
func (b *readBaseline) horizon() time.Duration { return time.Hour }

// baselineWeight is how much the last hour moves the average.
const baselineWeight = 0.1

func (b *readBaseline) feed(e *event.Event) (string, bool) {
	if e.Type != "data_read" || e.Actor == "" || e.Actor != e.Subject {
		return "", false
	}
	hour := e.Time.Truncate(time.Hour)
	h, ok := b.subjects.Get(e.Actor)
	if !ok {
		h = &readHistory{hour: hour}
		b.subjects.Put(e.Actor, h)
	}
	if hour.After(h.hour) {
		// Close the hours since the last read: the one counted, then
		// the empty ones.
		h.avg += baselineWeight * (float64(h.count) - h.avg)
		for gap := int(hour.Sub(h.hour)/time.Hour) - 1; gap > 0 && h.avg > 0.01; gap-- {
			h.avg -= baselineWeight * h.avg
		}
		h.hour, h.count = hour, 0
	}
	h.count++
	return e.Actor, h.count >= b.min && float64(h.count) >= b.factor*h.avg
}
