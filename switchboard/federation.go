package switchboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/presence"
)

// DeliverSubject is the NATS subject of a delivery from node src to the
// terminals of node dst (request-reply). The sender is part of the subject
// so that NATS permissions can hold a node to its own name (each node's
// user may publish only subjects ending in its name, see
// broker.NodePermissions) and the receiver learns the sender from the
// subject rather than from the payload. Node names are validated by
// presence.ValidNode before use, so they never contain '.', '*', '>' or
// spaces.
func DeliverSubject(dst, src string) string { return "msp.node." + dst + ".deliver." + src }

// deliverWildcard is what node subscribes to: deliveries from any node.
func deliverWildcard(node string) string { return "msp.node." + node + ".deliver.*" }

// ErrInvalidDelivery marks a delivery from another node that breaks the MSP
// rules; it is refused, never shown.
var ErrInvalidDelivery = errors.New("switchboard: invalid delivery")

// wireDelivery is the JSON body of a deliver request. MSP text is ISO 8859-1
// octets; JSON strings are UTF-8, so every octet travels as the rune of the
// same value (latin1ToUTF8) — lossless and readable with `nats sub 'msp.>'`.
type wireDelivery struct {
	ID         string       `json:"id"`
	Recipient  string       `json:"recipient"`
	RecipTerm  string       `json:"recip_term"`
	Sender     string       `json:"sender"`
	SenderTerm string       `json:"sender_term"`
	Text       string       `json:"text"`
	Cookie     string       `json:"cookie,omitempty"`
	Signature  []byte       `json:"signature,omitempty"` // opaque: base64
	Origin     wireOrigin   `json:"origin"`
	Time       time.Time    `json:"time"`
	Targets    []wireTarget `json:"targets"`
}

type wireOrigin struct {
	Node      string `json:"node"`
	Addr      string `json:"addr"`
	Transport string `json:"transport"`
	Verified  bool   `json:"verified"`
}

type wireTarget struct {
	User string `json:"user"`
	Term string `json:"term"`
}

type wireResult struct {
	User   string `json:"user"`
	Term   string `json:"term"`
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"` // Result.Err's text, for people and older nodes
	Code   string `json:"code,omitempty"`   // which sentinel Result.Err matches (wireCodes)
	Acked  bool   `json:"acked,omitempty"`
}

// codedErr pairs a sentinel error with its code on the wire.
type codedErr struct {
	code string
	err  error
}

// wireCodes is the code table of the sentinel errors a result may carry.
// An error matching several (ErrNotAcked wrapping ErrTerminalGone) gets
// the first: the outer reason comes first.
func wireCodes() [18]codedErr {
	return [...]codedErr{
		{"not-acked", ErrNotAcked},
		{"duplicate", ErrDuplicate},
		{"queued-before", ErrQueuedBefore},
		{"in-flight", ErrInFlight},
		{"no-such-user", ErrNoSuchUser},
		{"no-terminal", ErrNoTerminal},
		{"busy", ErrBusy},
		{"blocked", ErrBlocked},
		{"terminal-gone", ErrTerminalGone},
		{"terminal-slow", ErrTerminalSlow},
		{"no-console", ErrNoConsole},
		{"node-down", ErrNodeDown},
		{"timeout", ErrTimeout},
		{"bad-address", ErrBadAddress},
		{"unknown-user", ErrUnknownUser},
		{"mailbox-down", ErrMailboxDown},
		{"mailbox-full", ErrMailboxFull},
		{"inbound-rate", ErrInboundRate},
	}
}

