package accounts

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// Device tokens let a browser that has signed in to an account before skip
// that account's lockout (OWASP "device cookies"): an attacker hammering an
// account from elsewhere locks out only sources without one, so the real
// customer still signs in. A device is subject to its own failure limit.
//
// Format (base64url, no padding, of 57 bytes):
//
//	version (1 byte, 1) ‖ device id (16 random bytes) ‖ expiry (8 bytes, big-endian Unix seconds) ‖ MAC (32 bytes)
//
// MAC = HMAC-SHA256(DeviceKey, "custos device token v1" ‖ 0x00 ‖ len(accountID) (2 bytes, big-endian) ‖ accountID ‖ version ‖ device id ‖ expiry).
//
// The account ID is bound by the MAC but not carried, so the token is opaque.
const (
	deviceTokenVersion = 1
	deviceIDLen        = 16
	deviceBodyLen      = 1 + deviceIDLen + 8
	deviceTokenLen     = deviceBodyLen + sha256.Size
	deviceMACLabel     = "custos device token v1\x00"
)

// DeviceKeyLen is the length of Config.DeviceKey.
const DeviceKeyLen = 32

// DeviceKey is the HMAC key for device tokens. It never prints.
type DeviceKey []byte

// Format prints a placeholder for every verb, so the key never reaches a log.
func (DeviceKey) Format(f fmt.State, _ rune) { io.WriteString(f, "DeviceKey(redacted)") }

// LogValue keeps the key out of slog output.
func (DeviceKey) LogValue() slog.Value { return slog.StringValue("DeviceKey(redacted)") }

type deviceTokens struct {
	key DeviceKey
	ttl time.Duration
}

func (d deviceTokens) mac(accountID string, body []byte) []byte {
	m := hmac.New(sha256.New, d.key)
	io.WriteString(m, deviceMACLabel)
	var n [2]byte
	binary.BigEndian.PutUint16(n[:], uint16(len(accountID)))
	m.Write(n[:])
	io.WriteString(m, accountID)
	m.Write(body)
	return m.Sum(nil)
}

func (d deviceTokens) issue(accountID string, now time.Time) string {
	buf := make([]byte, deviceBodyLen, deviceTokenLen)
	buf[0] = deviceTokenVersion
	rand.Read(buf[1 : 1+deviceIDLen])
	binary.BigEndian.PutUint64(buf[1+deviceIDLen:], uint64(now.Add(d.ttl).Unix()))
	buf = append(buf, d.mac(accountID, buf)...)
	return base64.RawURLEncoding.EncodeToString(buf)
}

// verify returns the device ID (hex) if tok is a valid, unexpired device
// token for accountID.
func (d deviceTokens) verify(accountID, tok string, now time.Time) (string, bool) {
	if len(tok) != base64.RawURLEncoding.EncodedLen(deviceTokenLen) {
		return "", false
	}
	buf, err := base64.RawURLEncoding.Strict().DecodeString(tok)
	if err != nil || len(buf) != deviceTokenLen || buf[0] != deviceTokenVersion {
		return "", false
	}
	body, sum := buf[:deviceBodyLen], buf[deviceBodyLen:]
	if !hmac.Equal(sum, d.mac(accountID, body)) {
		return "", false
	}
	exp := binary.BigEndian.Uint64(body[1+deviceIDLen:])
	if exp > 1<<62 || !now.Before(time.Unix(int64(exp), 0)) {
		return "", false
	}
	return hex.EncodeToString(body[1 : 1+deviceIDLen]), true
}
