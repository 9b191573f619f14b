package switchboard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/msprelay/msprelay/broker"
	"github.com/msprelay/msprelay/identity"
	"github.com/msprelay/msprelay/presence"
	"github.com/msprelay/msprelay/principal"
)

// fedRelay is an embedded nats-server for federation tests.
func fedRelay(tb testing.TB) string {
	tb.Helper()
	b, err := broker.New(broker.Config{Name: "r", Listen: "127.0.0.1:0"})
	if err != nil {
		tb.Fatal(err)
	}
	if err := b.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { b.Close() })
	return b.ClientURL()
}

func fedDial(tb testing.TB, url string) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// fedDir is a presence directory of node that does not gossip.
func fedDir(tb testing.TB, node string) *presence.Directory {
	tb.Helper()
	dir, err := presence.New(presence.Config{Name: node, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { dir.Close() })
	return dir
}

// fedBoard is a switchboard of node on url. It is started (serving its
// deliver subject).
func fedBoard(tb testing.TB, url, node string, timeout time.Duration) *Switchboard {
	tb.Helper()
	return fedBoardOn(tb, url, fedDir(tb, node), Config{ForwardTimeout: timeout})
}

// fedBoardOn is fedBoard for dir's node, with cfg's other settings (no
// Logger: logs are discarded).
func fedBoardOn(tb testing.TB, url string, dir *presence.Directory, cfg Config) *Switchboard {
	tb.Helper()
	cfg.Node, cfg.Directory, cfg.NATS = dir.Name(), dir, fedDial(tb, url)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	sb, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if err := sb.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { sb.Close() })
	return sb
}

// tape is a terminal that keeps what it is handed, in order.
type tape struct {
	mu  sync.Mutex // guards got
	got []Delivery
}

func (r *tape) Deliver(_ context.Context, d *Delivery) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, *d)
	return nil
}

func (r *tape) Kick(string) {}

func (r *tape) all() []Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Delivery(nil), r.got...)
}

