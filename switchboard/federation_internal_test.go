package switchboard

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/msprelay/msprelay/presence"
)

// "Eight-bit ISO 8859-1 text; do not strip the eighth bit": a delivery must
// cross NATS octet for octet.
func TestWireDeliveryKeepsEveryOctet(t *testing.T) {
	t.Parallel()
	var all []byte
	for c := 0x20; c <= 0xff; c++ {
		all = append(all, byte(c))
	}
	all = append(all, '\r', '\n', '\t')
	d := &Delivery{ID: "id1", Recipient: "J\xf6rg", RecipTerm: "pts/1", Sender: "Ren\xe9", SenderTerm: "tty\xe0",
		Text: string(all), Cookie: "c\xe91", Signature: "\x00\x01\xff\xfe", Time: time.Unix(1700000000, 5).UTC(),
		Origin: Origin{Node: "a", Addr: "127.0.0.1:9", Transport: "udp", Verified: true}}
	body, err := encodeDelivery(d, []presence.Entry{{User: "j\xf6rg", Term: "pts/1"}})
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(body) {
		t.Fatalf("not valid JSON: %q", body)
	}
	got, targets, err := decodeDelivery(body)
	if err != nil {
		t.Fatal(err)
	}
	if *got != *d {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, d)
	}
	if len(targets) != 1 || targets[0].User != "j\xf6rg" {
		t.Fatalf("targets = %+v", targets)
	}
}

func TestWireDeliveryRejectsBadInput(t *testing.T) {
	t.Parallel()
	many := bytes.Repeat([]byte(`{"user":"a","term":"b"},`), maxTargetsPerRequest+1)
	for name, in := range map[string]string{
		"not JSON":                 "garbage",
		"no targets":               `{"id":"x","targets":[]}`,
		"too many targets":         `{"id":"x","targets":[` + string(many[:len(many)-1]) + `]}`,
		"text outside ISO 8859-1":  `{"id":"x","text":"\u20ac","targets":[{"user":"a","term":"b"}]}`,
		"target outside 8859-1":    `{"id":"x","targets":[{"user":"\u20ac","term":"b"}]}`,
		"invalid UTF-8 in payload": "{\"id\":\"x\",\"text\":\"\xff\",\"targets\":[{\"user\":\"a\",\"term\":\"b\"}]}",
	} {
		if _, _, err := decodeDelivery([]byte(in)); err == nil {
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
		got := wireErr(errCode(c.err), c.err.Error())
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
		got := wireErr(errCode(tc.err), tc.err.Error())
		if !errors.Is(got, tc.want) || got.Error() != tc.err.Error() {
			t.Errorf("%s: %q came back as %q (matches %v: %v)", tc.name, tc.err, got, tc.want, errors.Is(got, tc.want))
		}
	}
	// A newer node's code this one does not know: the text still counts,
	// and it matches no sentinel, so it is never taken for a success note.
	if got := wireErr("quantum-entangled", "terminal in superposition"); got == nil || got.Error() != "terminal in superposition" || errors.Is(got, ErrDuplicate) {
		t.Errorf("unknown code: %v", got)
	}
	if got := wireErr("", ""); got != nil {
		t.Errorf("no reason at all came back as %v", got)
	}
	if errCode(errors.New("something else")) != "" || errCode(nil) != "" {
		t.Error("an error matching no sentinel must have no code")
	}
}
