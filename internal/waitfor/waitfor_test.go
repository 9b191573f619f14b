package waitfor

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// recorder is a testing.TB that records Fatalf instead of ending the test,
// so that the failure path can be checked.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
}

// "poll with a bounded wait helper": a condition that becomes true ends the
// wait, one that never does fails the test after the bound and says what
// it waited for.
func TestWaitForIsBoundedAndSaysWhat(t *testing.T) {
	t.Parallel()
	n := 0
	True(t, 5*time.Second, "the third poll", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Fatalf("polled %d times, want 3", n)
	}

	// Giving up only waits on time: in a synctest bubble the bound is
	// exact, however loaded the machine.
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{TB: t}
		start := time.Now()
		True(r, 50*time.Millisecond, "godot", func() bool { return false })
		if d := time.Since(start); d < 50*time.Millisecond || d > 50*time.Millisecond+maxPoll {
			t.Errorf("gave up after %v, want 50ms plus at most one poll", d)
		}
		if !strings.Contains(r.failed, "waiting for godot") {
			t.Errorf("failure %q does not say what it waited for", r.failed)
		}
	})

	r := &recorder{TB: t}
	NoError(r, 20*time.Millisecond, "the store", func() error { return errors.New("connection refused") })
	if !strings.Contains(r.failed, "waiting for the store: connection refused") {
		t.Errorf("failure %q does not carry the last error", r.failed)
	}
}

// "every channel receive in a test has a timeout": Recv returns what comes,
// and fails the test when nothing does.
func TestRecvIsBounded(t *testing.T) {
	t.Parallel()
	ch := make(chan int, 1)
	ch <- 7
	if v := Recv(t, ch, time.Second, "seven"); v != 7 {
		t.Fatalf("Recv = %d, want 7", v)
	}
	r := &recorder{TB: t}
	Recv(r, make(chan int), 20*time.Millisecond, "a value nobody sends")
	if !strings.Contains(r.failed, "waiting for a value nobody sends") {
		t.Errorf("failure %q does not say what it waited for", r.failed)
	}
}