// errCode is the wire code of err, "" when it matches no sentinel.
func errCode(err error) string {
	if err == nil {
		return ""
	}
	for _, c := range wireCodes() {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return ""
}

// remoteError is a reason another node reported: its text as sent, and
// the sentinel its code names, so that errors.Is works across nodes.
type remoteError struct {
	text string
	err  error // nil for an unknown code
}

func (e *remoteError) Error() string { return e.text }
func (e *remoteError) Unwrap() error { return e.err }

// wireErr maps a received JSON (code, reason) back to an error.
func wireErr(code, reason string) error {
	var sentinel error
	for _, c := range wireCodes() {
		if c.code == code {
			sentinel = c.err
			break
		}
	}
	return reasonErr(sentinel, reason)
}

// errCodeNum is the binary wire code of err: its position in wireCodes
// plus one, 0 when it matches no sentinel. The numbers are part of the
// wire format, so wireCodes only ever grows at its end.
func errCodeNum(err error) uint64 {
	if err == nil {
		return 0
	}
	for i, c := range wireCodes() {
		if errors.Is(err, c.err) {
			return uint64(i + 1)
		}
	}
	return 0
}

// wireErrNum maps a received binary (code, reason) back to an error; an
// unknown number keeps the text and matches no sentinel.
func wireErrNum(code uint64, reason []byte) error {
	var sentinel error
	if cs := wireCodes(); code >= 1 && code <= uint64(len(cs)) {
		sentinel = cs[code-1].err
	}
	if len(reason) == 0 {
		return reasonErr(sentinel, "")
	}
	return reasonErr(sentinel, string(reason))
}

func reasonErr(sentinel error, reason string) error {
	switch {
	case reason == "" && sentinel == nil:
		return nil
	case reason == "":
		return sentinel
	}
	return &remoteError{text: reason, err: sentinel}
}

type wireReply struct {
	Node    string       `json:"node"`
	Results []wireResult `json:"results"`
	Error   string       `json:"error,omitempty"`
}

// maxTargetsPerRequest bounds what one deliver request may ask of a node.
const maxTargetsPerRequest = 1024

func encodeDelivery(d *Delivery, targets []presence.Entry) ([]byte, error) {
	w := wireDelivery{
		ID: d.ID, Recipient: msp.Latin1ToUTF8(d.Recipient), RecipTerm: msp.Latin1ToUTF8(d.RecipTerm),
		Sender: msp.Latin1ToUTF8(d.Sender), SenderTerm: msp.Latin1ToUTF8(d.SenderTerm),
		Text: msp.Latin1ToUTF8(d.Text), Cookie: msp.Latin1ToUTF8(d.Cookie), Time: d.Time,
		Origin: wireOrigin{Node: d.Origin.Node, Addr: d.Origin.Addr, Transport: d.Origin.Transport, Verified: d.Origin.Verified},
	}
	if d.Signature != "" {
		w.Signature = []byte(d.Signature)
	}
	for _, e := range targets {
		w.Targets = append(w.Targets, wireTarget{User: msp.Latin1ToUTF8(e.User), Term: msp.Latin1ToUTF8(e.Term)})
	}
	return json.Marshal(&w)
}

func decodeDelivery(data []byte) (*Delivery, []wireTarget, error) {
	var w wireDelivery
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, nil, fmt.Errorf("switchboard: decode delivery: %w", err)
	}
	if len(w.Targets) == 0 || len(w.Targets) > maxTargetsPerRequest {
		return nil, nil, fmt.Errorf("switchboard: decode delivery: %d targets", len(w.Targets))
	}
	d := &Delivery{ID: w.ID, Signature: string(w.Signature), Time: w.Time, Origin: Origin{Node: w.Origin.Node, Addr: w.Origin.Addr, Transport: w.Origin.Transport, Verified: w.Origin.Verified}}
	for _, f := range []struct {
		dst *string
		src string
	}{{&d.Recipient, w.Recipient}, {&d.RecipTerm, w.RecipTerm}, {&d.Sender, w.Sender},
		{&d.SenderTerm, w.SenderTerm}, {&d.Text, w.Text}, {&d.Cookie, w.Cookie}} {
		v, err := msp.UTF8ToLatin1(f.src)
		if err != nil {
			return nil, nil, err
		}
		*f.dst = v
	}
	for i := range w.Targets {
		var err error
		if w.Targets[i].User, err = msp.UTF8ToLatin1(w.Targets[i].User); err != nil {
			return nil, nil, err
		}
		if w.Targets[i].Term, err = msp.UTF8ToLatin1(w.Targets[i].Term); err != nil {
			return nil, nil, err
		}
	}
	return d, w.Targets, nil
}

// sourceNode is the sending node named by a deliver subject. The sender
// comes from the subject (which NATS permissions tie to the sender's
// credentials), never from the payload.
func (f *federation) sourceNode(subject string) (string, error) {
	src, ok := strings.CutPrefix(subject, "msp.node."+f.sb.cfg.Node+".deliver.")
	if !ok || presence.ValidNode(src) != nil {
		return "", fmt.Errorf("%w: subject %q names no sending node", ErrInvalidDelivery, subject)
	}
	return src, nil
}

