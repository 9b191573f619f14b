package presence

import (
	"sync"

	"github.com/msprelay/msprelay/principal"
)

// EventType says what happened to an entry.
type EventType uint8

// Event types. An Upsert is a sign-in or a change (state, aliases, activity);
// a Remove is a sign-out, a dropped session, or the node leaving or dying.
const (
	EventUpsert EventType = iota + 1
	EventRemove
)

// Event is one change to the directory. For EventRemove, Entry is the last
// known entry with State set to Offline.
type Event struct {
	Type  EventType
	Entry principal.Entry
}

// Subscription receives every directory change in order on C.
//
// The Directory owns C and closes it when the subscription ends: on Cancel, on
// Close of the directory, or when the reader falls more than
// Config.SubscriberBuffer events behind (then Err returns ErrLagged and the
// reader should resynchronise from Lookup/All). Ending a slow reader keeps
// memory bounded and never blocks gossip or sign-ins.
type Subscription struct {
	C <-chan Event

	d  *Directory
	ch chan Event
	// mu guards err and ended; sends happen under Directory.mu.
	mu    sync.Mutex
	err   error
	ended bool
}

// Subscribe starts a subscription to all directory changes.
func (d *Directory) Subscribe() *Subscription {
	ch := make(chan Event, d.cfg.SubscriberBuffer)
	s := &Subscription{C: ch, d: d, ch: ch}
	d.mu.Lock()
	if d.closed {
		s.end(ErrClosed)
	} else {
		d.subs[s] = struct{}{}
	}
	d.mu.Unlock()
	return s
}

// Cancel ends the subscription and closes C. It is idempotent.
func (s *Subscription) Cancel() {
	s.d.mu.Lock()
	delete(s.d.subs, s)
	s.end(nil)
	s.d.mu.Unlock()
}

// Err reports why the subscription ended (nil while live or after Cancel).
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *Subscription) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	s.ended = true
	s.err = err
	close(s.ch)
}

// emitLocked sends ev to every subscriber; d.mu must be held for writing.
func (d *Directory) emitLocked(ev Event) {
	for s := range d.subs {
		select {
		case s.ch <- ev:
		default:
			delete(d.subs, s)
			s.end(ErrLagged)
		}
	}
}
