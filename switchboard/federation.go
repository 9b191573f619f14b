package switchboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/msprelay/msprelay/identity"
	"github.com/msprelay/msprelay/internal/limitlog"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/principal"
)

// DeliverSubject is the NATS subject of a delivery from node src to the
// terminals of node dst (request-reply). The sender is part of the subject
// so that NATS permissions can hold a node to its own name (each node's
// user may publish only subjects ending in its name, see
// broker.NodePermissions) and the receiver learns the sender from the
// subject rather than from the payload. Node names are validated by
// principal.ValidNode before use, so they never contain '.', '*', '>' or
// spaces.
func DeliverSubject(dst, src string) string { return "msp.node." + dst + ".deliver." + src }

// deliverWildcard is what node subscribes to: deliveries from any node.
func deliverWildcard(node string) string { return "msp.node." + node + ".deliver.*" }

// ErrInvalidDelivery marks a delivery from another node that breaks the MSP
// rules; it is refused, never shown.
var ErrInvalidDelivery = errors.New("switchboard: invalid delivery")

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

// remoteError is a reason another node reported: its text as sent, and
// the sentinel its code names, so that errors.Is works across nodes.
type remoteError struct {
	text string
	err  error // nil for an unknown code
}

func (e *remoteError) Error() string { return e.text }
func (e *remoteError) Unwrap() error { return e.err }

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

// maxTargetsPerRequest bounds what one deliver request may ask of a node.
const maxTargetsPerRequest = 1024

// sourceNode is the sending node named by a deliver subject. The sender
// comes from the subject (which NATS permissions tie to the sender's
// credentials), never from the payload.
func (f *federation) sourceNode(subject string) (string, error) {
	src, ok := strings.CutPrefix(subject, "msp.node."+f.sb.cfg.Node+".deliver.")
	if !ok || principal.ValidNode(src) != nil {
		return "", fmt.Errorf("%w: subject %q names no sending node", ErrInvalidDelivery, subject)
	}
	return src, nil
}

// vet checks a delivery from node src as if it had just arrived over MSP:
// every part must pass msp.ValidateParts, and the origin node becomes src.
// The sender identity the delivery carries is believed only when the node
// vouching for it (Sender.Node) is src, the node the subject binds to the
// sender's credentials, and Config.PeersAuthenticated says NATS holds
// nodes to those subjects. Otherwise it is downgraded to Method None,
// keeping the claim, so that every sink shows it unverified: a node cannot
// speak for another node's users.
func (f *federation) vet(src string, d *Delivery) error {
	if err := msp.ValidateParts(msp.Parts{
		Recipient: d.Recipient, RecipTerm: d.RecipTerm, Text: d.Text, Sender: d.Sender,
		SenderTerm: d.SenderTerm, Cookie: d.Cookie, Signature: d.Signature,
	}); err != nil {
		return fmt.Errorf("%w from %s: %w", ErrInvalidDelivery, src, err)
	}
	d.Origin.Node = src
	id := &d.Origin.Sender
	switch {
	case id.Method == identity.None:
	case id.Node != src:
		// A node speaking for another's users: forged, or a bug; worth
		// an operator's look either way (rate-limited).
		f.refusals.Hit("identity vouched for by another node; shown unverified",
			"peer", src, "vouching_node", id.Node, "method", id.Method.String(), "user", id.User, "claimed", id.Claimed)
		id.Method, id.User = identity.None, ""
	case !f.sb.cfg.PeersAuthenticated:
		// Anyone may publish under any node's name: nothing to believe.
		id.Method, id.User = identity.None, ""
	}
	return nil
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
	// refusals logs refused requests and disbelieved identities, at most
	// once per interval per kind, so that a misconfigured or hostile peer
	// cannot flood the log.
	refusals *limitlog.Log
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

	// order keeps each node's deliveries for one recipient in arrival
	// order on this node (federation_order.go).
	order arrivals
	// replies is the one reply subscription of the requests this node
	// sends (federation_replies.go).
	replies replyMux
}

func newFederation(s *Switchboard, nc *nats.Conn) *federation {
	return &federation{sb: s, nc: nc, timeout: s.cfg.ForwardTimeout, slots: make(chan struct{}, s.cfg.MaxServing),
		staleAfter: staleAfter, peers: map[string]*peer{}, refusals: limitlog.New(s.log, 0)}
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
	f.replies.close()
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
	t := f.order.arrive(f, m.Subject) // here, in arrival order
	go func() {
		defer f.wg.Done()
		defer func() { <-f.slots }()
		f.serve(m, t)
	}()
}

// maxDeliveryBytes bounds the body of one deliver request: up to maxBatch
// messages of under 512 octets each with their identities, plus
// maxTargetsPerRequest targets, fit with room to spare. Larger requests
// are refused before they are decoded.
const maxDeliveryBytes = 256 << 10