// Issue 19: "the legacy JSON wire format removed behind a version gate
// (nodes that speak only JSON are refused with a clear log line)". Between
// nodes of this version every part crosses octet for octet, the identity
// and the budget included; a peer of another version is refused, the
// refusal names that peer and its version in the log, and the peer gets an
// error it can read instead of a silent timeout.
func TestFederationVersionGate(t *testing.T) {
	t.Parallel()
	url := fedRelay(t)
	logB := &lockedLog{}
	a := fedBoard(t, url, "a", 3*time.Second)
	b := fedBoardOn(t, url, fedDir(t, "b"), Config{ForwardTimeout: 3 * time.Second, Logger: logB.logger()})
	box := &tape{}
	if _, err := b.SignIn("j\xf6rg", "pts/1", principal.Online, box); err != nil {
		t.Fatal(err)
	}
	target := []principal.Entry{{User: "j\xf6rg", Node: "b", Term: "pts/1"}}

	t.Run("nodes of this version deliver every octet", func(t *testing.T) {
		d := validSample("m0")
		res := a.fed.forward(context.Background(), "b", d, target, nil)
		if len(res) != 1 || res[0].Status != Delivered || res[0].User != "j\xf6rg" || res[0].Node != "b" {
			t.Fatalf("results %+v", res)
		}
		got := box.all()
		want := validSample("m0")
		// Peers are not authenticated here: the identity is not believed.
		want.Origin.Sender.Method, want.Origin.Sender.User = identity.None, ""
		if len(got) != 1 || got[0] != *want {
			t.Fatalf("arrived %+v\nwant %+v", got, *want)
		}
	})

	nc := fedDial(t, url)
	subject := DeliverSubject("b", "a")
	v1 := appendRequest(nil, []*call{{d: validSample("m1"), targets: target}}, time.Now())
	v1[1] = wireVersionV1
	for _, tc := range []struct {
		name, peerVersion string
		body              []byte
		answer            func(t *testing.T, data []byte) string // the fault the peer reads
	}{
		{"a JSON-only peer is refused with a log line", "json",
			[]byte(`{"id":"x","recipient":"j\u00f6rg","sender":"mallory","text":"hi","origin":{"node":"a","verified":true},"targets":[{"user":"j\u00f6rg","term":"pts/1"}]}`),
			func(t *testing.T, data []byte) string {
				var rep struct{ Node, Error string }
				if err := json.Unmarshal(data, &rep); err != nil || rep.Node != "b" {
					t.Fatalf("reply %q: %v", data, err)
				}
				return rep.Error
			}},
		{"a version 1 peer is refused and told why in version 1", "1", v1,
			func(t *testing.T, data []byte) string {
				if len(data) < 2 || data[1] != wireVersionV1 {
					t.Fatalf("reply %q is not a version 1 frame", data)
				}
				data = bytes.Clone(data)
				data[1] = wireVersion // the layout is the same
				r := wireReader{b: data}
				node, fault, n := replyHeader(&r)
				if r.err != nil || node != "b" || n != 0 {
					t.Fatalf("reply %q: %v", data, r.err)
				}
				return fault
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(box.all())
			msg, err := nc.Request(subject, tc.body, 3*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if fault := tc.answer(t, msg.Data); !strings.Contains(fault, "federation version 2") || !strings.Contains(fault, "upgrade node a") {
				t.Errorf("the peer reads %q; want the version and what to do", fault)
			}
			if n := len(box.all()) - before; n != 0 {
				t.Fatalf("%d deliveries arrived from a refused request", n)
			}
			line := logB.find("refusing deliver request", "peer_version="+tc.peerVersion)
			if !strings.Contains(line, "peer=a") || !strings.Contains(line, "level=WARN") {
				t.Errorf("log line %q does not name the peer node", line)
			}
		})
	}
}

// The sending side of the gate: a node that answers in JSON (from before
// the binary format) or in another binary version fails the delivery with
// ErrWireVersion, so that the message goes to the next terminal or the
// mailbox, and the log says which node must be upgraded.
func TestForwardToAnOlderNodeFailsWithTheReason(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, peerVersion string
		reply             []byte
	}{
		{"a node answering in JSON", "json", []byte(`{"node":"b","error":"json: cannot unmarshal"}`)},
		{"a node answering in version 1", "1", appendReplyVersion(nil, wireVersionV1, "b", "version 2, this node speaks 1", nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			url := fedRelay(t)
			logA := &lockedLog{}
			a := fedBoardOn(t, url, fedDir(t, "a"), Config{ForwardTimeout: 3 * time.Second, Logger: logA.logger()})
			nc := fedDial(t, url)
			if _, err := nc.Subscribe(deliverWildcard("b"), func(m *nats.Msg) { _ = m.Respond(tc.reply) }); err != nil {
				t.Fatal(err)
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			res := a.fed.forward(context.Background(), "b", validSample("m"), []principal.Entry{{User: "j\xf6rg", Node: "b", Term: "pts/1"}}, nil)
			if len(res) != 1 || res[0].Status != Failed || !errors.Is(res[0].Err, ErrWireVersion) {
				t.Fatalf("results %+v, want failed with %v", res, ErrWireVersion)
			}
			if line := logA.find("peer=b", "peer_version="+tc.peerVersion); !strings.Contains(line, "level=WARN") {
				t.Errorf("log line %q", line)
			}
		})
	}
}

// lockedLog is a text log tests can read while the code under test writes
// it; mu guards b.
type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// find returns the first log line holding every one of parts, "" if none.
func (l *lockedLog) find(parts ...string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
lines:
	for line := range strings.Lines(l.b.String()) {
		for _, p := range parts {
			if !strings.Contains(line, p) {
				continue lines
			}
		}
		return line
	}
	return ""
}

// validSample is a delivery with 8-bit octets that passes the MSP rules.
func validSample(id string) *Delivery {
	return &Delivery{ID: id, Recipient: "J\xf6rg", RecipTerm: "pts/1", Sender: "Ren\xe9", SenderTerm: "tty\xe0",
		Text: "Gr\xfc\xdfe aus K\xf6ln\r\n\t\xe0 bient\xf4t \xa4\xff", Cookie: "c\xe91", Signature: "s\xe9g", Time: time.Unix(1700000000, 5).UTC(),
		Origin: Origin{Node: "a", Addr: "127.0.0.1:9", Transport: "udp", Revision: "A",
			Sender: identity.Identity{User: "ren\xe9", Claimed: "Ren\xe9", Method: identity.Signature, Node: "a", Source: "127.0.0.1:9"}}}
}

// answerer stands in for node b: it hands every deliver request to the
// test, which answers when it chooses.
type answerer struct {
	reqs chan heldRequest
}

type heldRequest struct {
	msg   *nats.Msg
	items []wireItem
}

func newAnswerer(t *testing.T, url, node string) *answerer {
	t.Helper()
	a := &answerer{reqs: make(chan heldRequest, 64)}
	nc := fedDial(t, url)
	if _, err := nc.Subscribe(deliverWildcard(node), func(m *nats.Msg) {
		items, err := decodeRequest(m.Data)
		if err != nil {
			t.Errorf("answerer: %v", err)
			return
		}
		a.reqs <- heldRequest{msg: m, items: items}
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return a
}

func (a *answerer) next(t *testing.T) heldRequest {
	t.Helper()
	select {
	case r := <-a.reqs:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no deliver request arrived")
		return heldRequest{}
	}
}

func (a *answerer) none(t *testing.T, within time.Duration) {
	t.Helper()
	select {
	case r := <-a.reqs:
		t.Fatalf("unexpected request with %d deliveries", len(r.items))
	case <-time.After(within):
	}
}

// ids lists the delivery ids of a request, in frame order.
func (h heldRequest) ids() []string {
	var out []string
	for _, it := range h.items {
		out = append(out, it.d.ID)
	}
	return out
}

// answer replies to h: a delivery whose text is "busy" is refused, the
// rest are delivered.
func (h heldRequest) answer(t *testing.T, node string) {
	t.Helper()
	var results [][]Result
	for _, it := range h.items {
		rs := make([]Result, len(it.targets))
		for i := range rs {
			rs[i] = Result{Status: Delivered}
			if it.d.Text == "busy" {
				rs[i] = Result{Status: Refused, Err: ErrBusy}
			}
		}
		results = append(results, rs)
	}
	if err := h.msg.Respond(appendReply(nil, node, "", results)); err != nil {
		t.Fatal(err)
	}
}

type forwarded struct {
	id  string
	res []Result
}

// startForward runs one forward to b in the background.
func startForward(f *federation, id, text string, out chan<- forwarded) {
	go func() {
		d := &Delivery{ID: id, Recipient: "alice", Text: text, Time: time.Now()}
		out <- forwarded{id, f.forward(context.Background(), "b", d, []principal.Entry{{User: "alice", Node: "b", Term: "pts/1"}}, nil)}
	}()
}

func waitQueued(t *testing.T, p *peer, n int) {
	t.Helper()
	for start := time.Now(); time.Since(start) < 5*time.Second; time.Sleep(time.Millisecond) {
		p.mu.Lock()
		q := len(p.queue)
		p.mu.Unlock()
		if q == n {
			return
		}
	}
	t.Fatalf("queue never reached %d", n)
}

func collect(t *testing.T, out <-chan forwarded, n int) map[string][]Result {
	t.Helper()
	got := map[string][]Result{}
	for range n {
		select {
		case r := <-out:
			got[r.id] = r.res
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d forwards returned", len(got), n)
		}
	}
	return got
}

// Issue 13: "batching of requests to the same node when several are in
// flight". A delivery to an idle link goes at once and alone; while the
// link's slots are busy, deliveries queue and then travel together in
// one request, in the order they came, and each caller gets its own
// results back.
func TestBatchesQueueInOrderAndSplitTheReply(t *testing.T) {
	t.Parallel()
	url := fedRelay(t)
	ans := newAnswerer(t, url, "b")
	a := fedBoard(t, url, "a", 5*time.Second)
	a.fed.staleAfter = time.Hour // only a slot coming free sends the queue
	out := make(chan forwarded, 16)
	var held []heldRequest
	for i := range maxInflight {
		startForward(a.fed, fmt.Sprintf("h%d", i), "hi", out)
		h := ans.next(t)
		if len(h.items) != 1 {
			t.Fatalf("a delivery on a free slot travelled with %d others", len(h.items)-1)
		}
		held = append(held, h)
	}
	p := a.fed.peer("b")
	var want []string
	for i := range 5 {
		id, text := fmt.Sprintf("q%d", i), "hi"
		if i == 2 {
			text = "busy"
		}
		startForward(a.fed, id, text, out)
		want = append(want, id)
		waitQueued(t, p, i+1) // one at a time, so that the order is known
	}
	ans.none(t, 50*time.Millisecond)
	held[0].answer(t, "b")
	batch := ans.next(t)
	if fmt.Sprint(batch.ids()) != fmt.Sprint(want) {
		t.Fatalf("batch carries %v, want %v in one request", batch.ids(), want)
	}
	batch.answer(t, "b")
	for _, h := range held[1:] {
		h.answer(t, "b")
	}
	got := collect(t, out, maxInflight+5)
	for id, res := range got {
		wantSt := Delivered
		if id == "q2" {
			wantSt = Refused
		}
		if len(res) != 1 || res[0].Status != wantSt || res[0].Term != "pts/1" || (wantSt == Refused && !errors.Is(res[0].Err, ErrBusy)) {
			t.Errorf("%s: results %+v, want %v", id, res, wantSt)
		}
	}
	p.mu.Lock()
	inflight, queued := p.inflight, len(p.queue)
	p.mu.Unlock()
	if inflight != 0 || queued != 0 {
		t.Errorf("after all answers: %d in flight, %d queued", inflight, queued)
	}
}

// A reply waits for the slowest delivery of its request (a client may take
// the ack timeout): deliveries arriving while the slots have been busy
// for staleAfter do not wait behind them.
func TestSlowRequestsDoNotHoldTheLink(t *testing.T) {
	t.Parallel()
	url := fedRelay(t)
	ans := newAnswerer(t, url, "b")
	a := fedBoard(t, url, "a", 5*time.Second)
	a.fed.staleAfter = 0
	out := make(chan forwarded, 16)
	var held []heldRequest
	for i := range maxInflight + 2 {
		startForward(a.fed, fmt.Sprintf("s%d", i), "hi", out)
		held = append(held, ans.next(t))
	}
	for _, h := range held {
		h.answer(t, "b")
	}
	for id, res := range collect(t, out, len(held)) {
		if len(res) != 1 || res[0].Status != Delivered {
			t.Errorf("%s: %+v", id, res)
		}
	}
}

// "a batch reply that times out must give each item the same result
// today's single request timeout gives": Failed, ErrTimeout, within the
// forward timeout of each.
func TestBatchTimeoutFailsEveryDelivery(t *testing.T) {
	t.Parallel()
	url := fedRelay(t)
	ans := newAnswerer(t, url, "b")
	const timeout = 300 * time.Millisecond
	a := fedBoard(t, url, "a", timeout)
	a.fed.staleAfter = time.Hour
	out := make(chan forwarded, 16)
	start := time.Now()
	for i := range maxInflight {
		startForward(a.fed, fmt.Sprintf("h%d", i), "hi", out)
		ans.next(t) // never answered
	}
	p := a.fed.peer("b")
	for i := range 3 {
		startForward(a.fed, fmt.Sprintf("q%d", i), "hi", out)
		waitQueued(t, p, i+1)
	}
	got := collect(t, out, maxInflight+3)
	if el := time.Since(start); el > 3*timeout+time.Second {
		t.Errorf("forwards took %v with a timeout of %v", el, timeout)
	}
	for id, res := range got {
		if len(res) != 1 || res[0].Status != Failed || !errors.Is(res[0].Err, ErrTimeout) {
			t.Errorf("%s: results %+v, want failed with %v", id, res, ErrTimeout)
		}
	}
	// No node at all: unreachable at once.
	d := &Delivery{ID: "z", Recipient: "alice", Text: "hi", Time: time.Now()}
	res := a.fed.forward(context.Background(), "z", d, []principal.Entry{{User: "alice", Node: "z", Term: "pts/1"}}, nil)
	if len(res) != 1 || res[0].Status != Failed || !errors.Is(res[0].Err, ErrNodeDown) {
		t.Errorf("no responders: %+v", res)
	}
}

// A caller that gives up while its delivery still waits in the queue
// leaves it, and the delivery is never sent.
func TestCancelledCallerLeavesTheQueue(t *testing.T) {
	t.Parallel()
	url := fedRelay(t)
	ans := newAnswerer(t, url, "b")
	a := fedBoard(t, url, "a", 5*time.Second)
	a.fed.staleAfter = time.Hour
	out := make(chan forwarded, 16)
	var held []heldRequest
	for i := range maxInflight {
		startForward(a.fed, fmt.Sprintf("h%d", i), "hi", out)
		held = append(held, ans.next(t))
	}
	p := a.fed.peer("b")
	ctx, cancel := context.WithCancel(context.Background())
	gone := make(chan []Result, 1)
	go func() {
		d := &Delivery{ID: "gone", Recipient: "alice", Text: "hi", Time: time.Now()}
		gone <- a.fed.forward(ctx, "b", d, []principal.Entry{{User: "alice", Node: "b", Term: "pts/1"}}, nil)
	}()
	waitQueued(t, p, 1)
	startForward(a.fed, "kept", "hi", out)
	waitQueued(t, p, 2)
	cancel()
	select {
	case res := <-gone:
		if len(res) != 1 || res[0].Status != Failed || !errors.Is(res[0].Err, context.Canceled) {
			t.Errorf("cancelled: %+v", res)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a cancelled caller kept waiting")
	}
	held[0].answer(t, "b")
	batch := ans.next(t)
	if fmt.Sprint(batch.ids()) != "[kept]" {
		t.Errorf("next request carries %v", batch.ids())
	}
	batch.answer(t, "b")
	held[1].answer(t, "b")
	collect(t, out, maxInflight+1)
}

// A caller whose own request is in flight stops waiting when its context
// ends, as with a plain NATS request.
func TestCancelledCallerStopsWaitingForItsRequest(t *testing.T) {
	t.Parallel()
	url := fedRelay(t)
	ans := newAnswerer(t, url, "b")
	a := fedBoard(t, url, "a", 5*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	gone := make(chan []Result, 1)
	go func() {
		d := &Delivery{ID: "gone", Recipient: "alice", Text: "hi", Time: time.Now()}
		gone <- a.fed.forward(ctx, "b", d, []principal.Entry{{User: "alice", Node: "b", Term: "pts/1"}}, nil)
	}()
	h := ans.next(t)
	cancel()
	select {
	case res := <-gone:
		if len(res) != 1 || res[0].Status != Failed || !errors.Is(res[0].Err, context.Canceled) {
			t.Errorf("cancelled: %+v", res)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("a cancelled caller kept waiting for its reply")
	}
	h.answer(t, "b") // too late: nobody reads it
}

// discard is a terminal that takes every message and keeps nothing.
type discard struct{}

func (discard) Deliver(context.Context, *Delivery) error { return nil }
func (discard) Kick(string)                              {}

// BenchmarkForward measures a delivery to another node through an
// embedded relay, one caller and 16 at once.
func BenchmarkForward(b *testing.B) {
	for _, par := range []int{1, 16} {
		b.Run(fmt.Sprintf("binary/callers=%d", par), func(b *testing.B) {
			url := fedRelay(b)
			cfg := Config{ForwardTimeout: 5 * time.Second, InboundRate: -1}
			sa := fedBoardOn(b, url, fedDir(b, "a"), cfg)
			sb := fedBoardOn(b, url, fedDir(b, "b"), cfg)
			if _, err := sb.SignIn("alice", "pts/1", principal.Online, discard{}); err != nil {
				b.Fatal(err)
			}
			d := validSample("m")
			ts := []principal.Entry{{User: "alice", Node: "b", Term: "pts/1"}}
			var n atomicCounter
			b.ReportAllocs()
			b.ResetTimer()
			b.SetParallelism((par + 1) / 2) // GOMAXPROCS is 2 here
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					c := *d
					c.ID = fmt.Sprint(n.next()) // a new message each time, not a repeat
					if r := sa.fed.forward(context.Background(), "b", &c, ts, nil); r[0].Status != Delivered {
						b.Errorf("%+v", r[0])
						return
					}
				}
			})
		})
	}
}

type atomicCounter struct {
	mu sync.Mutex
	n  int
}

func (c *atomicCounter) next() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return c.n
}
