package switchboard

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/msprelay/msprelay/principal"
	"github.com/nats-io/nats.go"
)

// forward believes only a reply that names the node it asked: a reply from
// a node answering in another's place is a failure, never "delivered".
func TestForwardIgnoresReplyNamingAnotherNode(t *testing.T) {
	t.Parallel()
	url := fedRelay(t)
	dir := fedDir(t, "a")
	sb, err := New(Config{Node: "a", Directory: dir, NATS: fedDial(t, url), Logger: slog.New(slog.DiscardHandler), ForwardTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	answerer := fedDial(t, url)
	for _, tc := range []struct {
		name, replyNode string
		want            Status
	}{
		{"a reply naming another node is not believed", "c", Failed},
		{"the asked node's reply is", "b", Delivered},
	} {
		f := newFederation(sb, sb.cfg.NATS)
		sub, err := answerer.Subscribe(deliverWildcard("b"), func(m *nats.Msg) {
			_ = m.Respond(appendReply(nil, tc.replyNode, "", [][]Result{{{Status: Delivered}}}))
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := answerer.Flush(); err != nil {
			t.Fatal(err)
		}
		d := &Delivery{ID: "x", Recipient: "alice", Text: "hi", Origin: Origin{Node: "a"}, Time: time.Now()}
		res := f.forward(context.Background(), "b", d, []principal.Entry{{User: "alice", Node: "b", Term: "pts/1"}}, nil)
		if len(res) != 1 || res[0].Status != tc.want {
			t.Errorf("%s: results %+v, want %v", tc.name, res, tc.want)
		}
		_ = sub.Unsubscribe()
	}
}
