package switchboard

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/msprelay/msprelay/identity"
	"github.com/msprelay/msprelay/principal"
)

// wireSample is a delivery using every octet a message may carry.
func wireSample(id string) (*Delivery, []principal.Entry) {
	var all []byte
	for c := 0x20; c <= 0xff; c++ {
		all = append(all, byte(c))
	}
	all = append(all, '\r', '\n', '\t')
	d := &Delivery{ID: id, Recipient: "J\xf6rg", RecipTerm: "pts/1", Sender: "Ren\xe9", SenderTerm: "tty\xe0",
		Text: string(all), Cookie: "c\xe91", Signature: "\x00\x01\xff\xfe", Time: time.Unix(1700000000, 5).UTC(),
		Origin: Origin{Node: "a", Addr: "127.0.0.1:9", Transport: "udp", Revision: "B",
			Sender: identity.Identity{User: "mallory", Claimed: "Ren\xe9", Method: identity.Kernel, Node: "a", Source: "SRC!"}}}
	return d, []principal.Entry{{User: "j\xf6rg", Term: "pts/1"}, {User: "j\xf6rg", Term: "pts/2"}}
}

// "Eight-bit ISO 8859-1 text; do not strip the eighth bit": a batch of
// deliveries crosses in the binary frame octet for octet, in order.
func TestWireFrameKeepsEveryOctetAndTheOrder(t *testing.T) {
	t.Parallel()
	var calls []*call
	for i := range 3 {
		d, ts := wireSample(fmt.Sprintf("id%d", i))
		if i == 1 {
			d.Time, d.Origin.Sender, d.Signature = time.Time{}, identity.Identity{}, ""
		}
		c := &call{d: d, targets: ts[:i%2+1]}
		if i == 2 {
			c.deadline = time.Unix(1700000000, 0).Add(1500 * time.Millisecond)
		}
		calls = append(calls, c)
	}
	frame := appendRequest(nil, calls, time.Unix(1700000000, 0))
	if frame[0] == '{' || frame[0] != wireMagic || frame[1] != wireVersion {
		t.Fatalf("frame starts %x", frame[:3])
	}
	items, err := decodeRequest(frame)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != len(calls) {
		t.Fatalf("%d items, want %d", len(items), len(calls))
	}
	for i, it := range items {
		if it.d != *calls[i].d {
			t.Errorf("item %d:\n got %+v\nwant %+v", i, it.d, *calls[i].d)
		}
		// The deadline crosses as the time left when the frame was made.
		if want := map[int]time.Duration{2: 1500 * time.Millisecond}[i]; it.budget != want {
			t.Errorf("item %d: budget %v, want %v", i, it.budget, want)
		}
		if len(it.targets) != len(calls[i].targets) {
			t.Fatalf("item %d: %d targets", i, len(it.targets))
		}
		for j, tg := range it.targets {
			if e := calls[i].targets[j]; tg.user != e.User || tg.term != e.Term {
				t.Errorf("item %d target %d = %+v, want %+v", i, j, tg, e)
			}
		}
	}
}

