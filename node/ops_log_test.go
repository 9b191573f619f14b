package node_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/msprelay/msprelay/internal/syncbuf"

	"github.com/msprelay/msprelay/internal/testcluster"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/node"
)

// jsonLines decodes the JSON log lines written to l.
func jsonLines(l *syncbuf.Buffer) []map[string]any {
	var out []map[string]any
	for _, s := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(s), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// Issue 10: "one line per refused or failed delivery at info with sender,
// recipient, transport and reason (rate-limited so a flood cannot fill the
// disk)". Every refusal is either logged or counted as suppressed, and the
// count is logged.
func TestRefusalsAreLoggedOnceEachWithinTheRateLimit(t *testing.T) {
	t.Parallel()
	var buf syncbuf.Buffer
	c := testcluster.Start(t, 1, testcluster.Options{Configure: func(_ int, cfg *node.Config) {
		cfg.Logger = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}})
	const flood = 300 // at 20 lines a second after a burst of 50, logging all would take 12 s
	for i := range flood {
		r, err := c.Send(0, "tcp", &msp.Message{Version: msp.Version2, Recipient: "ghost", Sender: "mallory", SenderTerm: "pts/6",
			Text: "spam", Cookie: fmt.Sprint(i)})
		if err != nil || r.OK {
			t.Fatalf("send %d: %+v %v", i, r, err)
		}
	}
	suppressedMetric := metric(t, c.Node(0).Registry(), "msprelay_log_lines_suppressed_total", nil)
	c.Stop(0) // logs the count held back since the last report
	logged, reported := 0, 0.0
	for _, l := range jsonLines(&buf) {
		switch l["msg"] {
		case "message refused":
			logged++
			if l["level"] != "INFO" || l["sender"] != "mallory" || l["recipient"] != "ghost" || l["transport"] != "tcp" ||
				l["class"] != "unknown_user" || !strings.Contains(fmt.Sprint(l["reason"]), "unknown user") {
				t.Fatalf("refusal line %v", l)
			}
			if n, ok := l["suppressed_before"].(float64); ok {
				reported += n
			}
		case "delivery log lines suppressed":
			reported += l["count"].(float64)
		}
	}
	if logged == 0 || logged >= flood {
		t.Fatalf("%d refusal lines for %d refusals: want some, rate-limited", logged, flood)
	}
	if float64(logged)+suppressedMetric != flood || reported != suppressedMetric {
		t.Fatalf("logged %d + suppressed %v != %d, or suppressed lines report %v", logged, suppressedMetric, flood, reported)
	}
}
