package detect

import (
	"context"
	"fmt"
	"time"

	"github.com/custos-dev/custos/internal/event"
)

// keyCustodianRule fires when a token presented to the guard, or to the
// issuer's endpoints, names a signing key whose custodian has been
// offboarded (custos keys offboard), whatever else is true of the token:
// whoever kept a copy of that key may be using it. It learns who holds
// each key, and who has left, from the store and then from the log's key
// events.
var keyCustodianRule = codeRule{
	doc:    "a token naming a key whose custodian was offboarded",
	params: map[string]string{},
	check: func(params map[string]string) error {
		return checkParams(params, nil, func(string, string) error { return nil })
	},
	start: func(*Rule) (evaluator, error) {
		return &keyCustodian{holder: map[string]string{}, left: map[string]time.Time{}}, nil
	},
}

type keyCustodian struct {
	holder map[string]string    // custodian by kid; signing keys are few
	left   map[string]time.Time // when each offboarded custodian left
}

// seed learns the keys' custodians and who has left.
func (k *keyCustodian) seed(ctx context.Context, st Store, _ time.Time) error {
	keys, err := st.Keys(ctx)
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	for _, key := range keys {
		k.holder[key.ID] = key.Custodian
	}
	gone, err := st.OffboardedCustodians(ctx)
	if err != nil {
		return fmt.Errorf("offboarded custodians: %w", err)
	}
	for _, o := range gone {
		k.left[o.Custodian] = o.At
	}
	return nil
}

func (k *keyCustodian) feed(e *event.Event) (string, bool) {
	if e.Type == eventCustodianOffboarded {
		c, _ := e.Fields["custodian"].(string)
		if at, ok := k.left[c]; c != "" && (!ok || e.Time.Before(at)) {
			k.left[c] = e.Time
		}
		return "", false
	}
	kid, _ := e.Fields["kid"].(string)
	if kid == "" {
		return "", false
	}
	if e.Class == event.ClassKey {
		if c, _ := e.Fields["custodian"].(string); c != "" {
			k.holder[kid] = c
		}
		return "", false
	}
	if e.Class != event.ClassAccess && e.Type != "forged_token" {
		return "", false
	}
	c, ok := k.holder[kid]
	if !ok {
		return "", false
	}
	if at, ok := k.left[c]; ok && !e.Time.Before(at) {
		return kid, true
	}
	return "", false
}

// eventCustodianOffboarded is the key event custody records when a
// custodian leaves (keys.EventCustodianOffboarded).
const eventCustodianOffboarded = "custodian_offboarded"
