// Package waitfor is the bounded polling helper of msprelay's tests: wait
// until a condition holds, and fail the test, naming what it waited for,
// if it does not within a timeout. Tests poll with it instead of sleeping.
// It imports nothing of msprelay, so that every package's internal tests
// can use it without an import cycle; internal/testcluster builds on it.
package waitfor

import (
	"testing"
	"time"
)

// Poll intervals: quick at first, so that a condition that is nearly true
// costs little, then backing off so that a long wait does not spin.
const (
	firstPoll = time.Millisecond
	maxPoll   = 20 * time.Millisecond
)

// True polls cond until it returns true. After timeout it fails t with
// "timed out after <timeout> waiting for <what>".
func True(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	NoError(t, timeout, what, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
}

// NoError polls cond until it returns nil and returns how long that took.
// After timeout it fails t naming what it waited for and cond's last error.
func NoError(t testing.TB, timeout time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	pause := firstPoll
	for {
		err := cond()
		if err == nil {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			if err == errNotYet {
				t.Fatalf("timed out after %v waiting for %s", timeout, what)
			} else {
				t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
			}
			return time.Since(start)
		}
		time.Sleep(pause)
		pause = min(2*pause, maxPoll)
	}
}

// Until polls cond like True but reports instead of failing: it returns
// whether cond held within timeout. It is for goroutines other than the
// test's own, which must not call t.Fatal; the test checks the result.
func Until(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	pause := firstPoll
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause)
		pause = min(2*pause, maxPoll)
	}
	return true
}

// errNotYet is what True's condition reports while it does not hold.
var errNotYet = notYet{}

type notYet struct{}

func (notYet) Error() string { return "condition not met" }

// Recv receives one value from ch (the zero value once ch is closed). If
// none comes within timeout it fails t naming what it waited for, so that a
// test that goes wrong ends instead of hanging.
func Recv[T any](t testing.TB, ch <-chan T, timeout time.Duration, what string) T {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
	var zero T
	return zero
}