// vet checks a delivery from node src as if it had just arrived over MSP:
// every part must pass msp.ValidateParts; the origin node becomes src, and
// the sender stays "verified" only when src vouched for it itself and
// Config.PeersAuthenticated says NATS authenticates nodes.
func (f *federation) vet(src string, d *Delivery) error {
	if err := msp.ValidateParts(msp.Parts{
		Recipient: d.Recipient, RecipTerm: d.RecipTerm, Text: d.Text, Sender: d.Sender,
		SenderTerm: d.SenderTerm, Cookie: d.Cookie, Signature: d.Signature,
	}); err != nil {
		return fmt.Errorf("%w from %s: %w", ErrInvalidDelivery, src, err)
	}
	if d.Origin.Node != src {
		d.Origin.Verified = false
	}
	d.Origin.Node = src
	d.Origin.Verified = d.Origin.Verified && f.sb.cfg.PeersAuthenticated
	return nil
}

// receive decodes a JSON deliver request (the format of older nodes) and
// vets it. On a validation error the targets are returned too, so that
// each gets a Refused result.
func (f *federation) receive(m *nats.Msg) (*Delivery, []wireTarget, error) {
	src, err := f.sourceNode(m.Subject)
	if err != nil {
		return nil, nil, err
	}
	if len(m.Data) > maxDeliveryBytes {
		return nil, nil, fmt.Errorf("%w: %d bytes", ErrInvalidDelivery, len(m.Data))
	}
	d, targets, err := decodeDelivery(m.Data)
	if err != nil {
		return nil, nil, err
	}
	if err := f.vet(src, d); err != nil {
		return nil, targets, err
	}
	return d, targets, nil
}

// receiveBatch decodes a binary request frame and vets each delivery in
// it; a delivery that fails the checks keeps its error in its item. An
// error means the frame as a whole is refused.
func (f *federation) receiveBatch(m *nats.Msg) ([]wireItem, error) {
	src, err := f.sourceNode(m.Subject)
	if err != nil {
		return nil, err
	}
	if len(m.Data) > maxDeliveryBytes {
		return nil, fmt.Errorf("%w: %d bytes", ErrInvalidDelivery, len(m.Data))
	}
	items, err := decodeRequest(m.Data)
	if err != nil {
		return nil, err
	}
	for i := range items {
		items[i].err = f.vet(src, &items[i].d)
	}
	return items, nil
}

func parseStatus(s string) Status {
	switch s {
	case "delivered":
		return Delivered
	case "refused":
		return Refused
	case "queued":
		return Queued
	}
	return Failed
}

// federation is the NATS side of a Switchboard: it serves this node's deliver
// subject and forwards to other nodes'. The Switchboard owns it; Start
// subscribes and Close unsubscribes.
//
// Requests are read by the subscription's goroutine (owned by nats.go) and
// each is served in its own goroutine, at most cap(slots) at once, because a
// delivery may wait up to AckTimeout for a client's acknowledgement. When
// every slot is taken the reader waits, so excess requests queue in the
// subscription (bounded by its pending limits) and time out at their
// ingress nodes rather than pile up here. unsubscribe drains the
// subscription and waits for the serving goroutines (wg).
type federation struct {
	sb      *Switchboard
	nc      *nats.Conn
	timeout time.Duration
	slots   chan struct{}
	wg      sync.WaitGroup
	bufs    bufPool
	// legacy makes this node behave as one from before the binary format:
	// it sends JSON and reads every request as JSON (tests of mixed
	// versions set it before Start).
	legacy bool
	// staleAfter is the constant staleAfter; tests of the queue raise it.
	staleAfter time.Duration

	// mu guards sub and stopped, and orders wg.Add before wg.Wait.
	mu      sync.Mutex
	sub     *nats.Subscription
	stopped bool

	// peersMu guards peers, the sending side per destination node
	// (federation_peer.go).
	peersMu sync.Mutex
	peers   map[string]*peer
}

func newFederation(s *Switchboard, nc *nats.Conn) *federation {
	return &federation{sb: s, nc: nc, timeout: s.cfg.ForwardTimeout, slots: make(chan struct{}, s.cfg.MaxServing),
		staleAfter: staleAfter, peers: map[string]*peer{}}
}

