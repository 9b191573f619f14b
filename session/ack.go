package session

import (
	"context"
	"fmt"

	"github.com/msprelay/msprelay/sessionproto"
	"github.com/msprelay/msprelay/switchboard"
)

// DeliverAcked implements switchboard.AckTerminal. Sessions that did not
// negotiate MSPS2, and messages without an id, are delivered as by
// Deliver (acks false). Messages are pushed in order without waiting for
// each other's ACK; at most AckWindow of them await an ACK at once (the
// window), past that the client is behind and further messages are
// refused with switchboard.ErrTerminalSlow.
func (s *session) DeliverAcked(ctx context.Context, d *switchboard.Delivery, done chan<- error) (bool, error) {
	s.mu.Lock()
	acks := s.acks
	s.mu.Unlock()
	if !acks || d.ID == "" {
		return false, s.deliver(ctx, d, nil)
	}
	s.mu.Lock()
	sending := s.sending
	s.mu.Unlock()
	if sending {
		// The reader is waiting for its own SND to be delivered and reads
		// no ACK meanwhile, so this one could only time out. Refusing it
		// as slow lets the switchboard try another terminal or queue it;
		// the mailbox hands it over once SND is done.
		return true, fmt.Errorf("%w (sending)", switchboard.ErrTerminalSlow)
	}
	if err := s.deliver(ctx, d, done); err != nil {
		return true, err
	}
	return true, nil
}

// setSending marks the reader as inside SND (see DeliverAcked).
func (s *session) setSending(on bool) {
	s.mu.Lock()
	s.sending = on
	s.mu.Unlock()
}

// ackWaiters are the callers waiting for the client's ACK of one message:
// usually one, more when a message was pushed twice (a redelivery).
type ackWaiters struct {
	first chan<- error
	more  []chan<- error
}

// settle sends err to every waiter; each channel has room for its one value.
func (w ackWaiters) settle(err error) {
	send := func(c chan<- error) {
		select {
		case c <- err:
		default:
		}
	}
	send(w.first)
	for _, c := range w.more {
		send(c)
	}
}

// awaitAckLocked remembers that done waits for the client's ACK of id. A
// message pushed twice (a redelivery) is settled by one ACK. mu must be held.
func (s *session) awaitAckLocked(id string, done chan<- error) {
	if s.unacked == nil {
		s.unacked = map[string]ackWaiters{}
	}
	w, ok := s.unacked[id]
	if !ok {
		w.first = done
	} else {
		w.more = append(w.more, done)
	}
	s.unacked[id] = w
}

// unackedLocked counts the messages awaiting an ACK. mu must be held.
func (s *session) unackedLocked() int { return len(s.unacked) }

// failAcks tells everyone still waiting for an ACK that none will come; the
// session is ending, so no new waiters can be added (deliver checks ending).
func (s *session) failAcks() {
	s.mu.Lock()
	waiting := s.unacked
	s.unacked = nil
	s.mu.Unlock()
	for _, w := range waiting {
		w.settle(switchboard.ErrTerminalGone)
	}
}

// cmdACK: ACK TrID id [id ...] -> (no reply). The client has the messages
// safe: one id (MSPS2) or up to sessionproto.MaxAckIDs (MSPS3, though any
// session may send several), in any order. An id that nothing waits for
// (acknowledged already, or too late: the node gave up and queued the
// message again) is ignored, so clients may acknowledge every MSG they
// receive, repeats included. A line with a bad id settles none of them.
func (s *session) cmdACK(f *sessionproto.Frame) *sessionproto.Fault {
	if pe := wantArgs(f, 1, sessionproto.MaxAckIDs); pe != nil {
		return pe
	}
	ids, err := sessionproto.ParseAckIDs(f.Args, sessionproto.MaxAckIDs)
	if err != nil {
		return sessionproto.Errf(sessionproto.CodeBadParam, f.TrID, "%v", err)
	}
	var one [1]ackWaiters
	settled := one[:0]
	s.mu.Lock()
	for _, id := range ids {
		if w, ok := s.unacked[id]; ok {
			delete(s.unacked, id)
			settled = append(settled, w)
		}
	}
	s.mu.Unlock()
	for _, w := range settled {
		w.settle(nil)
	}
	return nil
}
