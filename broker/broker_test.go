package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/waitfor"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// An embedded node broker has no TCP listener, runs JetStream in its data
// dir, and keeps a stored message across a restart.
func TestEmbeddedJetStreamInProcess(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := Config{Name: "node-a", JetStream: true, DataDir: dir}
	b := started(t, cfg)
	if got := b.ClientURL(); got != "" {
		t.Errorf("ClientURL() = %q, want \"\" without a listener", got)
	}
	if got := b.Addrs(); got != (Addrs{}) {
		t.Errorf("Addrs() = %+v, want zero without listeners", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js, err := jetstream.New(connect(t, b))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "MAILBOX", Subjects: []string{"msp.mailbox.>"}, Retention: jetstream.WorkQueuePolicy,
	}); err != nil {
		t.Fatalf("CreateStream: %v", err)
	}
	for i, wantDup := range []bool{false, true} {
		ack, err := js.Publish(ctx, "msp.mailbox.alice", []byte("hello alice"), jetstream.WithMsgID("bob/pts1/cookie1"))
		if err != nil {
			t.Fatalf("Publish #%d: %v", i, err)
		}
		if ack.Sequence != 1 || ack.Duplicate != wantDup {
			t.Fatalf("Publish #%d ack = seq %d dup %v, want seq 1 dup %v", i, ack.Sequence, ack.Duplicate, wantDup)
		}
	}
	b.Close()

	// Same store, new server: the message must still be there.
	b2 := started(t, cfg)
	js2, err := jetstream.New(connect(t, b2))
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js2.CreateOrUpdateConsumer(ctx, "MAILBOX", jetstream.ConsumerConfig{
		Durable: "alice", FilterSubject: "msp.mailbox.alice", AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatalf("CreateOrUpdateConsumer: %v", err)
	}
	batch, err := cons.Fetch(2, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	var got []string
	for m := range batch.Messages() {
		got = append(got, m.Subject()+" "+string(m.Data())+" "+m.Headers().Get(jetstream.MsgIDHeader))
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatalf("ack: %v", err)
		}
	}
	if want := "msp.mailbox.alice hello alice bob/pts1/cookie1"; len(got) != 1 || got[0] != want {
		t.Fatalf("fetched %q, want exactly [%q]", got, want)
	}
}

// Start reports the bound ports and a dialable URL; a wildcard listen
// address is reached through loopback.
func TestStartReportsAddresses(t *testing.T) {
	t.Parallel()
	b := started(t, Config{
		Name: "addrs", Listen: ":0", Insecure: true, Cluster: "127.0.0.1:0", ClusterName: "c",
		Leafnode: "127.0.0.1:0", Monitor: "127.0.0.1:0",
	})
	a := b.Addrs()
	if a.Gateway != "" {
		t.Errorf("gateway address %q without a gateway", a.Gateway)
	}
	for what, addr := range map[string]string{
		"client": a.Client, "cluster": a.Cluster, "leafnode": a.Leafnode, "monitor": a.Monitor,
	} {
		_, port, err := net.SplitHostPort(addr)
		if err != nil || port == "0" {
			t.Errorf("%s address %q: want a bound host:port", what, addr)
		}
	}
	_, port, _ := net.SplitHostPort(a.Client)
	if want := "nats://127.0.0.1:" + port; b.ClientURL() != want {
		t.Errorf("ClientURL() = %q, want %q", b.ClientURL(), want)
	}
	nc, err := dialTCP(t, b.ClientURL())
	if err != nil {
		t.Fatalf("dial %s: %v", b.ClientURL(), err)
	}
	if got := nc.ConnectedServerName(); got != "addrs" {
		t.Errorf("server name = %q, want addrs", got)
	}
}

func TestLifecycleErrors(t *testing.T) {
	t.Parallel()
	b, err := New(Config{Name: "life"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Connect(); !errors.Is(err, ErrNotStarted) {
		t.Errorf("Connect before Start: %v, want ErrNotStarted", err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); !errors.Is(err, ErrStarted) {
		t.Errorf("second Start: %v, want ErrStarted", err)
	}
	for i := range 3 {
		if err := b.Close(); err != nil {
			t.Errorf("Close #%d: %v", i, err)
		}
	}
	if err := b.Start(); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close: %v, want ErrClosed", err)
	}
	if _, err := b.Connect(); !errors.Is(err, ErrClosed) {
		t.Errorf("Connect after Close: %v, want ErrClosed", err)
	}
	if err := b.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close: %v, want ErrClosed", err)
	}

	// Closing a broker that never started must not hang.
	never, err := New(Config{Name: "never"})
	if err != nil {
		t.Fatal(err)
	}
	never.Close()
}

// A port in use is a fatal nats-server error; Start must report it at
// once rather than after ReadyTimeout.
func TestStartFailsFastOnPortInUse(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	b, err := New(Config{Name: "busy", Listen: l.Addr().String(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	begin := time.Now()
	err = b.Start()
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Start on a busy port: %v, want address already in use", err)
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("Start took %s to fail, want < 2s (ReadyTimeout is %s)", took, DefaultReadyTimeout)
	}
	if _, err := b.Connect(); !errors.Is(err, ErrClosed) {
		t.Errorf("Connect after failed Start: %v, want ErrClosed", err)
	}
}

func TestRunStopsOnContextAndClose(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		stop func(context.CancelFunc, *Broker)
	}{
		{"context cancelled", func(cancel context.CancelFunc, _ *Broker) { cancel() }},
		{"Close called", func(_ context.CancelFunc, b *Broker) { b.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, err := New(Config{Name: "run", Listen: "127.0.0.1:0"})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- b.Run(ctx) }()
			waitFor(t, 5*time.Second, "Run to start the server", func() bool { return b.ClientURL() != "" })
			tc.stop(cancel, b)
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run = %v, want nil", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return within 5s")
			}
			if b.Server().Running() {
				t.Error("server still running after Run returned")
			}
		})
	}
}