// subscribeTimeout bounds the round trip that confirms the subscription.
const subscribeTimeout = 10 * time.Second

// subscribe starts serving this node's deliver subject and returns once
// the server has it.
func (f *federation) subscribe(ctx context.Context) error {
	sub, err := f.nc.Subscribe(deliverWildcard(f.sb.cfg.Node), f.dispatch)
	if err != nil {
		return fmt.Errorf("switchboard: subscribe %s: %w", deliverWildcard(f.sb.cfg.Node), err)
	}
	// A busy node may receive bursts; bound memory, not correctness: a
	// dropped request times out at the ingress and is reported as failed.
	if err := sub.SetPendingLimits(65536, 64<<20); err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("switchboard: pending limits: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, subscribeTimeout)
	defer cancel()
	if err := f.nc.FlushWithContext(ctx); err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("switchboard: flush subscription: %w", err)
	}
	f.mu.Lock()
	f.sub = sub
	f.mu.Unlock()
	return nil
}

func (f *federation) unsubscribe() {
	f.mu.Lock()
	sub := f.sub
	f.sub = nil
	f.mu.Unlock()
	switch {
	case sub == nil:
	case !f.nc.IsConnected():
		_ = sub.Unsubscribe() // nothing can be drained from a dead link
	default:
		_ = sub.Drain()
		// Drain returns at once; wait (bounded) until the subscription has
		// handed over what it held, then for the requests being served.
		for i := 0; i < 200 && sub.IsValid(); i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
	f.mu.Lock()
	f.stopped = true
	f.mu.Unlock()
	f.wg.Wait()
}

// dispatch runs in the subscription's goroutine: it takes a slot (waiting
// while all are busy) and serves m in a goroutine of its own. After
// unsubscribe has given up waiting, late requests get no answer (their
// ingress nodes time out).
func (f *federation) dispatch(m *nats.Msg) {
	f.slots <- struct{}{}
	f.mu.Lock()
	if f.stopped {
		f.mu.Unlock()
		<-f.slots
		return
	}
	f.wg.Add(1)
	f.mu.Unlock()
	go func() {
		defer f.wg.Done()
		defer func() { <-f.slots }()
		f.serve(m)
	}()
}

// maxDeliveryBytes bounds the body of one deliver request: a message of
// under 512 octets, each octet at most two in UTF-8 and some escaped in
// JSON, plus maxTargetsPerRequest targets. Larger requests are refused
// before they are decoded.
const maxDeliveryBytes = 256 << 10

// serve handles one deliver request from another node, answering in the
// format it was asked in: a binary frame, or the JSON of older nodes.
func (f *federation) serve(m *nats.Msg) {
	if len(m.Data) > 0 && m.Data[0] == wireMagic && !f.legacy {
		f.serveBatch(m)
		return
	}
	f.serveJSON(m)
}

// serveBatch serves a binary request frame. Its deliveries are served
// as separate requests would be: started in the frame's order, at the same
// time (each may wait for a client's acknowledgement), and answered
// together once the last is done.
func (f *federation) serveBatch(m *nats.Msg) {
	items, err := f.receiveBatch(m)
	buf := f.bufs.get()
	defer f.bufs.put(buf)
	if err != nil {
		f.sb.log.Warn("refusing deliver request", "subject", m.Subject, "err", err, "bytes", len(m.Data))
		*buf = appendReply(*buf, f.sb.cfg.Node, err.Error(), nil)
	} else {
		results := make([][]Result, len(items))
		if len(items) == 1 {
			results[0] = f.serveItem(m.Subject, &items[0])
		} else {
			var wg sync.WaitGroup
			for i := range items {
				wg.Go(func() { results[i] = f.serveItem(m.Subject, &items[i]) })
			}
			wg.Wait()
		}
		*buf = appendReply(*buf, f.sb.cfg.Node, "", results)
	}
	if m.Reply == "" {
		return
	}
	if err := m.Respond(*buf); err != nil {
		f.sb.log.Warn("deliver reply failed", "err", err)
	}
}

// serveItem delivers one vetted delivery of a frame, or refuses each of
// its targets when it broke the MSP rules, so that the ingress answers
// '-' instead of queueing it.
func (f *federation) serveItem(subject string, it *wireItem) []Result {
	if it.err != nil {
		f.sb.log.Warn("refusing delivery", "subject", subject, "err", it.err)
		out := make([]Result, len(it.targets))
		for i, t := range it.targets {
			out[i] = Result{User: t.user, Node: f.sb.cfg.Node, Term: t.term, Status: Refused, Err: it.err}
		}
		return out
	}
	return f.sb.deliverLocal(context.Background(), &it.d, it.targets)
}

// serveJSON handles a JSON deliver request, as nodes did before the binary
// format, and answers in JSON.
func (f *federation) serveJSON(m *nats.Msg) {
	rep := wireReply{Node: f.sb.cfg.Node}
	d, targets, err := f.receive(m)
	if err != nil {
		f.sb.log.Warn("refusing deliver request", "subject", m.Subject, "err", err, "bytes", len(m.Data))
		if len(targets) == 0 {
			rep.Error = err.Error()
		}
		// A delivery that breaks the MSP rules is refused per target, so
		// that the ingress answers '-' instead of queueing it.
		for _, t := range targets {
			rep.Results = append(rep.Results, wireResult{User: msp.Latin1ToUTF8(t.User), Term: msp.Latin1ToUTF8(t.Term),
				Status: Refused.String(), Reason: err.Error()})
		}
	} else {
		ts := make([]target, len(targets))
		for i, t := range targets {
			ts[i] = target{user: t.User, term: t.Term}
		}
		for _, r := range f.sb.deliverLocal(context.Background(), d, ts) {
			rep.Results = append(rep.Results, wireResult{User: msp.Latin1ToUTF8(r.User), Term: msp.Latin1ToUTF8(r.Term),
				Status: r.Status.String(), Reason: errText(r.Err), Code: errCode(r.Err), Acked: r.Acked})
		}
	}
	b, _ := json.Marshal(&rep)
	if m.Reply == "" {
		return
	}
	if err := m.Respond(b); err != nil {
		f.sb.log.Warn("deliver reply failed", "err", err)
	}
}

// forwardJSON sends d to p's node as a JSON request of its own, the format
// of nodes from before the binary frames, and waits until deadline.
func (f *federation) forwardJSON(p *peer, d *Delivery, targets []presence.Entry, deadline time.Time) []Result {
	node := p.node
	fail := func(err error) []Result { return failAll(node, targets, err) }
	body, err := encodeDelivery(d, targets)
	if err != nil {
		return fail(err)
	}
	wait := time.Until(deadline)
	if wait <= 0 {
		return fail(ErrTimeout)
	}
	msg, err := f.nc.Request(p.subject, body, wait)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return fail(ErrNodeDown)
	case errors.Is(err, nats.ErrTimeout):
		return fail(ErrTimeout)
	case err != nil:
		return fail(fmt.Errorf("%w: %w", ErrNodeDown, err))
	}
	var rep wireReply
	if err := json.Unmarshal(msg.Data, &rep); err != nil || rep.Error != "" {
		return fail(fmt.Errorf("bad reply from %s: %v%s", node, err, rep.Error))
	}
	if rep.Node != node {
		// Only node's own user can read this request and so learn where
		// to answer; a reply naming another node is not its answer.
		f.sb.log.Warn("ignoring deliver reply from the wrong node", "asked", node, "replied", rep.Node)
		return fail(fmt.Errorf("bad reply from %s: answered by %q", node, rep.Node))
	}
	byKey := make(map[lineKey]wireResult, len(rep.Results))
	for _, r := range rep.Results {
		u, _ := msp.UTF8ToLatin1(r.User)
		t, _ := msp.UTF8ToLatin1(r.Term)
		byKey[keyFor(u, t)] = r
	}
	out := make([]Result, len(targets))
	for i, e := range targets {
		r, ok := byKey[keyFor(e.User, e.Term)]
		if !ok {
			out[i] = Result{User: e.User, Node: node, Term: e.Term, Status: Failed, Err: fmt.Errorf("no result from %s", node)}
			continue
		}
		out[i] = Result{User: e.User, Node: node, Term: e.Term, Status: parseStatus(r.Status), Err: wireErr(r.Code, r.Reason), Acked: r.Acked}
	}
	return out
}
