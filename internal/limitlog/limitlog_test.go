package limitlog

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/syncbuf"

	"github.com/msprelay/msprelay/internal/waitfor"
)

// Issue 12: "2900 secret guesses per second, each logging two lines": a
// flood of one kind makes one line per interval, with the rest counted.
func TestOneLinePerKindPerInterval(t *testing.T) {
	t.Parallel()
	var buf syncbuf.Buffer
	l := New(slog.New(slog.NewTextHandler(&buf, nil)), time.Hour)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 250 {
				l.Hit("msp: limit reached", "limit", "rate")
			}
		})
	}
	wg.Wait()
	l.Hit("other kind")
	out := buf.String()
	if n := strings.Count(out, "\n"); n != 2 {
		t.Fatalf("%d lines for 1000 hits of one kind and 1 of another, want 2:\n%s", n, out)
	}
	if n := l.Suppressed("msp: limit reached"); n != 999 {
		t.Fatalf("suppressed %d, want 999", n)
	}
}

// After the interval the next hit is logged with the count suppressed.
func TestLogsAgainWithSuppressedCount(t *testing.T) {
	t.Parallel()
	var buf syncbuf.Buffer
	l := New(slog.New(slog.NewTextHandler(&buf, nil)), 20*time.Millisecond)
	l.Hit("k")
	l.Hit("k")
	l.Hit("k")
	waitfor.True(t, 5*time.Second, "the key logged again", func() bool {
		if strings.Count(buf.String(), "\n") >= 2 {
			return true
		}
		l.Hit("k")
		return false
	})
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if strings.HasSuffix(lines[1], "suppressed=0") || strings.HasSuffix(lines[1], "suppressed=1") || !strings.Contains(lines[1], "suppressed=") {
		t.Fatalf("second line does not count the two or more hits not logged:\n%s", buf.String())
	}
}
