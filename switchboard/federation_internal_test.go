package switchboard

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/msprelay/msprelay/identity"
)

// "Eight-bit ISO 8859-1 text; do not strip the eighth bit", and issue 18:
// the identity "travels in ... the mailbox entry": a queued message keeps
// every octet and its sender identity, the vouching node included.
func TestQueuedEntryKeepsEveryOctetAndTheIdentity(t *testing.T) {
	t.Parallel()
	var all []byte
	for c := 0x20; c <= 0xff; c++ {
		all = append(all, byte(c))
	}
	all = append(all, '\r', '\n', '\t')
	d := &Delivery{ID: "id1", Recipient: "J\xf6rg", RecipTerm: "pts/1", Sender: "Ren\xe9", SenderTerm: "tty\xe0",
		Text: string(all), Cookie: "c\xe91", Signature: "\x00\x01\xff\xfe", Time: time.Unix(1700000000, 5).UTC(),
		Origin: Origin{Node: "a", Addr: "127.0.0.1:9", Transport: "udp", Revision: "A",
			Sender: identity.Identity{User: "mallory", Claimed: "Ren\xe9", Method: identity.Kernel, Node: "a", Source: "127.0.0.1:9"}}}
	body, err := EncodeQueued(d, "J\xf6rg")
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(body) {
		t.Fatalf("not valid JSON: %q", body)
	}
	got, err := DecodeQueued(body)
	if err != nil {
		t.Fatal(err)
	}
	if *got != *d {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, d)
	}
}

// Issue 18: "an entry claiming origin.node = another node with verified:
// true stored; the drain keeps the stored flag". The entry's flag is not
// read any more; only an identity counts, and an entry stored without one
// (by an earlier version, or forged in its format) is unverified.
func TestQueuedEntryVerifiedFlagIsNotBelieved(t *testing.T) {
	t.Parallel()
	old := `{"id":"x","recipient":"alice","sender":"root","text":"hi","origin":{"node":"b","addr":"session","transport":"session","verified":true},` +
		`"time":"2024-05-06T07:08:09Z","targets":[{"user":"alice","term":""}]}`
	d, err := DecodeQueued([]byte(old))
	if err != nil {
		t.Fatal(err)
	}
	if d.Origin.Sender.Verified() || d.Origin.Sender.Method != identity.None {
		t.Fatalf("an entry's verified flag was believed: %+v", d.Origin.Sender)
	}
	unknown := bytes.Replace([]byte(old), []byte(`"verified":true`), []byte(`"sender":{"user":"root","method":"telepathy","node":"b"}`), 1)
	if d, err := DecodeQueued(unknown); err != nil || d.Origin.Sender.Method != identity.None || d.Origin.Sender.Verified() {
		t.Fatalf("an unknown method read as %+v, %v; want none", d.Origin.Sender, err)
	}
}

func TestQueuedEntryRejectsBadInput(t *testing.T) {
	t.Parallel()
	many := bytes.Repeat([]byte(`{"user":"a","term":"b"},`), maxQueuedTargets+1)
	for name, in := range map[string]string{
		"not JSON":                 "garbage",
		"no targets":               `{"id":"x","targets":[]}`,
		"too many targets":         `{"id":"x","targets":[` + string(many[:len(many)-1]) + `]}`,
		"text outside ISO 8859-1":  `{"id":"x","text":"\u20ac","targets":[{"user":"a","term":"b"}]}`,
		"target outside 8859-1":    `{"id":"x","targets":[{"user":"\u20ac","term":"b"}]}`,
		"identity outside 8859-1":  `{"id":"x","origin":{"sender":{"user":"\u20ac"}},"targets":[{"user":"a","term":"b"}]}`,
		"invalid UTF-8 in payload": "{\"id\":\"x\",\"text\":\"\xff\",\"targets\":[{\"user\":\"a\",\"term\":\"b\"}]}",
	} {
		if _, err := DecodeQueued([]byte(in)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

// Issue 14: "Carry delivery outcomes as errors inside the program (strings
// only on the wire)". A result's error crosses NATS as a code and a text
// and comes back matching the same sentinel, with the same words.
func TestWireErrorsKeepTheirSentinel(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, c := range wireCodes() {
		if seen[c.code] {
			t.Errorf("code %q used twice", c.code)
		}
		seen[c.code] = true
		got := wireErrNum(errCodeNum(c.err), []byte(c.err.Error()))
		if !errors.Is(got, c.err) || got.Error() != c.err.Error() {
			t.Errorf("%v came back as %v", c.err, got)
		}
	}
	for _, tc := range []struct {
		name string
		err  error
		want error // the sentinel it must match after the trip
	}{
		{"the outer reason wins", fmt.Errorf("%w: %w", ErrNotAcked, ErrTerminalGone), ErrNotAcked},
		{"a refusal from the terminal", fmt.Errorf("%w: bob", ErrBlocked), ErrBlocked},
		{"mailbox trouble after no ack", fmt.Errorf("%w; %w: timeout", ErrNotAcked, ErrMailboxDown), ErrNotAcked},
	} {
		got := wireErrNum(errCodeNum(tc.err), []byte(tc.err.Error()))
		if !errors.Is(got, tc.want) || got.Error() != tc.err.Error() {
			t.Errorf("%s: %q came back as %q (matches %v: %v)", tc.name, tc.err, got, tc.want, errors.Is(got, tc.want))
		}
	}
	// A newer node's code this one does not know: the text still counts,
	// and it matches no sentinel, so it is never taken for a success note.
	if got := wireErrNum(200, []byte("terminal in superposition")); got == nil || got.Error() != "terminal in superposition" || errors.Is(got, ErrDuplicate) {
		t.Errorf("unknown code: %v", got)
	}
	if got := wireErrNum(0, nil); got != nil {
		t.Errorf("no reason at all came back as %v", got)
	}
	if errCodeNum(errors.New("something else")) != 0 || errCodeNum(nil) != 0 {
		t.Error("an error matching no sentinel must have no code")
	}
}
