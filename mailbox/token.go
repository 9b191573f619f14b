package mailbox

import (
	"errors"
	"fmt"
	"strings"

	"github.com/msprelay/msprelay/principal"
)

// UserToken encodes a user name as one NATS subject token and key-value
// key: the canonical (lower-case) name with every octet other than a-z,
// 0-9, '-' and '_' written as '=' and two upper-case hex digits. User names
// may hold '.', '>', '*' and ISO 8859-1 octets, none of which may appear in
// a subject token; "j.doe" becomes "j=2Edoe" and "jörg" "j=F6rg". The
// encoding is one-to-one (ParseUserToken inverts it).
func UserToken(user string) string {
	user = principal.CanonicalUser(user)
	var b strings.Builder
	b.Grow(len(user))
	for i := 0; i < len(user); i++ {
		c := user[i]
		if tokenSafe(c) {
			b.WriteByte(c)
			continue
		}
		const hex = "0123456789ABCDEF"
		b.WriteByte('=')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

func tokenSafe(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// ErrBadToken is returned by ParseUserToken for text UserToken cannot produce.
var ErrBadToken = errors.New("mailbox: bad user token")

// ParseUserToken decodes a UserToken back to the canonical user name. It
// accepts exactly what UserToken produces: no escaped safe octets, no
// lower-case hex, no upper-case letters.
func ParseUserToken(tok string) (string, error) {
	if tok == "" || len(tok) > 3*principal.MaxNameLen {
		return "", fmt.Errorf("%w: length %d", ErrBadToken, len(tok))
	}
	out := make([]byte, 0, len(tok))
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		switch {
		case tokenSafe(c):
			out = append(out, c)
		case c == '=' && i+2 < len(tok) && upperHex(tok[i+1]) >= 0 && upperHex(tok[i+2]) >= 0:
			v := byte(upperHex(tok[i+1])<<4 | upperHex(tok[i+2]))
			if tokenSafe(v) {
				return "", fmt.Errorf("%w: %q escapes a plain octet", ErrBadToken, tok[i:i+3])
			}
			out = append(out, v)
			i += 2
		default:
			return "", fmt.Errorf("%w: octet %#x at %d", ErrBadToken, c, i)
		}
	}
	user := string(out)
	if principal.CanonicalUser(user) != user {
		return "", fmt.Errorf("%w: %q is not a canonical name", ErrBadToken, tok)
	}
	return user, nil
}

func upperHex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
