package switchboard

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/presence"
)

// FuzzReceiveDelivery feeds the receiving side of federation (subject and
// body of a deliver request, as any NATS client could send them). No
// input may panic it; whatever it accepts passes the MSP rules, names the
// sender from the subject, is verified only when the sender said so and
// peers are authenticated, and survives an encode/decode round trip.
func FuzzReceiveDelivery(f *testing.F) {
	d := &Delivery{ID: "id1", Recipient: "alice", RecipTerm: "pts/1", Sender: "bob", SenderTerm: "tty1",
		Text: "hello\r\n\xe9", Cookie: "c1", Signature: "sig", Time: time.Unix(1700000000, 0).UTC(),
		Origin: Origin{Node: "a", Addr: "192.0.2.1:9", Transport: "udp", Verified: true}}
	good, err := encodeDelivery(d, []presence.Entry{{User: "alice", Term: "pts/1"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("a", good, true)
	f.Add("c", good, false)
	f.Add("a", []byte(`{"id":"x","text":"\u001b]0;x\u0007","targets":[{"user":"a","term":"b"}]}`), true)
	f.Add("a.b", good, true)
	f.Add("", []byte(`{"targets":[]}`), false)
	f.Fuzz(func(t *testing.T, src string, body []byte, peersAuth bool) {
		fed := &federation{sb: &Switchboard{cfg: Config{Node: "b", PeersAuthenticated: peersAuth}}}
		claimed := wireDelivery{}
		_ = json.Unmarshal(body, &claimed)
		got, targets, err := fed.receive(&nats.Msg{Subject: "msp.node.b.deliver." + src, Data: body})
		if err != nil {
			if targets != nil && !errors.Is(err, ErrInvalidDelivery) {
				t.Fatalf("refused with targets but error %v", err)
			}
			return
		}
		if len(targets) == 0 || len(targets) > maxTargetsPerRequest {
			t.Fatalf("%d targets accepted", len(targets))
		}
		if got.Origin.Node != src || presence.ValidNode(src) != nil {
			t.Fatalf("origin %q from subject token %q", got.Origin.Node, src)
		}
		if got.Origin.Verified && (!peersAuth || !claimed.Origin.Verified || claimed.Origin.Node != src) {
			t.Fatalf("verified without authenticated peers vouching (peers %v, claim %+v)", peersAuth, claimed.Origin)
		}
		if err := msp.ValidateParts(msp.Parts{Recipient: got.Recipient, RecipTerm: got.RecipTerm, Text: got.Text,
			Sender: got.Sender, SenderTerm: got.SenderTerm, Cookie: got.Cookie, Signature: got.Signature}); err != nil {
			t.Fatalf("accepted a delivery that breaks the MSP rules: %v", err)
		}
		es := make([]presence.Entry, len(targets))
		for i, tg := range targets {
			es[i] = presence.Entry{User: tg.User, Term: tg.Term}
		}
		again, err := encodeDelivery(got, es)
		if err != nil {
			t.Fatal(err)
		}
		back, _, err := decodeDelivery(again)
		if err != nil || back.Text != got.Text || back.Sender != got.Sender || back.Signature != got.Signature {
			t.Fatalf("round trip: %+v %v, want %+v", back, err, got)
		}
	})
}
