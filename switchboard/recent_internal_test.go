package switchboard

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// A repeat waits for and reuses the first attempt's result; a failed
// attempt is forgotten so the next one tries again; the drainer retakes
// an id that was only queued.
func TestRecentIDsRepeatRules(t *testing.T) {
	t.Parallel()
	r := newRecentIDs(time.Minute, 16, time.Now)
	a, mine := r.claim("alice", "m1", false)
	if !mine {
		t.Fatal("first claim not owned")
	}
	b, mine := r.claim("alice", "m1", false)
	if mine || b != a {
		t.Fatal("repeat while in flight must join the first attempt")
	}
	go r.finish(a, Delivered)
	if st, ok := b.wait(context.Background(), time.Second); !ok || st != Delivered {
		t.Fatalf("repeat sees %v %v, want delivered", st, ok)
	}
	if _, mine := r.claim("bob", "m1", false); !mine {
		t.Fatal("the same id for another user is another delivery")
	}
	f, _ := r.claim("alice", "m2", false)
	r.finish(f, Failed)
	if _, mine := r.claim("alice", "m2", false); !mine {
		t.Fatal("after a failure the next attempt must try again")
	}
	q, _ := r.claim("alice", "m3", false)
	r.finish(q, Queued)
	if _, mine := r.claim("alice", "m3", false); mine {
		t.Fatal("a direct repeat of a queued message is answered 'queued'")
	}
	if _, mine := r.claim("alice", "m3", true); !mine {
		t.Fatal("the drainer must retake a queued id")
	}
	if _, mine := r.claim("alice", "", false); !mine {
		t.Fatal("messages without id are never repeats")
	}
}

func TestRecentIDsBounded(t *testing.T) {
	t.Parallel()
	now := time.Now() // the test's clock: only this goroutine reads or steps it
	r := newRecentIDs(50*time.Millisecond, 8, func() time.Time { return now })
	for i := range 100 {
		a, _ := r.claim("alice", fmt.Sprint(i), false)
		r.finish(a, Delivered)
	}
	r.mu.Lock()
	n, live := len(r.order)-r.head, len(r.byKey)
	r.mu.Unlock()
	if n > 9 || live > 9 {
		t.Fatalf("%d remembered (%d live) after 100 ids, cap 8", n, live)
	}
	now = now.Add(60 * time.Millisecond) // the window passes
	if _, mine := r.claim("alice", "99", false); !mine {
		t.Fatal("an id older than the window must be forgotten")
	}
}
