package switchboard

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/msprelay/msprelay/identity"
	"github.com/msprelay/msprelay/principal"
)

// maxBudgetMillis bounds a received budget (a day): anything beyond is a
// broken or hostile frame, and the receiver caps what it accepts at its
// own bound anyway.
const maxBudgetMillis = 24 * 60 * 60 * 1000

// The binary deliver frames (docs/FEDERATION.md, "Wire format"). A frame is
//
//	magic(0xD5) version(1) kind body
//
// where kind is kindRequest (body: a batch of 1..maxBatch deliveries) or
// kindReply (body: the answering node, an error text, and per delivery its
// results, one per target in the request's order). Strings are a uvarint
// length and that many raw octets (MSP text is ISO 8859-1; nothing is
// transcoded). The first octet tells a frame from the JSON body of nodes
// from before the binary format, which always starts with '{'; such a
// body, or a frame of another version, is refused (federation.go,
// refuseVersion).
//
// Version 2 added the sender identity (identity.Identity: user, claim,
// method, vouching node, source), the MSP revision and each delivery's
// remaining time budget. A reply's layout is the same in versions 1 and 2,
// which is what lets a node tell a version 1 peer, in a reply it can read,
// why its request was refused.
const (
	wireMagic   = 0xD5
	wireVersion = 2
	// wireVersionV1 is the first binary version: no identity, no budget.
	wireVersionV1 = 1

	kindRequest = 'Q'
	kindReply   = 'R'
)

// maxBatch bounds the deliveries of one request frame; the targets of all
// of them together are bounded by maxTargetsPerRequest.
const maxBatch = 64

// Item flags. Bit 0 was "verified" in version 1; the identity's method
// says it now.
const (
	flagTime   = 1 << 1 // a time follows (the zero time is not sent)
	flagBudget = 1 << 2 // a time budget follows, in milliseconds (see appendItem)
)

// Result flags.
const flagAcked = 1 << 0

// Smallest encodings, used to refuse a count the remaining octets cannot
// hold before anything is allocated for it.
const (
	minItemLen   = 16 + 1 + 1 + 1 // sixteen empty strings, method, flags, target count
	minTargetLen = 2              // two empty strings
	minResultLen = 4              // status, flags, code, empty reason
)

// ErrWireFormat marks a binary frame that cannot be decoded.
var ErrWireFormat = errors.New("switchboard: bad deliver frame")

// ErrWireVersion marks a deliver request or reply in another federation
// version than this node's (wireVersion), the JSON of nodes from before
// the binary format included: it is refused, never guessed at. Every node
// of a cluster must run the same federation version (docs/FEDERATION.md).
var ErrWireVersion = errors.New("federation version mismatch")

// wireItem is one delivery of a decoded request frame. err is set when the
// delivery decoded but must be refused (set by the receiver after its
// checks); the targets are kept so that each gets a Refused result.
type wireItem struct {
	d       Delivery
	targets []target
	// budget is how long the sender gives the receiver for it; 0 when
	// it sent none.
	budget time.Duration
	err    error
}

// bufPool holds encode buffers, so that a request or a reply reuses the
// memory of an earlier one. nats.go copies a published payload before
// Publish or Request returns, so a buffer goes back right after.
type bufPool struct{ p sync.Pool }

// maxPooledBuf keeps one huge frame from pinning its buffer in the pool.
const maxPooledBuf = 64 << 10

func (b *bufPool) get() *[]byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		*v = (*v)[:0]
		return v
	}
	s := make([]byte, 0, 1024)
	return &s
}

