package presence

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// levelRecorder is a slog handler that keeps every record's level and
// message; mu guards recs.
type levelRecorder struct {
	mu   *sync.Mutex
	recs *[]string
}

func (h levelRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h levelRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.recs = append(*h.recs, r.Level.String()+" "+r.Message)
	return nil
}
func (h levelRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h levelRecorder) WithGroup(string) slog.Handler      { return h }

// Issue 20: "a clean shutdown of the last gossip member is logged as
// ERROR". memberlist's lines about sockets that Shutdown closed are not
// errors; other errors stay errors.
func TestShutdownNoiseIsNotAnError(t *testing.T) {
	t.Parallel()
	cases := []struct {
		line string
		want slog.Level
	}{
		{"[ERR] memberlist: Failed to send gossip to 127.0.0.1:35305: write udp 127.0.0.1:17946->127.0.0.1:35305: use of closed network connection", slog.LevelDebug},
		{"[ERR] memberlist: Error reading UDP packet: read udp 127.0.0.1:1: use of closed network connection", slog.LevelDebug},
		{"[ERR] memberlist: Failed to send ping: write udp: no route to host", slog.LevelError},
		{"[WARN] memberlist: Was able to connect to x over TCP but UDP probes failed", slog.LevelWarn},
	}
	for _, tc := range cases {
		var mu sync.Mutex
		var recs []string
		w := slogWriter{slog.New(levelRecorder{&mu, &recs})}
		if _, err := w.Write([]byte(tc.line + "\n")); err != nil {
			t.Fatal(err)
		}
		if len(recs) != 1 || !strings.HasPrefix(recs[0], tc.want.String()+" ") {
			t.Errorf("%q logged as %q, want level %v", tc.line, recs, tc.want)
		}
	}
}

// Closing the last member of a cluster, and a member whose peer crashed,
// is clean: Close returns nil and nothing is logged at ERROR.
func TestLastMemberClosesCleanly(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var recs []string
	logger := slog.New(levelRecorder{&mu, &recs})
	nodes := startCluster(t, 2, func(c *Config) { c.Logger = logger })
	nodes[1].crash(t)
	start := time.Now()
	if err := nodes[0].Close(); err != nil {
		t.Errorf("closing the member left after its peer crashed: %v", err)
	}
	t.Logf("close took %v", time.Since(start).Round(time.Millisecond))
	if err := nodes[1].Close(); err != nil {
		t.Errorf("closing the crashed member: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	var b bytes.Buffer
	for _, r := range recs {
		if strings.HasPrefix(r, "ERROR") {
			b.WriteString(r + "\n")
		}
	}
	if b.Len() > 0 {
		t.Errorf("errors logged by a clean shutdown:\n%s", b.String())
	}
}
