package ops

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/msprelay/msprelay/opsapi"
	"github.com/msprelay/msprelay/presence"
)

// Issue 10: "Bind to loopback by default when only a port is given".
func TestListenAddrBindsLoopbackForABarePort(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{":9180", "127.0.0.1:9180"},
		{"0.0.0.0:9180", "0.0.0.0:9180"},
		{"[::1]:0", "[::1]:0"},
		{"192.0.2.1:80", "192.0.2.1:80"},
	} {
		if got, err := ListenAddr(tc.in); err != nil || got != tc.want {
			t.Errorf("ListenAddr(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"9180", "", "host"} {
		if _, err := ListenAddr(bad); !errors.Is(err, ErrConfig) {
			t.Errorf("ListenAddr(%q) err = %v, want ErrConfig", bad, err)
		}
	}
}

func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func fetch(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Issue 10: "/readyz ... 200 or 503 with a JSON body saying which check
// fails"; /healthz says the process is alive; /metrics carries the Go
// runtime from the daemon's own registry.
func TestProbesAndMetrics(t *testing.T) {
	t.Parallel()
	var natsUp atomic.Bool
	natsUp.Store(true)
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "msprelay_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	s := start(t, Config{Registry: reg, Checks: []Check{
		{"msp", func(context.Context) error { return nil }},
		{"nats", func(context.Context) error {
			if !natsUp.Load() {
				return errors.New("not connected")
			}
			return nil
		}},
	}})
	base := "http://" + s.Addr()
	get := func(path string) (int, string) {
		req, _ := http.NewRequest("GET", base+path, nil)
		return fetch(t, req)
	}
	if code, body := get("/healthz"); code != 200 || !strings.Contains(body, `"ok"`) {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	code, body := get("/readyz")
	var r Readiness
	if err := json.Unmarshal([]byte(body), &r); code != 200 || err != nil || r.Status != "ready" || r.Checks["nats"] != "ok" {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	natsUp.Store(false)
	code, body = get("/readyz")
	r = Readiness{}
	if err := json.Unmarshal([]byte(body), &r); code != 503 || err != nil || r.Status != "unavailable" ||
		len(r.Failing) != 1 || r.Failing[0] != "nats" || r.Checks["nats"] != "not connected" || r.Checks["msp"] != "ok" {
		t.Fatalf("/readyz with nats down: %d %s", code, body)
	}
	code, body = get("/metrics")
	for _, want := range []string{"msprelay_test_total 3", "go_goroutines", "process_cpu_seconds_total"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q (HTTP %d)", want, code)
		}
	}
	// Without a Source (a relay) there is no API and no page.
	if code, _ := get("/api/v1/who"); code != 404 {
		t.Errorf("/api/v1/who without a source: HTTP %d, want 404", code)
	}
	if code, _ := get("/"); code != 404 {
		t.Errorf("/ without a source: HTTP %d, want 404", code)
	}
}

// Issue 10: "optional basic auth or token for the API and page"; the
// probes and /metrics stay open. A token file that breaks keeps the old
// token, so a botched edit cannot open the endpoint.
func TestTokenGuardsAPIAndPageNotProbes(t *testing.T) {
	t.Parallel()
	f := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(f, []byte("tok-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := start(t, Config{TokenFile: f, Source: emptySource{}})
	base := "http://" + s.Addr()
	try := func(path string, set func(*http.Request)) int {
		req, _ := http.NewRequest("GET", base+path, nil)
		if set != nil {
			set(req)
		}
		code, _ := fetch(t, req)
		return code
	}
	bearer := func(tok string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
	}
	basic := func(pw string) func(*http.Request) { return func(r *http.Request) { r.SetBasicAuth("anyone", pw) } }
	tests := []struct {
		name string
		path string
		set  func(*http.Request)
		want int
	}{
		{"API without token", "/api/v1/who", nil, 401},
		{"API with wrong bearer", "/api/v1/who", bearer("nope"), 401},
		{"API with bearer", "/api/v1/who", bearer("tok-1"), 200},
		{"page with basic auth", "/", basic("tok-1"), 200},
		{"page with wrong basic auth", "/", basic("tok"), 401},
		{"events without token", "/api/v1/events", nil, 401},
		{"healthz open", "/healthz", nil, 200},
		{"readyz open", "/readyz", nil, 200},
		{"metrics open", "/metrics", nil, 200},
	}
	for _, tc := range tests {
		if got := try(tc.path, tc.set); got != tc.want {
			t.Errorf("%s: HTTP %d, want %d", tc.name, got, tc.want)
		}
	}
	os.WriteFile(f, []byte("tok-2\n"), 0o600)
	if changed, err := s.Reload(); err != nil || !changed {
		t.Fatalf("reload: %v %v", changed, err)
	}
	if try("/api/v1/who", bearer("tok-1")) != 401 || try("/api/v1/who", bearer("tok-2")) != 200 {
		t.Fatal("token not replaced by reload")
	}
	os.WriteFile(f, []byte("\n"), 0o600)
	if _, err := s.Reload(); err == nil {
		t.Fatal("empty token file accepted")
	}
	if try("/api/v1/who", bearer("tok-2")) != 200 || try("/api/v1/who", nil) != 401 {
		t.Fatal("a failed reload changed the token")
	}
}

// emptySource is a cluster with nobody signed in and no other node: the
// token test needs the API routes, not data.
type emptySource struct{}

func (emptySource) Who() []opsapi.WhoEntry                    { return nil }
func (emptySource) Nodes(context.Context) []opsapi.NodeStatus { return nil }
func (emptySource) User(context.Context, string) (opsapi.UserInfo, error) {
	return opsapi.UserInfo{}, ErrNotFound
}
func (emptySource) Rates() opsapi.Rates { return opsapi.Rates{} }
func (emptySource) Self() string        { return "solo" }
func (emptySource) Changes() (<-chan presence.Event, func()) {
	return make(chan presence.Event), func() {}
}

// The status page's rates: counts fall out of the window as time passes.
func TestRateWindowForgetsOldCounts(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_000_000, 0)
	w := &RateWindow{now: func() time.Time { return now }}
	w.Add("delivered")
	w.Add("delivered")
	w.Add("refused")
	now = now.Add(90 * time.Second)
	w.Add("queued")
	r := w.Rates()
	if r.LastMinute["delivered"] != 0 || r.LastMinute["queued"] != 1 || r.LastFiveMinutes["delivered"] != 2 || r.LastFiveMinutes["refused"] != 1 {
		t.Fatalf("rates %+v", r)
	}
	now = now.Add(5 * time.Minute)
	if r := w.Rates(); len(r.LastFiveMinutes) != 0 {
		t.Fatalf("after 5 minutes: %+v", r)
	}
}
