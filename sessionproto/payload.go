package sessionproto

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/msprelay/msprelay/principal"
)

// Message is a message pushed to a session (MSG). Strings hold raw ISO
// 8859-1 octets, as in MSP.
type Message struct {
	ID         string // stable message id; repeats of one message share it
	Sender     string // may be empty
	SenderTerm string //
	Recipient  string // as addressed: user, alias, "user@node" or ""
	RecipTerm  string // as addressed: "", "*" or a terminal
	OriginNode string // node where the message entered the cluster
	OriginAddr string // MSP client address, or "session"
	Transport  string // "tcp", "udp" or "session"
	Verified   bool   // Sender is the user the ingress node proved sent it
	// SenderMethod is how the ingress node established the sender
	// (identity.Method names: "none", "peercred", "kernel", "signature",
	// "secret", "trust"); "" from a server that does not say.
	SenderMethod string
	// SenderUser is the user the ingress node proved sent the message,
	// "" when it proved none. When it is not Sender (Verified is then
	// false), a local user claimed someone else's name: show both.
	SenderUser string
	Time       time.Time // when the ingress node accepted it
	Cookie     string    //
	Signature  string    // opaque octets, as received
	Text       string    // CR LF line ends
	Queued     bool      // it waited in the mailbox: Time is when it was sent, not now
}

// ErrBadPayload is wrapped by errors decoding a payload.
var ErrBadPayload = errors.New("session: malformed payload")

// Impersonation reports whether the ingress proved a user who is not the
// one the message names as its sender: shown as the claim and who really
// sent it.
func (m *Message) Impersonation() bool {
	return m.SenderUser != "" && m.Sender != "" && !m.Verified && !strings.EqualFold(m.SenderUser, m.Sender)
}

// Header names of a MSG payload, in the order the server writes them.
const (
	HeaderID         = "Id"
	HeaderSender     = "Sender"
	HeaderSenderTerm = "Sender-Term"
	HeaderRecipient  = "Recipient"
	HeaderRecipTerm  = "Recip-Term"
	HeaderOriginNode = "Origin-Node"
	HeaderOriginAddr = "Origin-Addr"
	HeaderTransport  = "Transport"
	HeaderVerified   = "Verified"
	HeaderMethod     = "Sender-Method"
	HeaderSenderUser = "Sender-User"
	HeaderTime       = "Time"
	HeaderCookie     = "Cookie"
	HeaderSignature  = "Signature"
	HeaderQueued     = "Queued" // written only for messages from the mailbox
)

// AppendMessage encodes m as a MSG payload: "Name: value" header lines
// (values %-escaped, Signature in hex), a blank line, then the text.
func AppendMessage(dst []byte, m *Message) []byte {
	h := func(name, value string) {
		dst = append(dst, name...)
		dst = append(dst, ": "...)
		dst = AppendEscaped(dst, value, HeaderSpecial)
		dst = append(dst, "\r\n"...)
	}
	h(HeaderID, m.ID)
	h(HeaderSender, m.Sender)
	h(HeaderSenderTerm, m.SenderTerm)
	h(HeaderRecipient, m.Recipient)
	h(HeaderRecipTerm, m.RecipTerm)
	h(HeaderOriginNode, m.OriginNode)
	h(HeaderOriginAddr, m.OriginAddr)
	h(HeaderTransport, m.Transport)
	h(HeaderVerified, YesNo(m.Verified))
	if m.SenderMethod != "" {
		h(HeaderMethod, m.SenderMethod)
	}
	if m.SenderUser != "" {
		h(HeaderSenderUser, m.SenderUser)
	}
	// Time and Signature are appended in place: every pushed message has
	// them, and a formatted string each would be garbage.
	dst = append(dst, HeaderTime+": "...)
	if !m.Time.IsZero() {
		dst = m.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
	}
	dst = append(dst, "\r\n"...)
	h(HeaderCookie, m.Cookie)
	dst = append(dst, HeaderSignature+": "...)
	const hexdig = "0123456789abcdef"
	for i := 0; i < len(m.Signature); i++ {
		dst = append(dst, hexdig[m.Signature[i]>>4], hexdig[m.Signature[i]&15])
	}
	dst = append(dst, "\r\n"...)
	if m.Queued {
		dst = append(dst, HeaderQueued+": yes\r\n"...)
	}
	dst = append(dst, "\r\n"...)
	return append(dst, m.Text...)
}