func (b *bufPool) put(v *[]byte) {
	if cap(*v) <= maxPooledBuf {
		b.p.Put(v)
	}
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendRequest appends a request frame carrying calls' deliveries; now
// is when it is sent, from which each call's remaining budget is taken.
func appendRequest(b []byte, calls []*call, now time.Time) []byte {
	b = append(b, wireMagic, wireVersion, kindRequest)
	b = binary.AppendUvarint(b, uint64(len(calls)))
	for _, c := range calls {
		var budget time.Duration
		if !c.deadline.IsZero() {
			budget = max(c.deadline.Sub(now), time.Millisecond)
		}
		b = appendItem(b, c.d, c.targets, budget)
	}
	return b
}

// appendItem appends one delivery. budget is how long the receiver may
// take over it (0: not sent, the receiver's own bound applies). It travels
// as the time remaining, in milliseconds, rather than as a deadline: the
// nodes' clocks need not agree, and the time the request spends on the
// way only makes the receiver's deadline later than the ingress's by that
// much, which the ingress's own timeout covers.
func appendItem(b []byte, d *Delivery, targets []principal.Entry, budget time.Duration) []byte {
	id := &d.Origin.Sender
	for _, s := range [...]string{d.ID, d.Recipient, d.RecipTerm, d.Sender, d.SenderTerm, d.Text, d.Cookie,
		d.Signature, d.Origin.Node, d.Origin.Addr, d.Origin.Transport, d.Origin.Revision,
		id.User, id.Claimed, id.Node, id.Source} {
		b = appendStr(b, s)
	}
	b = append(b, byte(id.Method))
	var flags byte
	if !d.Time.IsZero() {
		flags |= flagTime
	}
	if budget > 0 {
		flags |= flagBudget
	}
	b = append(b, flags)
	if !d.Time.IsZero() {
		b = binary.AppendVarint(b, d.Time.Unix())
		b = binary.AppendUvarint(b, uint64(d.Time.Nanosecond()))
	}
	if budget > 0 {
		b = binary.AppendUvarint(b, uint64(budget.Milliseconds()))
	}
	b = binary.AppendUvarint(b, uint64(len(targets)))
	for _, t := range targets {
		b = appendStr(b, t.User)
		b = appendStr(b, t.Term)
	}
	return b
}

// appendReply appends a reply frame: node answers, fault is an error of
// the whole request (then results is empty), results holds per delivery
// its results in target order.
func appendReply(b []byte, node, fault string, results [][]Result) []byte {
	return appendReplyVersion(b, wireVersion, node, fault, results)
}

// appendReplyVersion is appendReply with the frame's version given: a
// refusal of a version 1 request is answered in version 1, which that
// peer can read (the layouts are the same).
func appendReplyVersion(b []byte, version byte, node, fault string, results [][]Result) []byte {
	b = append(b, wireMagic, version, kindReply)
	b = appendStr(b, node)
	b = appendStr(b, fault)
	b = binary.AppendUvarint(b, uint64(len(results)))
	for _, rs := range results {
		b = binary.AppendUvarint(b, uint64(len(rs)))
		for _, r := range rs {
			var flags byte
			if r.Acked {
				flags |= flagAcked
			}
			b = append(b, byte(r.Status), flags)
			b = binary.AppendUvarint(b, errCodeNum(r.Err))
			b = appendStr(b, errText(r.Err))
		}
	}
	return b
}

// wireReader reads a frame; the first error sticks and later reads return
// zero values, so a decoder checks r.err once per step.
type wireReader struct {
	b   []byte
	err error
}

func (r *wireReader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: "+format, append([]any{ErrWireFormat}, args...)...)
	}
}

func (r *wireReader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.fail("truncated")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *wireReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("bad number")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *wireReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail("bad number")
		return 0
	}
	r.b = r.b[n:]
	return v
}

// bytes returns the next length-prefixed field without copying it; the
// length can never reach past the frame.
func (r *wireReader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.fail("field of %d octets past the end", n)
		return nil
	}
	s := r.b[:n]
	r.b = r.b[n:]
	return s
}

func (r *wireReader) str() string {
	b := r.bytes()
	if len(b) == 0 {
		return ""
	}
	return string(b)
}

// strs reads len(dst) strings of frame, which r reads, into one
// allocation shared by them.
func (r *wireReader) strs(frame []byte, dst ...*string) {
	var ends [16]int
	start := len(frame) - len(r.b)
	for i := range dst {
		r.bytes()
		ends[i] = len(frame) - len(r.b)
	}
	if r.err != nil {
		return
	}
	all := string(frame[start:ends[len(dst)-1]])
	at := 0
	for i, p := range dst {
		// Each field is its length prefix and its octets: skip the prefix.
		_, n := binary.Uvarint(frame[start+at:])
		*p = all[at+n : ends[i]-start]
		at = ends[i] - start
	}
}

// count reads a count of at most limit elements, each at least minLen
// octets, so that what is allocated for them is bounded by the frame.
func (r *wireReader) count(what string, lo, limit uint64, minLen int) int {
	n := r.uvarint()
	if r.err != nil {
		return 0
	}
	if n < lo || n > limit || n > uint64(len(r.b)/minLen) {
		r.fail("%d %s", n, what)
		return 0
	}
	return int(n)
}

