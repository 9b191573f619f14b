package node_test

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/msprelay/msprelay/internal/testcluster"
)

// The Grafana dashboard in deploy/ is "built on the metrics above": every
// node metric it queries must be one a node exports (relay metrics are
// checked by the relay's own test of its names).
func TestGrafanaDashboardQueriesExistingMetrics(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../deploy/grafana/msprelay.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard is not JSON: %v", err)
	}
	c := testcluster.Start(t, 1, testcluster.Options{Configure: withHTTP})
	scrape := get(t, "http://"+c.Node(0).HTTPAddr()+"/metrics", 200)
	name := regexp.MustCompile(`\b(msprelay_[a-z_]+|go_[a-z_]+|process_[a-z_]+)`)
	queried := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, m := range name.FindAllString(tg.Expr, -1) {
				if strings.HasPrefix(m, "msprelay_relay_") {
					continue
				}
				queried++
				if !strings.Contains(scrape, "\n"+m) {
					t.Errorf("panel %q queries %s, which a node does not export", p.Title, m)
				}
			}
		}
	}
	if queried < 10 {
		t.Fatalf("only %d node metrics queried", queried)
	}
}
