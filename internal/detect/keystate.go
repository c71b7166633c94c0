package detect

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/custos-dev/custos/internal/event"
)

// keyStateParams are key_state's params and defaults.
var keyStateParams = map[string]string{
	// A retired key still verifies the tokens it signed until they
	// expire; past this, a token naming it was not signed while it was
	// active.
	"retired_grace": "15m",
	// Whether a token naming an imported key fires: its private half
	// lived outside custos.
	"imported": "true",
	// A token issued before its key existed was not signed by custos;
	// this much earlier, to allow for clocks that differ between nodes.
	"created_leeway": "1m",
}

// keyStateRule fires when a token presented to the guard, or to the
// issuer's endpoints, names a signing key it should not: one retired for
// longer than any token it signed can live, or one imported from outside;
// or when such a token, as it claims (iat), was issued before its key
// existed.
// It learns each key's state from the key events in the log itself, so it
// needs nothing but the log. (A revoked key is refused before its token's
// claims are read; rule revoked_key_used catches those.)
var keyStateRule = codeRule{
	doc:    "a token naming a key retired longer than its tokens live, or imported",
	params: keyStateParams,
	check: func(params map[string]string) error {
		return checkParams(params, keyStateParams, func(name, v string) error {
			switch name {
			case "retired_grace", "created_leeway":
				d, err := time.ParseDuration(v)
				if err != nil || d < 0 {
					return errors.New("want a duration")
				}
			case "imported":
				if _, err := strconv.ParseBool(v); err != nil {
					return errors.New("want true or false")
				}
			}
			return nil
		})
	},
	start: func(r *Rule) (evaluator, error) {
		grace, err := time.ParseDuration(param(r, keyStateParams, "retired_grace"))
		if err != nil {
			return nil, err
		}
		imported, err := strconv.ParseBool(param(r, keyStateParams, "imported"))
		if err != nil {
			return nil, err
		}
		leeway, err := time.ParseDuration(param(r, keyStateParams, "created_leeway"))
		if err != nil {
			return nil, err
		}
		return &keyState{grace: grace, imported: imported, leeway: leeway, keys: map[string]keyInfo{}}, nil
	},
}

type keyInfo struct {
	imported  bool
	createdAt time.Time // zero if not known
	retiredAt time.Time // zero unless retired
}

type keyState struct {
	grace    time.Duration
	imported bool
	leeway   time.Duration
	keys     map[string]keyInfo // by kid; signing keys are few
}

// seed learns the keys the store holds.
func (k *keyState) seed(ctx context.Context, st Store, _ time.Time) error {
	keys, err := st.Keys(ctx)
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	for _, key := range keys {
		k.keys[key.ID] = keyInfo{imported: key.Imported, createdAt: key.CreatedAt, retiredAt: key.RetiredAt}
	}
	return nil
}

func (k *keyState) feed(e *event.Event) (string, bool) {
	kid, _ := e.Fields["kid"].(string)
	if kid == "" {
		return "", false
	}
	if e.Class == event.ClassKey {
		info := k.keys[kid]
		if imp, ok := e.Fields["imported"].(bool); ok && imp {
			info.imported = true
		}
		switch e.Type {
		case "key_created":
			info.createdAt = e.Time
		case "key_imported":
			info.imported = true
			info.createdAt = e.Time
		case "key_retired":
			info.retiredAt = e.Time
		}
		k.keys[kid] = info
		return "", false
	}
	if e.Class != event.ClassAccess && e.Type != "forged_token" {
		return "", false
	}
	info, ok := k.keys[kid]
	iat, hasIAT := e.Fields["iat"].(int64)
	switch {
	case !ok:
		return "", false
	case k.imported && info.imported:
		return kid, true
	case !info.retiredAt.IsZero() && e.Time.After(info.retiredAt.Add(k.grace)):
		return kid, true
	case hasIAT && !info.createdAt.IsZero() && time.Unix(iat, 0).Before(info.createdAt.Add(-k.leeway)):
		return kid, true
	}
	return "", false
}