// Issue 14: results cross as a status, a numbered code and the reason's
// text, and come back matching the same sentinel with the same words; a
// status or code this node does not know can only make a plain failure.
func TestWireReplyKeepsResults(t *testing.T) {
	t.Parallel()
	targets := []principal.Entry{{User: "alice", Term: "pts/1"}, {User: "alice", Term: "pts/2"}, {User: "alice", Term: "pts/3"}}
	var sent []Result
	for _, c := range wireCodes() {
		sent = append(sent, Result{Status: Refused, Err: c.err})
	}
	sent = append(sent,
		Result{Status: Delivered, Acked: true},
		Result{Status: Delivered, Err: ErrDuplicate},
		Result{Status: Queued, Err: fmt.Errorf("%w: %w", ErrNotAcked, ErrTerminalGone)},
		Result{Status: Failed, Err: errors.New("something new")})
	for i := 0; i < len(sent); i += len(targets) {
		group := sent[i:min(i+len(targets), len(sent))]
		frame := appendReply(nil, "b", "", [][]Result{group})
		r := wireReader{b: frame}
		node, fault, n := replyHeader(&r)
		if node != "b" || fault != "" || n != 1 || r.err != nil {
			t.Fatalf("header %q %q %d %v", node, fault, n, r.err)
		}
		got := make([]Result, len(group))
		decodeResults(&r, "b", targets[:len(group)], got)
		if r.err != nil || len(r.b) != 0 {
			t.Fatalf("results: %v, %d octets left", r.err, len(r.b))
		}
		for j, want := range group {
			g := got[j]
			if g.Status != want.Status || g.Acked != want.Acked || g.Node != "b" || g.User != "alice" || g.Term != targets[j].Term {
				t.Errorf("result %+v, want %+v", g, want)
			}
			if errText(g.Err) != errText(want.Err) {
				t.Errorf("reason %q, want %q", errText(g.Err), errText(want.Err))
			}
			if s := wireCodes(); errCodeNum(want.Err) > 0 && !errors.Is(g.Err, s[errCodeNum(want.Err)-1].err) {
				t.Errorf("%v lost its sentinel", want.Err)
			}
		}
	}
	// A status and a code from a newer node.
	frame := append(appendReply(nil, "b", "", nil)[:0:0], wireMagic, wireVersion, kindReply)
	frame = appendStr(appendStr(frame, "b"), "")
	frame = append(frame, 1, 1, 9, 0)
	frame = binary.AppendUvarint(frame, 200)
	frame = appendStr(frame, "terminal in superposition")
	r := wireReader{b: frame}
	if _, _, n := replyHeader(&r); n != 1 {
		t.Fatal(r.err)
	}
	got := make([]Result, 1)
	decodeResults(&r, "b", targets[:1], got)
	if r.err != nil || got[0].Status != Failed || got[0].Err == nil || got[0].Err.Error() != "terminal in superposition" || errors.Is(got[0].Err, ErrDuplicate) {
		t.Fatalf("unknown status and code came back as %+v (%v)", got[0], r.err)
	}
}

