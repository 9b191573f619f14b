package presence

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/msprelay/msprelay/principal"
)

// Gossip wire format. Every message starts with a version byte and a type
// byte; integers are unsigned varints unless noted, strings are a varint
// length and that many octets, times are signed varint Unix nanoseconds
// (0 for the zero time).
//
//	change: origin epoch seq op entry         (op 2 carries only user, term)
//	delta:  origin epoch base to count item*  (item: op entry, as in change)
//	pull:   from                              ("send me your table")
//	suspect: from node                        ("my memberlist suspects node and it has no NATS subscriber")
//	table:  origin epoch seq count entry*     (one node's whole table)
//	state:  ntables table*                    (push-pull: every table held)
//	entry:  user term state naliases alias* since lastActive [ext]
//	ext:    length kind future*                (only when state has bit 0x80)
//
// The ext block was added for terminal kinds without a new wire version: a
// session entry (the zero Kind) is encoded exactly as before, so nodes of
// either version exchange session entries unchanged; a tty entry sets bit
// 0x80 of its state byte and appends the block. A node that predates the
// block rejects messages holding tty entries, so a mixed cluster runs with
// --terminals=off until every node is upgraded. Octets after kind inside
// the block are ignored, so later fields can be appended there.
//
// A delta is a batch of an origin's changes with superseded ones coalesced:
// each item is the latest change of one (user, term) among the changes
// numbered base+1..to, items in the order of those numbers. Applied to the
// origin's table held at any version from base to to-1, it brings every
// item's key to its state at version to (delta.go says why that is enough).
// Deltas were added without a new wire version: a node that predates them
// drops them (unknown type) and catches up by pulls, as after a lost
// broadcast. Suspect notices were added the same way (confirm.go): a node
// that predates them drops them and waits for memberlist's verdict.
//
// Decoding is strict: names must be valid and canonical, counts are bounded
// by hard caps and by the bytes actually left, duplicate keys and trailing
// bytes are errors. A peer can therefore make a receiver allocate at most a
// small multiple of the message it sent, and never make it panic.
const (
	wireVersion byte = 1

	msgChange  byte = 1
	msgPull    byte = 2
	msgTable   byte = 3
	msgState   byte = 4
	msgDelta   byte = 5
	msgSuspect byte = 6
)

// Caps on decoded counts; the byte budget usually binds first.
const (
	maxWireTables  = 1 << 14 // nodes in one push-pull state
	maxWireEntries = 1 << 20 // entries in one node's table
	minEntryBytes  = 8       // user, term, state, naliases, since, lastActive
	minTableBytes  = 5       // origin, epoch, seq, count
	minAliasBytes  = 2
	maxExtBytes    = 32  // an entry's ext block
	maxDeltaItems  = 512 // changes in one delta
	minItemBytes   = 3   // op, user, term
)

// stateExt in an entry's state byte says that an ext block follows.
const stateExt byte = 0x80

// MaxAliases bounds the aliases one entry may carry, so that every entry a
// node accepts can also be gossiped to and accepted by its peers.
const MaxAliases = 32

// ErrMalformed is the error for a gossip message that fails to decode.
var ErrMalformed = errors.New("presence: malformed gossip message")

// version orders the states of one node's table: a later boot (epoch) wins,
// then the higher change counter.
type version struct{ epoch, seq uint64 }

func (v version) less(o version) bool {
	return v.epoch < o.epoch || v.epoch == o.epoch && v.seq < o.seq
}

func maxVersion(a, b version) version {
	if a.less(b) {
		return b
	}
	return a
}

// wireTable is one node's table as it travels.
type wireTable struct {
	origin  string
	ver     version
	entries []principal.Entry
}

// wireMsg is any decoded gossip message; typ says which fields are set.
type wireMsg struct {
	typ    byte
	origin string      // change
	ver    version     // change
	change change      // change
	base   uint64      // delta: the version it applies to (ver.seq is its to)
	items  []change    // delta
	from   string      // pull and suspect: the sender
	node   string      // suspect: the member suspected
	tables []wireTable // table (exactly one) and state
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return binary.AppendVarint(b, 0)
	}
	return binary.AppendVarint(b, t.UnixNano())
}

