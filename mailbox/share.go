package mailbox

import (
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"sync"
	"time"

	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/switchboard"
)

// SenderToken names the sender of d for her share of a mailbox
// (Config.MaxPerSender), as one NATS subject token: 16 hex digits of
// SHA-256 (stable across nodes, which all count the same subjects).
//
// A sender is the node the message entered the cluster at plus who sent
// it there:
//   - a sender whose name the ingress node proved (a session's signed-in
//     user, a signed MSP message, a local MSP sender the kernel named) is
//     that name, Origin.Sender.User, even when she claimed another SENDER:
//     one local account is one share however many names she writes;
//   - anyone else is her source address, not the SENDER part, which anyone
//     can write. IPv6 addresses count by their /64, which one host usually
//     holds whole, and every loopback address (127.0.0.0/8, ::1) is one
//     source: any local user may bind any of 16 million of them, so a
//     local sender the kernel could not name shares one share with every
//     other such sender rather than taking a share per address.
func SenderToken(d *switchboard.Delivery) string {
	who := "addr\x00" + sourcePrefix(d.Origin.Addr)
	if id := d.Origin.Sender; id.Method.Proves() && id.User != "" {
		who = "user\x00" + msp.Fold(id.User)
	}
	sum := sha256.Sum256([]byte(d.Origin.Node + "\x00" + who))
	return hex.EncodeToString(sum[:8])
}

// sourcePrefix is the address part of an origin address ("192.0.2.1:9" or
// "[2001:db8::1]:9"), an IPv6 address cut to its /64, and "loopback" for
// any loopback address; what does not parse (a session's "session") stays
// as it is.
func sourcePrefix(addr string) string {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return addr
	}
	a := ap.Addr().Unmap()
	if a.IsLoopback() {
		return "loopback"
	}
	if a.Is6() {
		if p, err := a.Prefix(64); err == nil {
			return p.String()
		}
	}
	return a.String()
}

// maxStoredIDs bounds the ids a node remembers having stored.
const maxStoredIDs = 65536

// storedIDs remembers the mailbox ids (msgID) this node stored within the
// stream's duplicate window, at most max of them (the oldest go first), so
// that Put can tell a repeat before it counts. mu guards at and order.
type storedIDs struct {
	window time.Duration
	max    int

	mu    sync.Mutex
	at    map[string]*list.Element // of storedID
	order list.List                // oldest first
}

type storedID struct {
	id string
	at time.Time
}

func newStoredIDs(window time.Duration, max int) *storedIDs {
	return &storedIDs{window: window, max: max, at: map[string]*list.Element{}}
}

// has reports whether id was stored within the window.
func (s *storedIDs) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked(time.Now())
	_, ok := s.at[id]
	return ok
}

// add remembers id as stored now.
func (s *storedIDs) add(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.at[id]; ok {
		s.order.Remove(e)
	}
	s.at[id] = s.order.PushBack(storedID{id: id, at: time.Now()})
	s.pruneLocked(time.Now())
}

func (s *storedIDs) pruneLocked(now time.Time) {
	for f := s.order.Front(); f != nil; f = s.order.Front() {
		e := f.Value.(storedID)
		if s.order.Len() <= s.max && now.Sub(e.at) < s.window {
			return
		}
		s.order.Remove(f)
		delete(s.at, e.id)
	}
}