// serve handles one deliver request from another node. Only a binary
// frame of this node's federation version is served; anything else (the
// JSON of nodes from before the binary format, another binary version) is
// refused as a whole with a log line naming the peer and its version, and
// answered in a form that peer can read, so that it fails the delivery
// with the reason instead of waiting out its timeout.
func (f *federation) serve(m *nats.Msg, t ticket) {
	if len(m.Data) >= 2 && m.Data[0] == wireMagic && m.Data[1] == wireVersion {
		f.serveBatch(m, t)
		return
	}
	f.order.register(t, nil)
	f.refuseVersion(m)
}

// refuseVersion answers a request in another federation version than
// this node's with an error: in JSON to a JSON body, in a reply frame of
// the request's version to a version 1 frame (whose reply layout is this
// version's), and in this version otherwise.
func (f *federation) refuseVersion(m *nats.Msg) {
	src, err := f.sourceNode(m.Subject)
	if err != nil {
		src = "?"
	}
	// One log kind per form, so that a JSON peer does not hide a version 1
	// peer behind its rate limit.
	kind := "refusing deliver request: the sending node speaks another federation version"
	var peerVersion string
	var body []byte
	switch {
	case len(m.Data) > 0 && m.Data[0] == '{':
		kind = "refusing deliver request: the sending node speaks the JSON federation format"
		peerVersion = "json"
		fault := fmt.Sprintf("node %s speaks federation version %d only; refused a request in the JSON format: upgrade node %s",
			f.sb.cfg.Node, wireVersion, src)
		body, _ = json.Marshal(struct {
			Node  string `json:"node"`
			Error string `json:"error"`
		}{f.sb.cfg.Node, fault})
	case len(m.Data) >= 2 && m.Data[0] == wireMagic:
		peerVersion = strconv.Itoa(int(m.Data[1]))
		v := byte(wireVersion)
		if m.Data[1] == wireVersionV1 {
			v = wireVersionV1
		}
		fault := fmt.Sprintf("node %s speaks federation version %d only; refused a request in version %d: upgrade node %s",
			f.sb.cfg.Node, wireVersion, m.Data[1], src)
		body = appendReplyVersion(nil, v, f.sb.cfg.Node, fault, nil)
	default:
		kind = "refusing deliver request: not a deliver frame"
		peerVersion = "unknown"
		body = appendReply(nil, f.sb.cfg.Node, ErrWireFormat.Error()+": not a deliver frame", nil)
	}
	f.refusals.Hit(kind,
		"peer", src, "peer_version", peerVersion, "version", wireVersion, "subject", m.Subject, "bytes", len(m.Data))
	if m.Reply == "" {
		return
	}
	if err := m.Respond(body); err != nil {
		f.sb.log.Warn("deliver reply failed", "err", err)
	}
}

// serveBatch serves a binary request frame. Its deliveries are served
// as separate requests would be, at the same time (each may wait for a
// client's acknowledgement), and answered together once the last is done.
// A delivery for one terminal is queued for it only after the one before
// it for the same recipient from the same node, in this frame or an
// earlier one, holds its place (federation_order.go).
func (f *federation) serveBatch(m *nats.Msg, t ticket) {
	items, err := f.receiveBatch(m)
	buf := f.bufs.get()
	defer f.bufs.put(buf)
	if err != nil {
		f.order.register(t, nil)
		f.sb.log.Warn("refusing deliver request", "subject", m.Subject, "err", err, "bytes", len(m.Data))
		*buf = appendReply(*buf, f.sb.cfg.Node, err.Error(), nil)
	} else {
		wait, own := f.order.register(t, items)
		results := make([][]Result, len(items))
		serve := func(i int) {
			if p := wait[i]; p != nil {
				<-p.placed
			}
			results[i] = f.serveItem(m.Subject, &items[i], own[i])
			if p := own[i]; p != nil {
				f.order.placed(t, items[i].targets[0].user, p)
			}
		}
		if len(items) == 1 {
			serve(0)
		} else {
			var wg sync.WaitGroup
			for i := range items {
				wg.Go(func() { serve(i) })
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
// '-' instead of queueing it. ord (nil for none) is told once the
// delivery holds its place in its terminal's queue.
func (f *federation) serveItem(subject string, it *wireItem, ord *placement) []Result {
	if it.err != nil {
		f.sb.log.Warn("refusing delivery", "subject", subject, "err", it.err)
		out := make([]Result, len(it.targets))
		for i, t := range it.targets {
			out[i] = Result{User: t.user, Node: f.sb.cfg.Node, Term: t.term, Status: Refused, Err: it.err}
		}
		return out
	}
	// The delivery is served within the time its ingress node gave it
	// (the budget in the frame), never longer than this node's own bound.
	bound := f.timeout
	if it.budget > 0 && it.budget < bound {
		bound = it.budget
	}
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	if ord != nil {
		// The placement is announced as soon as the session queued the
		// delivery; after the acknowledgement the caller marks it again.
		out := make([]Result, len(it.targets))
		f.sb.deliverLocalInto(ctx, &it.d, it.targets, out, ord)
		return out
	}
	return f.sb.deliverLocal(ctx, &it.d, it.targets)
}