// Run reports a server that stopped without Close, so a relay process
// exits non-zero instead of idling without a server.
func TestRunReportsUnexpectedStop(t *testing.T) {
	t.Parallel()
	b, err := New(Config{Name: "unexpected"})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Run(context.Background()) }()
	b.Server().Shutdown()
	select {
	case err := <-done:
		if !errors.Is(err, ErrStopped) {
			t.Errorf("Run = %v, want ErrStopped", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s")
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		cfg    Config
		client []nats.Option
		wantOK bool
	}{
		{"right password accepted", Config{User: "relay", Password: "s3cret"}, []nats.Option{nats.UserInfo("relay", "s3cret")}, true},
		{"wrong password refused", Config{User: "relay", Password: "s3cret"}, []nats.Option{nats.UserInfo("relay", "guess")}, false},
		{"no credentials refused", Config{User: "relay", Password: "s3cret"}, nil, false},
		{"right token accepted", Config{Token: "t0ken"}, []nats.Option{nats.Token("t0ken")}, true},
		{"wrong token refused", Config{Token: "t0ken"}, []nats.Option{nats.Token("nope")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.cfg.Name, tc.cfg.Listen = "auth", "127.0.0.1:0"
			b := started(t, tc.cfg)
			_, err := dialTCP(t, b.ClientURL(), tc.client...)
			switch {
			case tc.wantOK && err != nil:
				t.Fatalf("connect: %v, want success", err)
			case !tc.wantOK && !errors.Is(err, nats.ErrAuthorization):
				t.Fatalf("connect: %v, want %v", err, nats.ErrAuthorization)
			}
			// In-process connections carry the configured credentials.
			nc := connect(t, b)
			if err := nc.Flush(); err != nil {
				t.Fatalf("in-process flush: %v", err)
			}
		})
	}
}

func TestTLSClientPort(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	rec := newRecorder(slog.LevelWarn)
	b := started(t, Config{
		Name: "tls", Listen: "127.0.0.1:0", CertFile: p.ServerCert, KeyFile: p.ServerKey, CAFile: p.CA,
		Logger: slog.New(rec),
	})
	url := b.ClientURL()
	if !strings.HasPrefix(url, "tls://127.0.0.1:") {
		t.Fatalf("ClientURL() = %q, want tls://127.0.0.1:port", url)
	}
	for _, tc := range []struct {
		name      string
		opts      []nats.Option
		clientErr string // substring of the client's error; "" means success
		serverLog string // substring of the server's log line about the refusal
	}{
		{"trusted CA and client cert accepted", []nats.Option{nats.RootCAs(p.CA), nats.ClientCert(p.ClientCert, p.ClientKey)}, "", ""},
		{"unknown CA refused by client", []nats.Option{nats.ClientCert(p.ClientCert, p.ClientKey)},
			"certificate signed by unknown authority", "TLS handshake error: remote error: tls: bad certificate"},
		// The client's error depends on timing (alert or broken pipe); the
		// server's log line does not.
		{"missing client cert refused by server", []nats.Option{nats.RootCAs(p.CA)},
			"", "TLS handshake error: tls: client didn't provide a certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := dialTCP(t, url, tc.opts...)
			if tc.serverLog == "" {
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				if !nc.TLSRequired() {
					t.Error("connection not using TLS")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.clientErr) {
				t.Fatalf("connect: %v, want error containing %q", err, tc.clientErr)
			}
			waitFor(t, 5*time.Second, "server log "+tc.serverLog, func() bool { return len(rec.matching(tc.serverLog)) == 1 })
		})
	}
	// In-process connections bypass TLS: nothing leaves the process.
	if err := connect(t, b).Flush(); err != nil {
		t.Fatalf("in-process flush: %v", err)
	}
}

// Fields set in Config override the config file; unset ones keep it.
func TestConfigFileUnderFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "relay.conf")
	conf := fmt.Sprintf("server_name: from-file\nport: 1\nmax_payload: 4096\njetstream { store_dir: %q }\n", filepath.Join(dir, "js"))
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, cfgName, wantName string
	}{
		{"file name kept when Name empty", "", "from-file"},
		{"Name overrides file", "from-flag", "from-flag"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := started(t, Config{ConfigFile: file, Name: tc.cfgName, Listen: "127.0.0.1:0"})
			nc, err := dialTCP(t, b.ClientURL())
			if err != nil {
				t.Fatalf("dial %s (listen must override port 1): %v", b.ClientURL(), err)
			}
			if got := nc.ConnectedServerName(); got != tc.wantName {
				t.Errorf("server name = %q, want %q", got, tc.wantName)
			}
			if got := nc.MaxPayload(); got != 4096 {
				t.Errorf("max payload = %d, want 4096 from the file", got)
			}
			if !b.Server().JetStreamEnabled() {
				t.Error("JetStream off, want on from the file")
			}
			b.Close() // both subtests use the file's store_dir
		})
	}
}