func appendEntry(b []byte, e *principal.Entry) []byte {
	b = appendString(b, e.User)
	b = appendString(b, e.Term)
	st := byte(e.State)
	if e.Kind != principal.KindSession {
		st |= stateExt
	}
	b = append(b, st)
	b = binary.AppendUvarint(b, uint64(len(e.Aliases)))
	for _, a := range e.Aliases {
		b = appendString(b, a)
	}
	b = appendTime(b, e.Since)
	b = appendTime(b, e.LastActive)
	if e.Kind != principal.KindSession {
		b = binary.AppendUvarint(b, 1)
		b = append(b, byte(e.Kind))
	}
	return b
}

func appendTable(b []byte, t *wireTable) []byte {
	b = appendString(b, t.origin)
	b = binary.AppendUvarint(b, t.ver.epoch)
	b = binary.AppendUvarint(b, t.ver.seq)
	b = binary.AppendUvarint(b, uint64(len(t.entries)))
	for i := range t.entries {
		b = appendEntry(b, &t.entries[i])
	}
	return b
}

// encodeChange encodes one change of origin's table at version v.
func encodeChange(origin string, v version, c change) []byte {
	b := []byte{wireVersion, msgChange}
	b = appendString(b, origin)
	b = binary.AppendUvarint(b, v.epoch)
	b = binary.AppendUvarint(b, v.seq)
	return appendChange(b, &c)
}

// appendChange appends a change's op and its entry (only user and term for
// a remove).
func appendChange(b []byte, c *change) []byte {
	b = append(b, byte(c.Op))
	if c.Op == opRemove {
		b = appendString(b, c.Entry.User)
		return appendString(b, c.Entry.Term)
	}
	return appendEntry(b, &c.Entry)
}

// encodeDelta encodes the coalesced changes of origin's table from version
// (epoch, base) to (epoch, to); items is the appended items (appendChange),
// count of them.
func encodeDelta(origin string, epoch, base, to uint64, count int, items []byte) []byte {
	b := make([]byte, 0, 2+len(origin)+4*binary.MaxVarintLen64+len(items)+sigLen)
	b = append(b, wireVersion, msgDelta)
	b = appendString(b, origin)
	b = binary.AppendUvarint(b, epoch)
	b = binary.AppendUvarint(b, base)
	b = binary.AppendUvarint(b, to)
	b = binary.AppendUvarint(b, uint64(count))
	return append(b, items...)
}

// encodePull asks the receiver for its own table, to be sent to node from.
func encodePull(from string) []byte {
	return appendString([]byte{wireVersion, msgPull}, from)
}

// encodeSuspect tells a member that from's memberlist suspects node and
// from found no NATS subscriber for it (confirm.go).
func encodeSuspect(from, node string) []byte {
	return appendString(appendString([]byte{wireVersion, msgSuspect}, from), node)
}

// encodeTable encodes one node's whole table.
func encodeTable(t wireTable) []byte {
	return appendTable([]byte{wireVersion, msgTable}, &t)
}

// encodeState encodes every table a node holds, for push-pull.
func encodeState(ts []wireTable) []byte {
	b := binary.AppendUvarint([]byte{wireVersion, msgState}, uint64(len(ts)))
	for i := range ts {
		b = appendTable(b, &ts[i])
	}
	return b
}

// encodeMessage is the inverse of decodeMessage.
func encodeMessage(m wireMsg) []byte {
	switch m.typ {
	case msgChange:
		return encodeChange(m.origin, m.ver, m.change)
	case msgPull:
		return encodePull(m.from)
	case msgSuspect:
		return encodeSuspect(m.from, m.node)
	case msgTable:
		return encodeTable(m.tables[0])
	case msgDelta:
		var items []byte
		for i := range m.items {
			items = appendChange(items, &m.items[i])
		}
		return encodeDelta(m.origin, m.ver.epoch, m.base, m.ver.seq, len(m.items), items)
	default:
		return encodeState(m.tables)
	}
}

