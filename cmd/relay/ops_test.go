package main

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/msprelay/msprelay/broker"
)

// Issue 10: the relay serves /metrics and the probes with --http,
// alongside NATS's own --monitor; /readyz fails once nats-server stops.
func TestRelayHTTPEndpoint(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.DiscardHandler)
	b, err := broker.New(broker.Config{Name: "r1", Listen: "127.0.0.1:0", JetStream: true, DataDir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	web, err := newOps("127.0.0.1:0", "", b, true, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := web.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { web.Close() })
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + web.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("/readyz"); code != 503 {
		t.Fatalf("/readyz before start: %d %s", code, body)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	if code, body := get("/readyz"); code != 200 {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	code, body := get("/metrics")
	for _, want := range []string{"msprelay_relay_connections ", "msprelay_relay_in_messages_total ", `msprelay_relay_build_info{`, "go_goroutines "} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	b.Close()
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, `"nats"`) {
		t.Fatalf("/readyz after stop: %d %s", code, body)
	}
}
