package sessionproto

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
)

// ErrAuthFailed is wrapped by every authentication refusal, on the
// server and in the client alike.
var ErrAuthFailed = errors.New("session: authentication failed")

// ChallengeResponse computes a client's answer to a CHL nonce: the hex
// HMAC-SHA256, keyed with the user's secret, of nonce "|" user "|" term, with
// user and term exactly as sent in USR. The secret never crosses the wire.
func ChallengeResponse(secret, nonce, user, term string) string {
	m := hmac.New(sha256.New, []byte(secret))
	io.WriteString(m, nonce+"|"+user+"|"+term)
	return hex.EncodeToString(m.Sum(nil))
}
