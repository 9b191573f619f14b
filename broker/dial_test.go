package broker

import (
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

func TestReconnectDelayBackoffWithJitter(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	for _, tc := range []struct {
		round    int
		min, max time.Duration
	}{
		{0, 125 * ms, 250 * ms},
		{1, 125 * ms, 250 * ms},
		{2, 250 * ms, 500 * ms},
		{3, 500 * ms, 1000 * ms},
		{6, 4 * time.Second, 8 * time.Second},
		{7, 5 * time.Second, 10 * time.Second},
		{1 << 30, 5 * time.Second, 10 * time.Second},
	} {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := reconnectDelay(tc.round)
			if d < tc.min || d > tc.max {
				t.Fatalf("reconnectDelay(%d) = %s, want in [%s, %s]", tc.round, d, tc.min, tc.max)
			}
			seen[d] = true
		}
		if len(seen) < 2 {
			t.Errorf("reconnectDelay(%d) gave one value in 200 calls: no jitter", tc.round)
		}
	}
}

func TestDialNeedsURLs(t *testing.T) {
	t.Parallel()
	if _, err := Dial(nil, "n", nil); !errors.Is(err, ErrNoURLs) {
		t.Fatalf("Dial(nil) = %v, want ErrNoURLs", err)
	}
}

// A relay restart costs a dialled node nothing: it reconnects, resubscribes
// and delivers what it published meanwhile, logging one line per state
// change rather than one per retry.
func TestDialSurvivesRelayRestart(t *testing.T) {
	t.Parallel()
	relay := started(t, Config{Name: "relay", Listen: "127.0.0.1:0"})
	addr := relay.Addrs().Client
	rec := newRecorder(slog.LevelDebug)
	nc, err := Dial([]string{relay.ClientURL()}, "node-a", slog.New(rec))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("msp.node.node-a.deliver")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	relay.Close()
	waitFor(t, 5*time.Second, "the disconnect", func() bool { return nc.Status() == nats.RECONNECTING })
	if err := nc.Publish("msp.node.node-a.deliver", []byte("buffered while down")); err != nil {
		t.Fatalf("publish while disconnected: %v, want buffered", err)
	}
	// Let a few attempts fail so that the log has something to suppress.
	waitFor(t, 5*time.Second, "two failed reconnect attempts", func() bool {
		return len(rec.matching("DEBUG nats: connect attempt failed")) >= 1
	})

	// Same port: a node knows its relays by fixed addresses. The kernel may
	// still hold it for an instant, so retry the bind briefly.
	var again *Broker
	waitFor(t, 5*time.Second, "the relay to restart on "+addr, func() bool {
		b, err := New(Config{Name: "relay", Listen: addr})
		if err != nil {
			t.Fatal(err)
		}
		if b.Start() != nil {
			return false
		}
		again = b
		return true
	})
	defer again.Close()
	waitFor(t, 10*time.Second, "the reconnect", func() bool { return nc.IsConnected() })
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil || string(m.Data) != "buffered while down" {
		t.Fatalf("after reconnect got %v, %v; want the buffered message", m, err)
	}
	nc.Close()
	waitFor(t, 5*time.Second, "the closed log line", func() bool { return len(rec.matching("connection closed")) == 1 })

	for _, tc := range []struct {
		subs []string
		want int
	}{
		{[]string{"INFO nats: connected", "name=node-a", "server=relay"}, 1},
		{[]string{"WARN nats: disconnected, reconnecting"}, 1},
		{[]string{"WARN nats: connect attempt failed, retrying with backoff"}, 1},
		{[]string{"INFO nats: reconnected", "server=relay"}, 1},
		{[]string{"INFO nats: connection closed"}, 1},
	} {
		if got := rec.matching(tc.subs...); len(got) != tc.want {
			t.Errorf("log lines matching %q: %q, want %d", tc.subs, got, tc.want)
		}
	}
}

// With no relay up yet, Dial still returns a connection that connects
// once a relay appears, so nodes and relays may start in any order.
func TestDialBeforeRelayStarts(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	nc, err := Dial([]string{"nats://" + addr}, "early", nil)
	if err != nil {
		t.Fatalf("Dial with no relay: %v, want a connection that keeps trying", err)
	}
	defer nc.Close()
	if nc.IsConnected() {
		t.Fatal("connected to a closed port")
	}
	started(t, Config{Name: "late", Listen: addr})
	waitFor(t, 10*time.Second, "the late connect", func() bool { return nc.IsConnected() })
	if got := nc.ConnectedServerName(); got != "late" {
		t.Errorf("connected to %q, want late", got)
	}
}
