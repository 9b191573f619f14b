package switchboard

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/waitfor"
	"github.com/msprelay/msprelay/principal"
)

// stalled is an AckTerminal whose client promises acknowledgements and
// never sends one; it hands the test the context of each delivery.
type stalled struct{ ctxs chan context.Context }

func (s *stalled) Deliver(ctx context.Context, d *Delivery) error {
	_, err := s.DeliverAcked(ctx, d, nil)
	return err
}

func (s *stalled) DeliverAcked(ctx context.Context, _ *Delivery, _ chan<- error) (bool, error) {
	s.ctxs <- ctx
	return true, nil
}

func (s *stalled) Kick(string) {}

// Issue 19: "the ingress deadline carried in the federation frame and
// honoured by the remote node". The remote node serves a delivery with the
// time its ingress gave it, never longer than its own bound: a client that
// does not acknowledge holds the remote node no longer than either,
// well before the remote's AckTimeout.
func TestRemoteServesWithinTheIngressDeadline(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                   string
		ingressBound, ownBound time.Duration
	}{
		{"the remote node stops serving when the ingress deadline passes", 300 * time.Millisecond, time.Hour},
		{"the remote node serves no longer than its own bound", time.Hour, 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			url := fedRelay(t)
			a := fedBoard(t, url, "a", tc.ingressBound)
			b := fedBoardOn(t, url, fedDir(t, "b"), Config{ForwardTimeout: tc.ownBound, AckTimeout: 30 * time.Second})
			term := &stalled{ctxs: make(chan context.Context, 1)}
			if _, err := b.SignIn("alice", "pts/1", principal.Online, term); err != nil {
				t.Fatal(err)
			}
			res := make(chan []Result, 1)
			go func() {
				d := &Delivery{ID: "k1", Recipient: "alice", Sender: "bob", Text: "hi", Time: time.Now(), Origin: Origin{Node: "a"}}
				res <- a.fed.forward(context.Background(), "b", d, []principal.Entry{{User: "alice", Node: "b", Term: "pts/1"}}, nil)
			}()
			ctx := waitfor.Recv(t, term.ctxs, 10*time.Second, "the delivery at node b")
			if _, ok := ctx.Deadline(); !ok {
				t.Fatal("node b serves the delivery without a deadline")
			}
			waitfor.Recv(t, ctx.Done(), 10*time.Second, "node b to stop serving the delivery")
			if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				t.Errorf("served until %v, want its deadline", ctx.Err())
			}
			if r := waitfor.Recv(t, res, 10*time.Second, "the result at node a"); len(r) != 1 || r[0].Status != Failed {
				t.Fatalf("results %+v, want one failure", r)
			}
		})
	}
}
