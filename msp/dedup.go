package msp

import (
	"bytes"
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// dedupKey identifies a UDP message. RFC 1312 has the sender's address, port
// and COOKIE identify a message, and a retransmission is answered again but
// handled once. The cookie alone does not tell two different messages apart
// (a client may give the same cookie to a message for alice and one for
// bob), so a revision 'B' key also holds a hash of the parts that say who
// sends what to whom; revision 'A' has no cookie, and its datagram's hash
// stands in. The hash is hash/maphash with the server's seed: the key never
// leaves this process, and a seed an outsider cannot know keeps collisions
// from being aimed.
type dedupKey struct {
	src    netip.AddrPort // source address and port, for UDP addresses
	other  string         // the source's String(), for any other net.Addr
	cookie string         // COOKIE folded to small letters ('B')
	sum    uint64         // 'A': hash of the whole datagram; 'B': messageSum
}

// messageSum hashes the parts of a revision 'B' message other than the
// cookie and the signature: recipient and terminal (folded, as the RFC
// compares them), sender and terminal (folded) and the text. A true
// retransmission carries the same octets and so the same sum.
func messageSum(seed maphash.Seed, m *Message) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	for _, p := range [...]string{m.Recipient, m.RecipTerm, m.Sender, m.SenderTerm} {
		writeFolded(&h, p)
		h.WriteByte(0)
	}
	h.WriteString(m.Text)
	h.WriteByte(0)
	return h.Sum64()
}

// writeFolded hashes [Fold](s) without building the folded string.
func writeFolded(h *maphash.Hash, s string) {
	for i := 0; i < len(s); i++ {
		if c := foldByte(s[i]); c != s[i] {
			h.WriteString(s[:i])
			for ; i < len(s); i++ {
				h.WriteByte(foldByte(s[i]))
			}
			return
		}
	}
	h.WriteString(s)
}

// dedupEntry is one remembered message.
type dedupEntry struct {
	pending bool   // the handler is still running
	reply   []byte // the reply sent, nil if none; never changed once set
}

// dedupExpiry is a finished entry's place in the expiry queue.
type dedupExpiry struct {
	key     dedupKey
	expires time.Time
}

// dedupCache remembers recently handled UDP messages so a retransmission is
// answered again but not handled twice. Its size is bounded: at most max
// finished entries (the oldest are dropped first) plus the pending ones, which
// MaxInflight bounds.
//
// Entries are stored by value and the finished ones queued in a ring, so
// remembering a message costs no allocation of its own once the map and the
// ring have grown to their working size. Every finished entry has the same
// window, so the ring is in expiry order and only its head ever leaves.
type dedupCache struct {
	window time.Duration
	max    int

	mu      sync.Mutex // guards entries and the ring
	entries map[dedupKey]dedupEntry
	replies map[string][]byte // distinct stored replies, at most maxSharedReplies; never modified
	ring    []dedupExpiry     // finished entries, soonest expiry at head
	head, n int               // the ring's first element and its length
}

func newDedupCache(window time.Duration, max int) *dedupCache {
	return &dedupCache{window: window, max: max, entries: make(map[dedupKey]dedupEntry), replies: make(map[string][]byte)}
}

// begin records k as pending and returns fresh=true, or, if k is known,
// returns fresh=false and the reply to send again (nil when the first copy
// has not been answered, or never will be). The reply must not be modified.
func (c *dedupCache) begin(k dedupKey, now time.Time) (fresh bool, replay []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire(now)
	if e, ok := c.entries[k]; ok {
		return false, e.reply
	}
	c.entries[k] = dedupEntry{pending: true}
	return true, nil
}

// answered records the reply sent for k and returns the cache's copy of
// it, to send: reply itself (formatted in a lent buffer) is not kept. It
// is called before the reply is written, so a retransmission prompted by
// a lost reply always finds it. Equal replies share one copy (a relay
// answers most messages with one of a few texts), so a reply costs an
// allocation only when it is new.
func (c *dedupCache) answered(k dedupKey, reply []byte) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	kept, ok := c.replies[string(reply)]
	if !ok {
		if len(c.replies) >= maxSharedReplies {
			clear(c.replies) // entries keep their copies
		}
		kept = bytes.Clone(reply)
		c.replies[string(kept)] = kept
	}
	if e, ok := c.entries[k]; ok {
		e.reply = kept
		c.entries[k] = e
	}
	return kept
}

// maxSharedReplies bounds the table of distinct replies answered shares.
const maxSharedReplies = 256

// finish marks k as handled and starts its window.
func (c *dedupCache) finish(k dedupKey, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok || !e.pending {
		return
	}
	e.pending = false
	c.entries[k] = e
	c.push(dedupExpiry{key: k, expires: now.Add(c.window)})
	for c.n > c.max {
		c.pop()
	}
}

// abort forgets a pending k whose handler never ran.
func (c *dedupCache) abort(k dedupKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[k]; ok && e.pending {
		delete(c.entries, k)
	}
}

// expire drops entries whose window has passed.
func (c *dedupCache) expire(now time.Time) {
	for c.n > 0 && !c.ring[c.head].expires.After(now) {
		c.pop()
	}
}

// push queues a finished entry, growing the ring when full.
func (c *dedupCache) push(x dedupExpiry) {
	if c.n == len(c.ring) {
		grown := make([]dedupExpiry, max(16, 2*len(c.ring)))
		k := copy(grown, c.ring[c.head:])
		copy(grown[k:], c.ring[:c.head])
		c.ring, c.head = grown, 0
	}
	c.ring[(c.head+c.n)%len(c.ring)] = x
	c.n++
}

// pop forgets the finished entry that expires soonest.
func (c *dedupCache) pop() {
	x := &c.ring[c.head]
	delete(c.entries, x.key)
	*x = dedupExpiry{} // let the key's strings go
	c.head = (c.head + 1) % len(c.ring)
	c.n--
}

// counts reports how many remembered messages are still being handled and
// how many are finished.
func (c *dedupCache) counts() (pending, finished int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries) - c.n, c.n
}

// dedupCounts is [dedupCache.counts] for s, zero when the filter is off.
func (s *Server) dedupCounts() (pending, finished int) {
	s.init()
	if s.dedup == nil {
		return 0, 0
	}
	return s.dedup.counts()
}