// YesNo is the header value of a flag: "yes" or "no".
func YesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// ParseMessage decodes a MSG payload. Unknown headers are ignored so that
// servers can add some; a repeated header is an error.
func ParseMessage(p []byte) (*Message, error) {
	s := string(p)
	var head, text string
	if rest, ok := strings.CutPrefix(s, "\r\n"); ok {
		text = rest // no headers at all
	} else if head, text, ok = strings.Cut(s, "\r\n\r\n"); !ok {
		return nil, fmt.Errorf("%w: MSG has no blank line after its headers", ErrBadPayload)
	}
	m := &Message{Text: text}
	// Repeats of the known headers are told by a bit each and of others
	// by a map made only when one comes: every pushed message is parsed
	// here, so the usual case allocates nothing but the message.
	var seenKnown uint32
	var seen map[string]bool
	for rest := strings.TrimSuffix(head, "\r\n"); head != ""; {
		var l string
		var more bool
		l, rest, more = strings.Cut(rest, "\r\n")
		if !more {
			head = ""
		}
		name, value, ok := strings.Cut(l, ":")
		if !ok || name == "" {
			return nil, fmt.Errorf("%w: MSG header line %q has no name", ErrBadPayload, Truncate(l, 40))
		}
		value = strings.TrimPrefix(value, " ")
		v, err := Unescape(value)
		if err != nil {
			return nil, fmt.Errorf("%w: MSG header %s: %v", ErrBadPayload, name, err)
		}
		key, bit := knownHeader(name)
		repeated := false
		if bit != 0 {
			repeated = seenKnown&bit != 0
			seenKnown |= bit
		} else {
			if seen == nil {
				seen = map[string]bool{}
			}
			repeated = seen[key]
			seen[key] = true
		}
		if repeated {
			return nil, fmt.Errorf("%w: MSG header %s repeated", ErrBadPayload, name)
		}
		if err := m.setHeader(key, v); err != nil {
			return nil, fmt.Errorf("%w: MSG header %s: %v", ErrBadPayload, name, err)
		}
	}
	return m, nil
}

// knownHeaders are the lower-case names of the headers a server writes.
func knownHeaders() [15]string {
	return [...]string{"id", "sender", "sender-term", "recipient", "recip-term", "origin-node",
		"origin-addr", "transport", "verified", "time", "cookie", "signature", "sender-method", "sender-user", "queued"}
}

// knownHeader returns name in lower case and, for a known header, its bit
// (else 0); a known name costs no allocation.
func knownHeader(name string) (string, uint32) {
	for i, k := range knownHeaders() {
		if strings.EqualFold(name, k) {
			return k, 1 << i
		}
	}
	return strings.ToLower(name), 0
}

// setHeader stores one decoded header value; key is lower-case.
func (m *Message) setHeader(key, v string) error {
	switch key {
	case "id":
		m.ID = v
	case "sender":
		m.Sender = v
	case "sender-term":
		m.SenderTerm = v
	case "recipient":
		m.Recipient = v
	case "recip-term":
		m.RecipTerm = v
	case "origin-node":
		m.OriginNode = v
	case "origin-addr":
		m.OriginAddr = v
	case "transport":
		m.Transport = v
	case "queued":
		m.Queued = v == "yes"
	case "verified":
		switch v {
		case "yes":
			m.Verified = true
		case "no":
			m.Verified = false
		default:
			return fmt.Errorf("want yes or no, got %q", Truncate(v, 16))
		}
	case "time":
		if v == "" {
			m.Time = time.Time{}
			return nil
		}
		t, err := parseStamp(time.RFC3339Nano, v)
		if err != nil {
			return err
		}
		m.Time = t
	case "cookie":
		m.Cookie = v
	case "sender-method":
		m.SenderMethod = v
	case "sender-user":
		m.SenderUser = v
	case "signature":
		b, err := hex.DecodeString(v)
		if err != nil {
			return err
		}
		m.Signature = string(b)
	}
	return nil
}

// SplitLines splits CR LF separated lines; "" gives no lines.
func SplitLines(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\r\n"), "\r\n")
}

