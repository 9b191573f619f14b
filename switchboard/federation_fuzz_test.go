package switchboard

import (
	"bytes"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/msprelay/msprelay/identity"
	"github.com/msprelay/msprelay/internal/limitlog"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/principal"
)

// FuzzDecodeQueued feeds the mailbox entry decoder (DecodeQueued), which
// reads what any holder of node credentials could have stored. No input
// may panic it; whatever it accepts has ISO 8859-1 parts, an identity whose
// method is one this node knows, and survives an encode/decode round trip
// unchanged, identity included.
func FuzzDecodeQueued(f *testing.F) {
	d := &Delivery{ID: "id1", Recipient: "alice", RecipTerm: "pts/1", Sender: "root", SenderTerm: "tty1",
		Text: "hello\r\n\xe9", Cookie: "c1", Signature: "sig", Time: time.Unix(1700000000, 0).UTC(),
		Origin: Origin{Node: "a", Addr: "127.0.0.1:9", Transport: "udp", Revision: "A",
			Sender: identity.Identity{User: "mallory", Claimed: "root", Method: identity.Kernel, Node: "a", Source: "127.0.0.1:9"}}}
	good, err := EncodeQueued(d, "alice")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"id":"x","origin":{"node":"b","verified":true},"targets":[{"user":"a","term":""}]}`))
	f.Add([]byte(`{"id":"x","origin":{"sender":{"user":"root","method":"secret","node":"b"}},"targets":[{"user":"a","term":""}]}`))
	f.Add([]byte(`{"targets":[]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := DecodeQueued(body)
		if err != nil {
			return
		}
		if got.Origin.Sender.Method > identity.Trust {
			t.Fatalf("unknown method %d accepted", got.Origin.Sender.Method)
		}
		again, err := EncodeQueued(got, "alice")
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeQueued(again)
		if err != nil {
			t.Fatalf("round trip: %v", err)
		}
		// JSON keeps times to the nanosecond but not their location.
		if !back.Time.Equal(got.Time) {
			t.Fatalf("time %v came back as %v", got.Time, back.Time)
		}
		back.Time = got.Time
		if *back != *got {
			t.Fatalf("round trip: %+v, want %+v", back, got)
		}
	})
}