// "every queue and table bounded": a frame cannot make the decoder
// allocate beyond its own size, nor carry more than a delivery may.
func TestWireDecodeRefusesBadFrames(t *testing.T) {
	t.Parallel()
	d, ts := wireSample("x")
	good := appendRequest(nil, []*call{{d: d, targets: ts}}, time.Now())
	hdr := []byte{wireMagic, wireVersion, kindRequest}
	manyTargets := func(n int) []byte {
		b := append([]byte(nil), hdr...)
		b = append(b, 1)
		for range 16 {
			b = append(b, 0)
		}
		b = append(b, 0, 0) // method, flags
		b = binary.AppendUvarint(b, uint64(n))
		return append(b, make([]byte, 2*n)...)
	}
	for name, in := range map[string][]byte{
		"empty":           nil,
		"JSON":            []byte(`{"id":"x"}`),
		"another version": {wireMagic, wireVersion + 1, kindRequest, 1},
		"version 1":       {wireMagic, wireVersionV1, kindRequest, 1},
		"a budget of more than a day": appendRequest(nil, []*call{{d: d, targets: ts,
			deadline: time.Unix(0, 0).Add(25 * time.Hour)}}, time.Unix(0, 0)),
		"a reply, not a request":          {wireMagic, wireVersion, kindReply, 1},
		"no deliveries":                   append(append([]byte(nil), hdr...), 0),
		"more deliveries than a batch":    append(append([]byte(nil), hdr...), maxBatch+1),
		"a count the octets cannot hold":  append(append([]byte(nil), hdr...), 0xff, 0xff, 0xff, 0xff, 0x0f),
		"a field longer than the frame":   append(append([]byte(nil), hdr...), 1, 0xff, 0xff, 0xff, 0xff, 0x0f),
		"truncated":                       good[:len(good)-1],
		"octets after the last delivery":  append(append([]byte(nil), good...), 0),
		"no targets":                      manyTargets(0),
		"more targets than a request may": manyTargets(maxTargetsPerRequest + 1),
		"a bad varint": append(append([]byte(nil), hdr...),
			0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80),
	} {
		if items, err := decodeRequest(in); err == nil || !errors.Is(err, ErrWireFormat) {
			t.Errorf("%s: %d items, err %v", name, len(items), err)
		}
	}
	if _, err := decodeRequest(manyTargets(maxTargetsPerRequest)); err != nil {
		t.Errorf("the largest request refused: %v", err)
	}
	// Nanoseconds past a second would make another time than was sent.
	// The nanoseconds (5) follow the last string (the source), the method,
	// the flags and the seconds.
	at := bytes.Index(good, []byte("SRC!")) + 4 + 2 + binary.PutVarint(make([]byte, 10), 1700000000)
	if good[at] != 5 {
		t.Fatalf("nanoseconds not at %d", at)
	}
	bad := binary.AppendUvarint(bytes.Clone(good[:at]), uint64(time.Second))
	bad = append(bad, good[at+1:]...)
	if _, err := decodeRequest(bad); err == nil || !strings.Contains(err.Error(), "nanoseconds") {
		t.Errorf("a time with bad nanoseconds decoded: %v", err)
	}
	// Years JSON (and so the mailbox) cannot carry.
	far := *d
	far.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := decodeRequest(appendRequest(nil, []*call{{d: &far, targets: ts}}, time.Now())); !errors.Is(err, ErrWireFormat) {
		t.Errorf("a time in the year 10000 decoded: %v", err)
	}
	for name, in := range map[string][]byte{
		"truncated reply": {wireMagic, wireVersion, kindReply, 1},
		"more results than a batch": append(appendStr(appendStr([]byte{wireMagic, wireVersion, kindReply}, "b"), ""),
			maxBatch+1),
	} {
		r := wireReader{b: in}
		if replyHeader(&r); r.err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

// Issue 13: "`nats sub` readability can come from a debug tool instead":
// FrameJSON shows a binary frame as the JSON people know.
func TestFrameJSONShowsFramesReadably(t *testing.T) {
	t.Parallel()
	d := &Delivery{ID: "id1", Recipient: "J\xf6rg", Sender: "bob", Text: "hi\r\n", Time: time.Unix(1700000000, 0).UTC(),
		Origin: Origin{Node: "a", Transport: "udp"}}
	d.Origin.Sender = identity.Identity{User: "bob", Method: identity.Signature, Node: "a", Source: "192.0.2.1:9"}
	req := appendRequest(nil, []*call{{d: d, targets: []principal.Entry{{User: "j\xf6rg", Term: "pts/1"}},
		deadline: time.Unix(0, 0).Add(time.Second)}}, time.Unix(0, 0))
	rep := appendReply(nil, "b", "", [][]Result{{{Status: Refused, Err: fmt.Errorf("%w: bob", ErrBlocked)}}})
	for _, tc := range []struct {
		name  string
		frame []byte
		want  []string
	}{
		{"request", req, []string{`"kind":"request"`, `"version":2`, `"recipient":"Jörg"`, `"text":"hi\r\n"`, `"user":"jörg"`,
			`"sender":{"user":"bob","method":"signature","node":"a","source":"192.0.2.1:9"}`, `"budget_ms":1000`}},
		{"reply", rep, []string{`"kind":"reply"`, `"node":"b"`, `"status":"refused"`, `"code":"blocked"`, `"reason":"blocked by recipient: bob"`}},
	} {
		got, err := FrameJSON(tc.frame)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(string(got), w) {
				t.Errorf("%s: %s lacks %s", tc.name, got, w)
			}
		}
	}
	// A debug printer of this version's frames only: the JSON of nodes
	// from before the binary format is not a frame.
	for _, bad := range [][]byte{nil, req[:len(req)-1], rep[:len(rep)-1], []byte("{not json"), []byte(`{"node":"b","results":[]}`)} {
		if _, err := FrameJSON(bad); !errors.Is(err, ErrWireFormat) {
			t.Errorf("FrameJSON(%q) = %v", bad, err)
		}
	}
}
