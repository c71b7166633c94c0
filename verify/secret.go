package verify

import (
	"fmt"
	"io"
	"log/slog"
)

// Secret is a credential, such as an introspection client secret. It never
// prints: fmt, log/slog and encoding/json all show "[redacted]".
type Secret string

const redacted = "[redacted]"

func (Secret) String() string               { return redacted }
func (Secret) GoString() string             { return redacted }
func (Secret) Format(f fmt.State, _ rune)   { io.WriteString(f, redacted) }
func (Secret) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
