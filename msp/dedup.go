package msp

import (
	"container/list"
	"hash/maphash"
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
	src    string // source address and port
	cookie string // COOKIE folded to small letters ('B')
	sum    uint64 // 'A': hash of the whole datagram; 'B': messageSum
}

// messageSum hashes the parts of a revision 'B' message other than the
// cookie and the signature: recipient and terminal (folded, as the RFC
// compares them), sender and terminal (folded) and the text. A true
// retransmission carries the same octets and so the same sum.
func messageSum(seed maphash.Seed, m *Message) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	for _, p := range [...]string{Fold(m.Recipient), Fold(m.RecipTerm), Fold(m.Sender), Fold(m.SenderTerm), m.Text} {
		h.WriteString(p)
		h.WriteByte(0)
	}
	return h.Sum64()
}

// dedupEntry is one remembered message.
type dedupEntry struct {
	key     dedupKey
	pending bool          // the handler is still running
	reply   []byte        // the reply sent, nil if none
	expires time.Time     // set when the handler finished
	elem    *list.Element // in dedupCache.order once finished
}

// dedupCache remembers recently handled UDP messages so a retransmission is
// answered again but not handled twice. Its size is bounded: at most max
// finished entries (the oldest are dropped first) plus the pending ones, which
// MaxInflight bounds.
type dedupCache struct {
	window time.Duration
	max    int

	mu      sync.Mutex // guards entries and order
	entries map[dedupKey]*dedupEntry
	order   list.List // finished entries, soonest expiry first
}

func newDedupCache(window time.Duration, max int) *dedupCache {
	return &dedupCache{window: window, max: max, entries: make(map[dedupKey]*dedupEntry)}
}

// begin records k as pending and returns fresh=true, or, if k is known,
// returns fresh=false and the reply to send again (nil when the first copy
// has not been answered, or never will be).
func (c *dedupCache) begin(k dedupKey, now time.Time) (fresh bool, replay []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire(now)
	if e, ok := c.entries[k]; ok {
		return false, e.reply
	}
	c.entries[k] = &dedupEntry{key: k, pending: true}
	return true, nil
}

// answered records the reply sent for k. It is called before the reply is
// written, so a retransmission prompted by a lost reply always finds it.
func (c *dedupCache) answered(k dedupKey, reply []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[k]; ok {
		e.reply = reply
	}
}

// finish marks k as handled and starts its window.
func (c *dedupCache) finish(k dedupKey, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok || !e.pending {
		return
	}
	e.pending, e.expires = false, now.Add(c.window)
	e.elem = c.order.PushBack(e)
	for c.order.Len() > c.max {
		c.remove(c.order.Front().Value.(*dedupEntry))
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
	for f := c.order.Front(); f != nil; f = c.order.Front() {
		e := f.Value.(*dedupEntry)
		if e.expires.After(now) {
			return
		}
		c.remove(e)
	}
}

func (c *dedupCache) remove(e *dedupEntry) {
	c.order.Remove(e.elem)
	delete(c.entries, e.key)
}

// counts reports how many remembered messages are still being handled and
// how many are finished.
func (c *dedupCache) counts() (pending, finished int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries) - c.order.Len(), c.order.Len()
}

// dedupCounts is [dedupCache.counts] for s, zero when the filter is off.
func (s *Server) dedupCounts() (pending, finished int) {
	s.init()
	if s.dedup == nil {
		return 0, 0
	}
	return s.dedup.counts()
}
