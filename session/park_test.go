package session

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/msprelay/msprelay/sessionclient"
)

// readerGoroutines counts the goroutines inside a session's read loop.
func readerGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return bytes.Count(buf[:n], []byte("session.(*session).loop("))
		}
		buf = make([]byte, 2*len(buf))
	}
}

func skipUnlessParking(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("parking idle sessions needs Linux (epoll)")
	}
}

// Issue 22: "one goroutine per idle session at most"; with parking, an idle
// signed-in session has none, and a session that is not idle (or parking
// off) keeps its reader.
func TestIdleSessionsHaveNoReaderGoroutine(t *testing.T) {
	skipUnlessParking(t)
	// Not parallel: it counts every goroutine of the process in the read
	// loop.
	const n = 20
	for _, tc := range []struct {
		name      string
		parkAfter time.Duration
		wantMax   int // reader goroutines left once idle
	}{
		{"parked after ParkAfter: no reader goroutine", 20 * time.Millisecond, 0},
		{"ParkAfter negative: one reader each", -1, n},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Trust{}, func(c *Config) { c.ParkAfter = tc.parkAfter })
			before := readerGoroutines()
			for i := range n {
				e.signIn(fmt.Sprintf("u%d", i), "pts/1")
			}
			if tc.parkAfter > 0 {
				waitFor(t, "every session parked", func() bool { return e.srv.parkedSessions() == n })
				waitFor(t, "the readers gone", func() bool { return readerGoroutines()-before <= tc.wantMax })
				return
			}
			if got := readerGoroutines() - before; got != n {
				t.Fatalf("%d reader goroutines for %d sessions with parking off, want %d", got, n, n)
			}
			if p := e.srv.parkedSessions(); p != 0 {
				t.Fatalf("%d sessions parked with parking off", p)
			}
		})
	}
}

// Every way a parked session can be reached or ended works as for a
// session with a reader: the session protocol's rules hold whether or not
// its reader is parked.
func TestParkedSessionKeepsTheRules(t *testing.T) {
	skipUnlessParking(t)
	t.Parallel()
	for _, tc := range []struct {
		name string
		idle time.Duration // IdleTimeout; zero: the default
		run  func(t *testing.T, e *env, alice, bob *sessionclient.Client)
	}{
		{"a message to a parked session is pushed to it", 0, func(t *testing.T, e *env, alice, bob *sessionclient.Client) {
			mustSend(t, bob, "alice", "", "to a parked reader")
			if m := nextMessage(t, alice); m.Text != "to a parked reader" {
				t.Fatalf("got %q", m.Text)
			}
		}},
		{"a parked session answers its next command and parks again", 0, func(t *testing.T, e *env, alice, bob *sessionclient.Client) {
			for range 3 {
				if _, err := alice.Ping(ctxT(t)); err != nil {
					t.Fatal(err)
				}
				waitFor(t, "both parked again", func() bool { return e.srv.parkedSessions() == 2 })
			}
		}},
		{"a session that sends nothing for IdleTimeout is closed with OUT TMO, parked or not", time.Second, func(t *testing.T, e *env, alice, bob *sessionclient.Client) {
			if err := waitDone(t, alice); !errors.Is(err, sessionclient.ErrIdleTimeout) {
				t.Fatalf("alice ended with %v, want sessionclient.ErrIdleTimeout", err)
			}
		}},
		{"the newest sign-in on a (user, terminal) wins: the parked one is told OUT OTH", 0, func(t *testing.T, e *env, alice, bob *sessionclient.Client) {
			e.signIn("alice", "pts/1")
			if err := waitDone(t, alice); !errors.Is(err, sessionclient.ErrKicked) {
				t.Fatalf("alice ended with %v, want sessionclient.ErrKicked", err)
			}
		}},
		{"a dropped parked session signs out", 0, func(t *testing.T, e *env, alice, bob *sessionclient.Client) {
			e.drop(alice)
			waitFor(t, "alice signed out", func() bool {
				es, err := bob.Who(ctxT(t), "alice")
				return err == nil && len(es) == 0 && e.srv.Sessions() == 1
			})
		}},
		{"Shutdown tells parked sessions OUT SSD and waits for them", 0, func(t *testing.T, e *env, alice, bob *sessionclient.Client) {
			if err := e.srv.Shutdown(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			for _, c := range []*sessionclient.Client{alice, bob} {
				if err := waitDone(t, c); !errors.Is(err, sessionclient.ErrServerShutdown) {
					t.Fatalf("ended with %v, want sessionclient.ErrServerShutdown", err)
				}
			}
			if n := e.srv.Sessions(); n != 0 {
				t.Fatalf("%d sessions left after Shutdown", n)
			}
			<-e.serve
			e.serve <- ErrServerClosed // for the cleanup check
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Trust{}, func(c *Config) {
				c.ParkAfter = 20 * time.Millisecond
				c.IdleTimeout = tc.idle
			})
			alice := e.signIn("alice", "pts/1")
			bob := e.signIn("bob", "pts/2")
			waitFor(t, "both parked", func() bool { return e.srv.parkedSessions() == 2 })
			tc.run(t, e, alice, bob)
		})
	}
}
