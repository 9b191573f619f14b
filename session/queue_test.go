package session

import (
	"fmt"
	"strings"
	"testing"

	"github.com/msprelay/msprelay/switchboard"
)

// sessionOf returns user's session on e's server, or nil.
func (e *env) sessionOf(user string) *session {
	e.srv.mu.Lock()
	defer e.srv.mu.Unlock()
	for s := range e.srv.sessions {
		s.mu.Lock()
		u := s.user
		s.mu.Unlock()
		if u == user {
			return s
		}
	}
	return nil
}

// queueState is the length of s's queue, its capacity, and whether a
// writer runs.
func queueState(s *session) (n, capacity int, writing bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.q), cap(s.q), s.writing
}

// TestOutQueueGrowsOnDemand: "a queue that grows on demand ... one
// goroutine per idle session at most" (issue 22): an idle session holds no
// queue slots and runs no writer; a client that stops reading gets at most
// OutQueue frames queued (plus the one its writer is blocked on) and the
// sender is refused after that; once the client reads again it gets every
// queued message in the order sent, and the session is back to no slots
// and no writer.
func TestOutQueueGrowsOnDemand(t *testing.T) {
	t.Parallel()
	const outQueue = 64
	e := newEnv(t, Trust{}, func(c *Config) { c.OutQueue = outQueue; c.QueueWait = -1 })
	pl := newPipeListener()
	e.serveOn(pl, Trust{})
	r := e.dialPipe(t, pl)
	r.send("USR 1 alice pts/1\r\n")
	r.expect("USR 1 OK alice pts/1 NLN n1 trust")
	var alice *session
	waitFor(t, "alice's session to be idle: no frames, no slots, no writer", func() bool {
		if alice == nil {
			alice = e.sessionOf("alice")
		}
		if alice == nil {
			return false
		}
		n, c, w := queueState(alice)
		return n == 0 && c == 0 && !w
	})

	// alice stops reading; bob sends until he is refused.
	bob := e.signIn("bob", "pts/2")
	ctx := ctxT(t)
	sent := 0
	for i := range 3 * outQueue {
		ok, summary, err := bob.Send(ctx, "alice", "", fmt.Sprintf("message %d", i))
		if err != nil {
			t.Fatal(err)
		}
		if n, _, _ := queueState(alice); n > outQueue {
			t.Fatalf("after message %d alice's queue holds %d frames, bound %d", i, n, outQueue)
		}
		if !ok {
			if !strings.HasSuffix(summary, switchboard.ErrTerminalSlow.Error()) {
				t.Fatalf("refusal %q, want %q", summary, switchboard.ErrTerminalSlow)
			}
			break
		}
		sent++
	}
	// The writer holds one frame (blocked on the pipe) and the queue
	// OutQueue more; the next is refused.
	if sent < outQueue || sent > outQueue+2 {
		t.Fatalf("%d messages taken before the refusal, want %d..%d", sent, outQueue, outQueue+2)
	}
	if n, _, w := queueState(alice); n != outQueue || !w {
		t.Fatalf("alice's queue holds %d frames (writer running: %v), want %d and a writer", n, w, outQueue)
	}

	// alice reads again: every message, in order.
	for i := range sent {
		p := r.payload("MSG")
		if want := fmt.Sprintf("\r\n\r\nmessage %d", i); !strings.HasSuffix(p, want) {
			t.Fatalf("message %d: got %q", i, p)
		}
	}
	waitFor(t, "alice's session to be idle again", func() bool {
		n, c, w := queueState(alice)
		return n == 0 && c == 0 && !w
	})
}