// nats-server's lines reach the slog logger at mapped levels, with the
// server attribute (the component is the owner's to name, see
// docs/ARCHITECTURE.md, Logging), and debug lines only when enabled.
func TestLogsBridgedToSlog(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		level     slog.Level
		wantDebug bool
	}{
		{slog.LevelInfo, false},
		{slog.LevelDebug, true},
	} {
		rec := newRecorder(tc.level)
		b := started(t, Config{Name: "logs", Listen: "127.0.0.1:0", Logger: slog.New(rec)})
		b.Close()
		for _, want := range [][]string{
			{"INFO Server is ready", "server=logs"},
			{"INFO nats-server ready", "client=nats://127.0.0.1:"},
			{"INFO Server Exiting.."},
		} {
			if got := rec.matching(want...); len(got) != 1 {
				t.Errorf("level %s: lines matching %q: %q, want exactly one", tc.level, want, got)
			}
		}
		if got := len(rec.matching("DEBUG ")) > 0; got != tc.wantDebug {
			t.Errorf("level %s: debug lines present = %v, want %v", tc.level, got, tc.wantDebug)
		}
	}
}

// ourGoroutines lists goroutines running nats-server, nats.go or broker
// code outside test functions.
func ourGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "testing.tRunner") {
			continue
		}
		if strings.Contains(g, "nats-io/nats-server/") || strings.Contains(g, "nats-io/nats.go") || strings.Contains(g, "msprelay/broker.") {
			out = append(out, g)
		}
	}
	return out
}

// Not parallel: it counts goroutines process-wide. Parallel tests only
// resume after all sequential ones finish, so none run alongside it.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	// Servers of earlier tests (or of the previous -count round) may still
	// be finishing their shutdown: start from a quiet process.
	waitNoGoroutines(t, "before the test")
	b := started(t, Config{
		Name: "leak", Listen: "127.0.0.1:0", Leafnode: "127.0.0.1:0", Monitor: "127.0.0.1:0",
		JetStream: true, DataDir: t.TempDir(),
	})
	nc := connect(t, b)
	serve(t, nc, "ping", "pong")
	if got := requestEventually(t, nc, "ping", "1"); got != "pong:1" {
		t.Fatalf("reply %q, want pong:1", got)
	}
	if len(ourGoroutines()) == 0 {
		t.Fatal("no nats goroutines seen while running: the filter is broken")
	}
	nc.Close()
	b.Close()
	b.Close()
	waitNoGoroutines(t, "after Close")
}

// waitNoGoroutines fails the test if ourGoroutines does not drain within 5s.
func waitNoGoroutines(t *testing.T, when string) {
	t.Helper()
	waitfor.NoError(t, 5*time.Second, "our goroutines to end "+when, func() error {
		if left := ourGoroutines(); len(left) > 0 {
			return fmt.Errorf("%d left:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		return nil
	})
}