// AppendWhoLine encodes one WHO payload line:
// user node term state since last-active aliases [kind].
func AppendWhoLine(dst []byte, e *principal.Entry) []byte {
	al := "-"
	if len(e.Aliases) > 0 {
		enc := make([]string, len(e.Aliases))
		for i, a := range e.Aliases {
			enc[i] = EncodeToken(a)
		}
		al = strings.Join(enc, ",")
	}
	for i, f := range [...]string{EncodeToken(e.User), EncodeToken(e.Node), EncodeToken(e.Term),
		e.State.Code(), FormatTime(e.Since), FormatTime(e.LastActive), al} {
		if i > 0 {
			dst = append(dst, ' ')
		}
		dst = append(dst, f...)
	}
	if e.Kind != principal.KindSession {
		// An eighth field only for a host login's tty, so that lines of
		// session terminals stay what older clients parse.
		dst = append(dst, ' ')
		dst = append(dst, e.Kind.String()...)
	}
	return append(dst, "\r\n"...)
}

// FormatTime is the wire form of a time in WHO lines (ParseTime reads it).
func FormatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// ParseTime reads a time written by FormatTime.
func ParseTime(s string) (time.Time, error) {
	if s == "-" {
		return time.Time{}, nil
	}
	return parseStamp(time.RFC3339, s)
}

// parseStamp parses an RFC 3339 time whose UTC year can be formatted back
// (1 to 9999), so that a decoded time always re-encodes.
func parseStamp(layout, s string) (time.Time, error) {
	t, err := time.Parse(layout, s)
	if err != nil {
		return time.Time{}, err
	}
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		return time.Time{}, fmt.Errorf("year %d out of range", y)
	}
	return t, nil
}

// ParseWho decodes a WHO payload: one principal.Entry per terminal, as the
// server reported it (times have one-second precision).
func ParseWho(p []byte) ([]principal.Entry, error) {
	var out []principal.Entry
	for _, l := range SplitLines(string(p)) {
		f := strings.Split(l, " ")
		if len(f) != 7 && len(f) != 8 {
			return nil, fmt.Errorf("%w: WHO line %q has %d fields, want 7 or 8", ErrBadPayload, Truncate(l, 40), len(f))
		}
		var e principal.Entry
		var err error
		if len(f) == 8 {
			if f[7] != principal.KindTTY.String() {
				return nil, fmt.Errorf("%w: WHO line: terminal kind %q", ErrBadPayload, Truncate(f[7], 20))
			}
			e.Kind = principal.KindTTY
		}
		if e.User, e.Node, e.Term, err = Decode3(f[0], f[1], f[2]); err != nil {
			return nil, fmt.Errorf("%w: WHO line: %v", ErrBadPayload, err)
		}
		if f[3] == principal.Offline.Code() { // an absent known user's last sighting
			e.State = principal.Offline
		} else if e.State, err = principal.ParseState(f[3]); err != nil {
			return nil, fmt.Errorf("%w: WHO line: %v", ErrBadPayload, err)
		}
		if e.Since, err = ParseTime(f[4]); err != nil {
			return nil, fmt.Errorf("%w: WHO since: %v", ErrBadPayload, err)
		}
		if e.LastActive, err = ParseTime(f[5]); err != nil {
			return nil, fmt.Errorf("%w: WHO last-active: %v", ErrBadPayload, err)
		}
		if f[6] != "-" {
			for _, a := range strings.Split(f[6], ",") {
				d, err := DecodeToken(a)
				if err != nil {
					return nil, fmt.Errorf("%w: WHO alias: %v", ErrBadPayload, err)
				}
				e.Aliases = append(e.Aliases, d)
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// Decode3 decodes three tokens (user, node, term).
func Decode3(a, b, c string) (x, y, z string, err error) {
	if x, err = DecodeToken(a); err != nil {
		return
	}
	if y, err = DecodeToken(b); err != nil {
		return
	}
	z, err = DecodeToken(c)
	return
}

// AppendNames encodes a list payload: one escaped name per line.
func AppendNames(dst []byte, names []string) []byte {
	for _, n := range names {
		dst = append(dst, EncodeToken(n)...)
		dst = append(dst, "\r\n"...)
	}
	return dst
}

// ParseNames decodes a list payload.
func ParseNames(p []byte) ([]string, error) {
	var out []string
	for _, l := range SplitLines(string(p)) {
		if strings.ContainsRune(l, ' ') {
			return nil, fmt.Errorf("%w: list line %q holds a space", ErrBadPayload, Truncate(l, 40))
		}
		n, err := DecodeToken(l)
		if err != nil {
			return nil, fmt.Errorf("%w: list line: %v", ErrBadPayload, err)
		}
		out = append(out, n)
	}
	return out, nil
}