// FuzzReceiveBatch feeds the receiving side of a binary deliver request
// (subject and frame, as any NATS client could send them). No input may
// panic it or make it keep more than the frame holds; every delivery it
// accepts without an error passes the MSP rules, names the sender from
// the subject, is verified only when the sender said so and peers are
// authenticated, and survives an encode/decode round trip.
func FuzzReceiveBatch(f *testing.F) {
	d := &Delivery{ID: "id1", Recipient: "alice", RecipTerm: "pts/1", Sender: "bob", SenderTerm: "tty1",
		Text: "hello\r\n\xe9", Cookie: "c1", Signature: "sig", Time: time.Unix(1700000000, 0).UTC(),
		Origin: Origin{Node: "a", Addr: "192.0.2.1:9", Transport: "udp", Revision: "B",
			Sender: identity.Identity{User: "bob", Claimed: "bob", Method: identity.Signature, Node: "a", Source: "192.0.2.1:9"}}}
	bad := *d
	bad.Text = "\x1b]0;x\x07"
	imp := *d
	imp.Sender, imp.Origin.Sender = "root", identity.Identity{User: "mallory", Claimed: "root", Method: identity.Kernel, Node: "a", Source: "127.0.0.1:9"}
	ts := []principal.Entry{{User: "alice", Term: "pts/1"}}
	now := time.Unix(1700000000, 0)
	one := appendRequest(nil, []*call{{d: d, targets: ts}}, now)
	f.Add("a", one, true)
	f.Add("c", one, true) // vouched for by a, arriving from c
	f.Add("a", appendRequest(nil, []*call{{d: d, targets: ts}, {d: &bad, targets: ts}, {d: d, targets: ts}}, now), true)
	f.Add("a", appendRequest(nil, []*call{{d: &imp, targets: ts, deadline: now.Add(1500 * time.Millisecond)}}, now), true)
	f.Add("a.b", one, false)
	f.Add("a", one[:len(one)-2], false)
	v1 := bytes.Clone(one)
	v1[1] = wireVersionV1
	f.Add("a", v1, true)
	f.Add("a", []byte(`{"id":"x","targets":[{"user":"a","term":"b"}]}`), true)
	f.Fuzz(func(t *testing.T, src string, body []byte, peersAuth bool) {
		fed := &federation{sb: &Switchboard{cfg: Config{Node: "b", PeersAuthenticated: peersAuth}},
			refusals: limitlog.New(slog.New(slog.DiscardHandler), 0)}
		claimed, _ := decodeRequest(body)
		if _, err := FrameJSON(body); (err == nil) != (claimed != nil) && !(len(body) > 2 && body[0] == wireMagic && body[2] == kindReply) {
			t.Fatalf("FrameJSON and the decoder disagree: %v", err)
		}
		items, err := fed.receiveBatch(&nats.Msg{Subject: "msp.node.b.deliver." + src, Data: body})
		if err != nil {
			return
		}
		if len(items) == 0 || len(items) > maxBatch || len(claimed) != len(items) {
			t.Fatalf("%d deliveries accepted", len(items))
		}
		total := 0
		calls := make([]*call, len(items))
		for i := range items {
			it := &items[i]
			total += len(it.targets)
			if len(it.targets) == 0 {
				t.Fatal("a delivery without targets")
			}
			es := make([]principal.Entry, len(it.targets))
			for j, tg := range it.targets {
				es[j] = principal.Entry{User: tg.user, Term: tg.term}
			}
			calls[i] = &call{d: &it.d, targets: es}
			if it.err != nil {
				if !errors.Is(it.err, ErrInvalidDelivery) {
					t.Fatalf("refused with %v", it.err)
				}
				continue
			}
			got := &it.d
			if got.Origin.Node != src || principal.ValidNode(src) != nil {
				t.Fatalf("origin %q from subject token %q", got.Origin.Node, src)
			}
			c := claimed[i].d.Origin.Sender
			if got.Origin.Sender.Verified() && (!peersAuth || !c.Verified() || c.Node != src) {
				t.Fatalf("verified without the subject's node vouching (peers %v, from %q, claim %+v)", peersAuth, src, c)
			}
			if got.Origin.Sender.Claimed != c.Claimed || (got.Origin.Sender.Method != c.Method && got.Origin.Sender.Method != identity.None) {
				t.Fatalf("identity %+v from claim %+v: only a downgrade to none may change it", got.Origin.Sender, c)
			}
			if err := msp.ValidateParts(msp.Parts{Recipient: got.Recipient, RecipTerm: got.RecipTerm, Text: got.Text,
				Sender: got.Sender, SenderTerm: got.SenderTerm, Cookie: got.Cookie, Signature: got.Signature}); err != nil {
				t.Fatalf("accepted a delivery that breaks the MSP rules: %v", err)
			}
		}
		if total > maxTargetsPerRequest {
			t.Fatalf("%d targets accepted", total)
		}
		back, err := decodeRequest(appendRequest(nil, calls, time.Now()))
		if err != nil || len(back) != len(items) {
			t.Fatalf("round trip: %d deliveries, %v", len(back), err)
		}
		for i := range back {
			if back[i].d != items[i].d || len(back[i].targets) != len(items[i].targets) {
				t.Fatalf("round trip: %+v, want %+v", back[i].d, items[i].d)
			}
		}
	})
}

// FuzzDecodeReply feeds the sending side a reply frame for a request of n
// deliveries of one target each, as the node asked (or anyone able to
// answer) could send it. No input may panic it; whatever decodes gives
// each target a known status and survives a round trip.
func FuzzDecodeReply(f *testing.F) {
	f.Add(appendReply(nil, "b", "", [][]Result{{{Status: Delivered, Acked: true}}}), uint8(1))
	f.Add(appendReply(nil, "b", "", [][]Result{{{Status: Refused, Err: ErrBusy}}, {{Status: Queued, Err: ErrNotAcked}}}), uint8(2))
	f.Add(appendReply(nil, "b", "switchboard: bad deliver frame: truncated", nil), uint8(1))
	f.Add(appendReplyVersion(nil, wireVersionV1, "b", "node b speaks federation version 2 only", nil), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, n uint8) {
		_, _ = FrameJSON(data) // must not panic
		targets := []principal.Entry{{User: "alice", Term: "pts/1"}}
		r := wireReader{b: data}
		node, _, got := replyHeader(&r)
		if r.err != nil {
			return
		}
		if got > maxBatch {
			t.Fatalf("%d results accepted", got)
		}
		var all [][]Result
		for range min(got, int(n)) {
			res := make([]Result, 1)
			decodeResults(&r, node, targets, res)
			if r.err != nil {
				return
			}
			if res[0].Status < Delivered || res[0].Status > Queued || res[0].User != "alice" {
				t.Fatalf("result %+v", res[0])
			}
			all = append(all, res)
		}
		again := wireReader{b: appendReply(nil, node, "", all)}
		if _, _, m := replyHeader(&again); again.err != nil || m != len(all) {
			t.Fatalf("round trip: %v", again.err)
		}
		for _, rs := range all {
			back := make([]Result, 1)
			decodeResults(&again, node, targets, back)
			if again.err != nil || back[0].Status != rs[0].Status || back[0].Acked != rs[0].Acked || errText(back[0].Err) != errText(rs[0].Err) {
				t.Fatalf("round trip: %+v, want %+v (%v)", back[0], rs[0], again.err)
			}
		}
	})
}
