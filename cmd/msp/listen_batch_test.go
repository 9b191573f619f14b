package main

import (
	"fmt"
	"testing"

	"github.com/msprelay/msprelay/sessionproto"
)

// Issue 21: "msp listen writes its output in one write per batch and
// acknowledges a batch in one frame": the batch is what has arrived
// already, taken without waiting, at most maxListenBatch; a closed
// channel ends it and says so.
func TestTakeBatchTakesWhatHasArrived(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		waiting   int
		closed    bool
		want      int
		wantEnded bool
	}{
		{"nothing more: the one message", 0, false, 1, false},
		{"what has arrived", 5, false, 6, false},
		{"at most maxListenBatch", maxListenBatch + 3, false, maxListenBatch, false},
		{"closed after two: both, and the end", 2, true, 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ch := make(chan *sessionproto.Message, maxListenBatch+8)
			for i := range tc.waiting {
				ch <- &sessionproto.Message{ID: fmt.Sprint(i + 1)}
			}
			if tc.closed {
				close(ch)
			}
			got, ended := takeBatch([]*sessionproto.Message{{ID: "0"}}, ch)
			if len(got) != tc.want || ended != tc.wantEnded {
				t.Fatalf("takeBatch: %d messages, ended %v; want %d, %v", len(got), ended, tc.want, tc.wantEnded)
			}
			for i, m := range got {
				if m.ID != fmt.Sprint(i) {
					t.Fatalf("message %d has id %s: out of order", i, m.ID)
				}
			}
		})
	}
}