// header checks magic, version and kind.
func (r *wireReader) header(kind byte) {
	if m := r.byte(); r.err == nil && m != wireMagic {
		r.fail("not a binary frame")
	}
	if v := r.byte(); r.err == nil && v != wireVersion {
		r.err = fmt.Errorf("%w: %w: version %d, this node speaks %d", ErrWireFormat, ErrWireVersion, v, wireVersion)
	}
	if k := r.byte(); r.err == nil && k != kind {
		r.fail("frame kind %q, want %q", k, kind)
	}
}

// decodeRequest decodes a request frame. It allocates the field strings,
// one slice of items and one of targets per item, all bounded by len(data).
func decodeRequest(data []byte) ([]wireItem, error) {
	r := wireReader{b: data}
	r.header(kindRequest)
	n := r.count("deliveries", 1, maxBatch, minItemLen)
	if r.err != nil {
		return nil, r.err
	}
	items := make([]wireItem, n)
	total := 0
	for i := range items {
		d := &items[i].d
		// The id lives on in the dedup window, so it gets a string of its
		// own; the other parts share one string, which lives as long as
		// the delivery does.
		d.ID = r.str()
		id := &d.Origin.Sender
		r.strs(data, &d.Recipient, &d.RecipTerm, &d.Sender, &d.SenderTerm, &d.Text,
			&d.Cookie, &d.Signature, &d.Origin.Node, &d.Origin.Addr, &d.Origin.Transport, &d.Origin.Revision,
			&id.User, &id.Claimed, &id.Node, &id.Source)
		// An unknown method number is None: nothing this node can
		// believe.
		if m := identity.Method(r.byte()); m <= identity.Trust {
			id.Method = m
		}
		flags := r.byte()
		if flags&flagTime != 0 {
			sec, nsec := r.varint(), r.uvarint()
			if r.err == nil && nsec >= uint64(time.Second) {
				r.fail("%d nanoseconds", nsec)
			}
			d.Time = time.Unix(sec, int64(nsec)).UTC()
			if y := d.Time.Year(); r.err == nil && (y < 0 || y > 9999) {
				// The mailbox stores deliveries as JSON, which has no
				// other years.
				r.fail("time in the year %d", y)
			}
		}
		if flags&flagBudget != 0 {
			ms := r.uvarint()
			if r.err == nil && ms > maxBudgetMillis {
				r.fail("a budget of %d ms", ms)
			}
			items[i].budget = time.Duration(ms) * time.Millisecond
		}
		nt := r.count("targets", 1, maxTargetsPerRequest, minTargetLen)
		if total += nt; total > maxTargetsPerRequest {
			r.fail("%d targets in one request", total)
		}
		if r.err != nil {
			return nil, r.err
		}
		ts := make([]target, nt)
		for j := range ts {
			r.strs(data, &ts[j].user, &ts[j].term)
		}
		items[i].targets = ts
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d octets after the last delivery", len(r.b))
	}
	if r.err != nil {
		return nil, r.err
	}
	return items, nil
}

// replyHeader reads a reply frame up to its per-delivery results: the
// node that answered, its error text and the number of deliveries.
func replyHeader(r *wireReader) (node, errText string, n int) {
	r.header(kindReply)
	nodeB, errB := r.bytes(), r.bytes()
	n = r.count("results", 0, maxBatch, 1)
	if r.err != nil {
		return "", "", 0
	}
	return string(nodeB), string(errB), n
}

// decodeResults reads one delivery's results into out (one per target,
// in the request's order). node fills Result.Node; User and Term come from
// the request's targets, so nothing else is allocated but reason texts.
func decodeResults(r *wireReader, node string, targets []principal.Entry, out []Result) {
	if n := r.count("results", 0, maxTargetsPerRequest, minResultLen); r.err == nil && n != len(targets) {
		r.fail("%d results for %d targets", n, len(targets))
	}
	for i, e := range targets {
		st, flags, code, reason := Status(r.byte()), r.byte(), r.uvarint(), r.bytes()
		if r.err != nil {
			return
		}
		if st < Delivered || st > Queued {
			st = Failed // a status this node does not know
		}
		out[i] = Result{User: e.User, Node: node, Term: e.Term, Status: st, Acked: flags&flagAcked != 0,
			Err: wireErrNum(code, reason)}
	}
}