// reader decodes from b, remembering the first error; after an error every
// read returns a zero value so callers check err once at the end of a step.
type reader struct {
	b   []byte
	err error
}

func (r *reader) failf(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.failf("truncated")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.failf("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.failf("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) str(what string) string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > principal.MaxNameLen || n > uint64(len(r.b)) {
		r.failf("%s length %d", what, n)
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// count reads an element count and checks it against a hard cap and against
// what the remaining bytes could hold at minSize bytes per element.
func (r *reader) count(what string, limit, minSize int) int {
	n := r.uvarint()
	if r.err != nil {
		return 0
	}
	if n > uint64(limit) || n > uint64(len(r.b)/minSize) {
		r.failf("%s count %d", what, n)
		return 0
	}
	return int(n)
}

func (r *reader) time() time.Time {
	ns := r.varint()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

func (r *reader) user(what string) string {
	u := r.str(what)
	if r.err != nil {
		return ""
	}
	if err := principal.ValidUser(u); err != nil {
		r.failf("%s: %v", what, err)
	} else if principal.CanonicalUser(u) != u {
		r.failf("%s %q not canonical", what, u)
	}
	return u
}

func (r *reader) term() string {
	t := r.str("term")
	if r.err == nil {
		if err := principal.ValidTerm(t); err != nil {
			r.failf("%v", err)
		}
	}
	return t
}

func (r *reader) node(what string) string {
	n := r.str(what)
	if r.err == nil {
		if err := principal.ValidNode(n); err != nil {
			r.failf("%s: %v", what, err)
		}
	}
	return n
}

func (r *reader) version() version {
	return version{epoch: r.uvarint(), seq: r.uvarint()}
}

// entry decodes an entry held by node.
func (r *reader) entry(node string) principal.Entry {
	e := principal.Entry{User: r.user("user"), Node: node, Term: r.term()}
	st := r.byte()
	ext := st&stateExt != 0
	e.State = principal.State(st &^ stateExt)
	if r.err == nil && (e.State == principal.Offline || e.State > principal.Hidden) {
		r.failf("state %d", e.State)
	}
	if n := r.count("alias", MaxAliases, minAliasBytes); n > 0 {
		e.Aliases = make([]string, 0, n)
		for range n {
			e.Aliases = append(e.Aliases, r.user("alias"))
		}
	}
	e.Since = r.time()
	e.LastActive = r.time()
	if ext {
		e.Kind = r.ext()
	}
	return e
}

// ext reads an entry's ext block and returns its kind. Only a kind other
// than session may be sent in one, so that each entry has one encoding.
func (r *reader) ext() principal.Kind {
	n := r.uvarint()
	if r.err != nil {
		return principal.KindSession
	}
	if n < 1 || n > maxExtBytes || n > uint64(len(r.b)) {
		r.failf("ext length %d", n)
		return principal.KindSession
	}
	k := principal.Kind(r.b[0])
	r.b = r.b[n:]
	if k == principal.KindSession || k > principal.KindTTY {
		r.failf("ext kind %d", k)
	}
	return k
}

// change decodes a change's op and entry, of a table held by node.
func (r *reader) change(node string) change {
	c := change{Op: op(r.byte())}
	switch {
	case r.err != nil:
	case c.Op == opUpsert:
		c.Entry = r.entry(node)
	case c.Op == opRemove:
		c.Entry = principal.Entry{User: r.user("user"), Node: node, Term: r.term()}
	default:
		r.failf("op %d", c.Op)
	}
	return c
}

func (r *reader) table() wireTable {
	t := wireTable{origin: r.node("origin"), ver: r.version()}
	n := r.count("entry", maxWireEntries, minEntryBytes)
	if n == 0 {
		return t
	}
	t.entries = make([]principal.Entry, 0, n)
	seen := make(map[entryKey]struct{}, n)
	for range n {
		e := r.entry(t.origin)
		if r.err != nil {
			return t
		}
		k := keyOf(e.User, e.Term)
		if _, dup := seen[k]; dup {
			r.failf("duplicate entry %s/%s", e.User, e.Term)
			return t
		}
		seen[k] = struct{}{}
		t.entries = append(t.entries, e)
	}
	return t
}

// decodeMessage decodes and validates one gossip message. The result shares
// no memory with b.
func decodeMessage(b []byte) (wireMsg, error) {
	r := &reader{b: b}
	if v := r.byte(); r.err == nil && v != wireVersion {
		r.failf("version %d", v)
	}
	m := wireMsg{typ: r.byte()}
	if r.err != nil {
		return wireMsg{}, r.err
	}
	switch m.typ {
	case msgChange:
		m.origin = r.node("origin")
		m.ver = r.version()
		if r.err == nil && m.ver.seq == 0 {
			r.failf("change number 0") // a boot's first change is 1
		}
		m.change = r.change(m.origin)
	case msgDelta:
		m.origin = r.node("origin")
		epoch, base, to := r.uvarint(), r.uvarint(), r.uvarint()
		m.ver, m.base = version{epoch, to}, base
		if r.err == nil && to <= base {
			r.failf("delta from %d to %d", base, to)
		}
		n := r.count("item", maxDeltaItems, minItemBytes)
		if r.err == nil && n == 0 {
			r.failf("empty delta")
		}
		m.items = make([]change, 0, n)
		seen := make(map[entryKey]struct{}, n)
		for i := 0; i < n && r.err == nil; i++ {
			c := r.change(m.origin)
			k := keyOf(c.Entry.User, c.Entry.Term)
			if _, dup := seen[k]; dup && r.err == nil {
				r.failf("delta changes %s/%s twice", c.Entry.User, c.Entry.Term) // coalesced: one item per key
			}
			seen[k] = struct{}{}
			m.items = append(m.items, c)
		}
	case msgPull:
		m.from = r.node("from")
	case msgSuspect:
		m.from = r.node("from")
		m.node = r.node("suspect")
	case msgTable:
		m.tables = []wireTable{r.table()}
	case msgState:
		n := r.count("table", maxWireTables, minTableBytes)
		m.tables = make([]wireTable, 0, n)
		for i := 0; i < n && r.err == nil; i++ {
			m.tables = append(m.tables, r.table())
		}
	default:
		r.failf("message type %d", m.typ)
	}
	if r.err == nil && len(r.b) > 0 {
		r.failf("%d trailing bytes", len(r.b))
	}
	if r.err != nil {
		return wireMsg{}, r.err
	}
	return m, nil
}

// digest summarises a node's own table in its memberlist metadata, so that
// peers notice missed changes (memberlist relays metadata reliably, unlike
// user broadcasts). Fixed 21 bytes: version, epoch, seq (big-endian uint64),
// entry count (big-endian uint32); far below memberlist's 512-byte limit.
type digest struct {
	ver   version
	count uint32
}

const digestLen = 1 + 8 + 8 + 4

func encodeDigest(d digest) []byte {
	b := make([]byte, 0, digestLen)
	b = append(b, wireVersion)
	b = binary.BigEndian.AppendUint64(b, d.ver.epoch)
	b = binary.BigEndian.AppendUint64(b, d.ver.seq)
	return binary.BigEndian.AppendUint32(b, d.count)
}

func decodeDigest(b []byte) (digest, error) {
	if len(b) != digestLen || b[0] != wireVersion {
		return digest{}, fmt.Errorf("%w: node metadata of %d bytes", ErrMalformed, len(b))
	}
	return digest{
		ver:   version{binary.BigEndian.Uint64(b[1:]), binary.BigEndian.Uint64(b[9:])},
		count: binary.BigEndian.Uint32(b[17:]),
	}, nil
}
