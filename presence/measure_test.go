package presence

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/msprelay/msprelay/internal/waitfor"
)

// TestMeasureConvergence reports how fast a 10-node cluster converges. It
// is a measurement, not a timed assertion, and runs only when
// PRESENCE_MEASURE is set (it takes a minute with the lan profile):
//
//	PRESENCE_MEASURE=1 go test -run MeasureConvergence -v ./presence/
//
// For each profile it times 20 sign-ins until every node has delivered the
// Upsert event, then a graceful leave and a crash until every remaining
// node has delivered the Remove.
func TestMeasureConvergence(t *testing.T) {
	if os.Getenv("PRESENCE_MEASURE") == "" {
		t.Skip("set PRESENCE_MEASURE=1 to measure convergence")
	}
	profiles := []struct {
		name string
		tune func(*memberlist.Config)
	}{
		{"local", nil},
		{"lan", nil},
		{"local+test-timers", fastTune},
	}
	for _, p := range profiles {
		t.Run(p.name, func(t *testing.T) {
			profile, _, _ := strings.Cut(p.name, "+")
			measureProfile(t, p.name, profile, p.tune)
		})
	}
}

// eventClock records when each node first delivered each event.
type eventClock struct {
	mu   sync.Mutex
	seen map[string]map[string]time.Time // "+user" or "-user" -> node -> time
}

func (c *eventClock) watch(t *testing.T, n testNode) {
	sub := n.Subscribe()
	t.Cleanup(sub.Cancel)
	go func() {
		for ev := range sub.C {
			k := "+" + ev.Entry.User
			if ev.Type == EventRemove {
				k = "-" + ev.Entry.User
			}
			now := time.Now()
			c.mu.Lock()
			if c.seen[k] == nil {
				c.seen[k] = map[string]time.Time{}
			}
			if _, ok := c.seen[k][n.Name()]; !ok {
				c.seen[k][n.Name()] = now
			}
			c.mu.Unlock()
		}
	}()
}

// wait returns how long after start the last of nodes delivered event k.
func (c *eventClock) wait(t *testing.T, k string, nodes []testNode, start time.Time) time.Duration {
	t.Helper()
	var last time.Time
	waitfor.True(t, 60*time.Second, k+" on every node", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		last = time.Time{}
		for _, n := range nodes {
			at, ok := c.seen[k][n.Name()]
			if !ok {
				return false
			}
			if at.After(last) {
				last = at
			}
		}
		return true
	})
	return last.Sub(start)
}

func measureProfile(t *testing.T, label, profile string, tune func(*memberlist.Config)) {
	nodes := startCluster(t, 10, func(c *Config) {
		c.Gossip.Profile = profile
		c.Gossip.Tune = tune
	})
	clock := &eventClock{seen: map[string]map[string]time.Time{}}
	for _, n := range nodes {
		clock.watch(t, n)
	}
	var lat []time.Duration
	for i := range 20 {
		user := fmt.Sprintf("m%d", i)
		start := time.Now()
		if err := nodes[i%10].Upsert(Entry{User: user, Term: "tty", State: Online}); err != nil {
			t.Fatal(err)
		}
		lat = append(lat, clock.wait(t, "+"+user, nodes, start))
	}
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	t.Logf("%s: sign-in visible on all 10 nodes: p50 %v p99 %v max %v (n=%d)", label, p50.Round(time.Millisecond),
		p99.Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond), len(lat))

	start := time.Now()
	if err := nodes[9].Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: graceful leave, principals removed on all 9 others after %v", label,
		clock.wait(t, "-m9", nodes[:9], start).Round(time.Millisecond))

	start = time.Now()
	nodes[8].crash(t)
	t.Logf("%s: crash, principals removed on all 8 others after %v", label,
		clock.wait(t, "-m8", nodes[:8], start).Round(time.Millisecond))
}
