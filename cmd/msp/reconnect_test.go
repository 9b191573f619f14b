package main

import (
	"errors"
	"testing"

	"github.com/msprelay/msprelay/sessionclient"
	"github.com/msprelay/msprelay/sessionproto"
)

// Issue 20: "reconnect with backoff (bounded, jittered, e.g. 0.2 s doubling
// to 10 s)": each wait lies between half and all of its nominal delay, the
// nominal delay doubles from 0.2 s and stops at 10 s, and a success starts
// over.
func TestBackoffBoundedJitteredDoubling(t *testing.T) {
	t.Parallel()
	b := backoff{min: minBackoff, max: maxBackoff}
	nominal := minBackoff
	for i := range 20 {
		d := b.next()
		if d < nominal/2 || d > nominal {
			t.Fatalf("wait %d = %v, want within [%v, %v]", i, d, nominal/2, nominal)
		}
		nominal = min(2*nominal, maxBackoff)
	}
	if nominal != maxBackoff {
		t.Fatalf("nominal delay %v after 20 waits, want the bound %v", nominal, maxBackoff)
	}
	b.reset()
	if d := b.next(); d > minBackoff {
		t.Errorf("first wait after reset = %v, want at most %v", d, minBackoff)
	}
}

// Which ends of a session are worth signing in again after.
func TestRetryable(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"node shut down (OUT SSD)", sessionclient.ErrServerShutdown, true},
		{"connection closed", sessionclient.ErrConnClosed, true},
		{"idle timeout", sessionclient.ErrIdleTimeout, true},
		{"no node answers", errors.New("no node answers; looked at ..."), true},
		{"server busy (600)", &sessionproto.Error{Code: sessionproto.CodeServerBusy}, true},
		{"another client took the terminal (OUT OTH)", sessionclient.ErrKicked, false},
		{"authentication failed (911)", &sessionproto.Error{Code: sessionproto.CodeAuthFailed}, false},
		{"console reserved (914)", &sessionproto.Error{Code: sessionproto.CodeTermReserved}, false},
		{"the user asked to stop", sessionclient.ErrClientClosed, false},
	}
	for _, tc := range cases {
		if got := retryable(tc.err); got != tc.want {
			t.Errorf("%s: retryable = %v, want %v", tc.name, got, tc.want)
		}
	}
}
