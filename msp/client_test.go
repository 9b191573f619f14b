package msp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

func TestClientTCP(t *testing.T) {
	t.Parallel()
	rec := &recorder{reply: func(w ResponseWriter, m *Message) {
		if m.Recipient == "nobody" {
			w.Nack("User not online")
			return
		}
		w.Ack("delivered to " + m.Recipient)
	}}
	addr, _ := serve(t, &Server{Handler: rec})
	ctx := context.Background()
	c := &Client{}
	tests := []struct {
		name string
		m    Message
		want Reply
	}{
		{"v2 acknowledged", Message{Recipient: "bob", Text: "hi", Sender: "alice"}, Reply{OK: true, Text: "delivered to bob"}},
		{"v2 refused", Message{Recipient: "nobody", Text: "hi", Sender: "alice"}, Reply{Text: "User not online"}},
		{"v1: no reply is owed", Message{Version: 'A', Recipient: "bob", Text: "hi"}, Reply{None: true}},
	}
	for _, tt := range tests {
		got, err := c.Send(ctx, addr, &tt.m)
		if err != nil || got != tt.want {
			t.Errorf("%s: Send = %+v, %v; want %+v", tt.name, got, err, tt.want)
		}
	}
	waitFor(t, 5*time.Second, "three messages", func() bool { return rec.done() == 3 })
	if m := rec.msg(2); m.Version != 'A' || m.Text != "hi" {
		t.Fatalf("v1 message arrived as %+v", m)
	}
}

func TestClientFillsInCookie(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	addr, _ := serve(t, &Server{Handler: rec})
	m := &Message{Recipient: "bob", Text: "hi"}
	if _, err := (&Client{}).Send(context.Background(), addr, m); err != nil {
		t.Fatal(err)
	}
	if m.Cookie == "" || len(m.Cookie) > MaxCookieLen {
		t.Fatalf("cookie %q", m.Cookie)
	}
	if got := rec.msg(0).Cookie; got != m.Cookie {
		t.Fatalf("server saw cookie %q, message holds %q", got, m.Cookie)
	}
}

func TestNewCookie(t *testing.T) {
	t.Parallel()
	seen := make(map[string]bool)
	for range 1000 {
		c := NewCookie()
		if len(c) != 29 || len(c) > MaxCookieLen {
			t.Fatalf("cookie %q has %d octets", c, len(c))
		}
		if err := checkPart("COOKIE", c, className); err != nil {
			t.Fatal(err)
		}
		if seen[c] {
			t.Fatalf("cookie %q repeated", c)
		}
		seen[c] = true
	}
}

// flakyUDP is a test server on a raw socket that ignores the first
// `drop` datagrams and answers later ones with answer(datagram). It records
// every datagram received.
type flakyUDP struct {
	pc      net.PacketConn
	mu      sync.Mutex // guards got
	got     [][]byte
	stopped chan struct{}
}

func startFlakyUDP(t *testing.T, drop int, answer func([]byte) [][]byte) *flakyUDP {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &flakyUDP{pc: pc, stopped: make(chan struct{})}
	go func() {
		defer close(f.stopped)
		buf := make([]byte, 2048)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			f.mu.Lock()
			f.got = append(f.got, bytes.Clone(buf[:n]))
			seen := len(f.got)
			f.mu.Unlock()
			if seen <= drop {
				continue
			}
			for _, a := range answer(buf[:n]) {
				pc.WriteTo(a, addr)
			}
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		<-f.stopped
	})
	return f
}

func (f *flakyUDP) datagrams() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.got
}

func TestClientUDPRetransmitsWithTheSameCookie(t *testing.T) {
	t.Parallel()
	srv := startFlakyUDP(t, 1, func([]byte) [][]byte { return [][]byte{[]byte("+delivered\x00")} })
	c := &Client{Network: "udp", Backoff: 20 * time.Millisecond}
	m := &Message{Recipient: "bob", Text: "hi"}
	r, err := c.Send(context.Background(), srv.pc.LocalAddr().String(), m)
	if err != nil || r != (Reply{OK: true, Text: "delivered"}) {
		t.Fatalf("Send = %+v, %v", r, err)
	}
	got := srv.datagrams()
	if len(got) != 2 {
		t.Fatalf("server got %d datagrams, want 2", len(got))
	}
	if !bytes.Equal(got[0], got[1]) {
		t.Fatalf("retransmission differs: %q vs %q", got[0], got[1])
	}
	first, err := Parse(got[0])
	if err != nil || first.Cookie == "" || first.Cookie != m.Cookie {
		t.Fatalf("datagram %+v, %v; want the message's cookie %q", first, err, m.Cookie)
	}
}

func TestClientUDPBackoffDoubles(t *testing.T) {
	t.Parallel()
	srv := startFlakyUDP(t, 1<<30, nil)
	const backoff = 40 * time.Millisecond
	c := &Client{Network: "udp", Backoff: backoff, Retries: 3}
	start := time.Now()
	_, err := c.Send(context.Background(), srv.pc.LocalAddr().String(), &Message{Recipient: "bob", Text: "hi"})
	if !errors.Is(err, ErrNoReply) {
		t.Fatalf("Send error = %v, want ErrNoReply", err)
	}
	// 40 + 80 + 160 + 320 ms of waiting.
	if d := time.Since(start); d < 600*time.Millisecond || d > 5*time.Second {
		t.Fatalf("gave up after %v, want about 600ms", d)
	}
	// The test server records on its own goroutine; Send has returned, so
	// nothing more is coming.
	waitFor(t, 5*time.Second, "four datagrams recorded", func() bool { return len(srv.datagrams()) >= 4 })
	if n := len(srv.datagrams()); n != 4 {
		t.Fatalf("sent %d datagrams, want 1 + 3 retries", n)
	}
}

func TestClientUDPv1WaitsForAMatchingEcho(t *testing.T) {
	t.Parallel()
	srv := startFlakyUDP(t, 0, func(b []byte) [][]byte {
		return [][]byte{[]byte("Anot\x00\x00the same\x00"), bytes.Clone(b)}
	})
	c := &Client{Network: "udp", Backoff: time.Second}
	r, err := c.Send(context.Background(), srv.pc.LocalAddr().String(), &Message{Version: 'A', Recipient: "bob", Text: "hi"})
	if err != nil || r != (Reply{OK: true}) {
		t.Fatalf("Send = %+v, %v", r, err)
	}
	if n := len(srv.datagrams()); n != 1 {
		t.Fatalf("sent %d datagrams, want 1", n)
	}
}

func TestClientUDPAgainstServer(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	_, addr := serve(t, &Server{Handler: rec})
	c := &Client{Network: "udp", Backoff: 30 * time.Millisecond, Retries: 1}
	ctx := context.Background()
	if r, err := c.Send(ctx, addr, &Message{Recipient: "bob", Text: "hi"}); err != nil || r != (Reply{OK: true, Text: "delivered"}) {
		t.Fatalf("v2 Send = %+v, %v", r, err)
	}
	if r, err := c.Send(ctx, addr, &Message{Version: 'A', Recipient: "bob", Text: "hi"}); err != nil || r != (Reply{OK: true}) {
		t.Fatalf("v1 Send = %+v, %v", r, err)
	}
	// "If the message was directed at any user ... no reply is sent."
	if _, err := c.Send(ctx, addr, &Message{Text: "to anyone"}); !errors.Is(err, ErrNoReply) {
		t.Fatalf("Send to any user: %v, want ErrNoReply", err)
	}
	waitFor(t, 5*time.Second, "three deliveries", func() bool { return rec.done() == 3 })
	if n := rec.count(); n != 3 {
		t.Fatalf("delivered %d, want 3 (the retransmission is filtered)", n)
	}
}

func TestClientSendHonoursContext(t *testing.T) {
	t.Parallel()
	addr, _ := serve(t, &Server{Handler: newGate()})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := (&Client{}).Send(ctx, addr, &Message{Recipient: "bob", Text: "hi"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send error = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Send returned after %v", d)
	}
}

func TestClientRefusesInvalidMessage(t *testing.T) {
	t.Parallel()
	_, err := (&Client{}).Send(context.Background(), "127.0.0.1:1", &Message{Recipient: "bob", Text: "\x1b[2J"})
	if !errors.Is(err, ErrBadOctet) {
		t.Fatalf("Send error = %v, want ErrBadOctet", err)
	}
	_, err = (&Client{Network: "sctp"}).Send(context.Background(), "127.0.0.1:1", &Message{Recipient: "bob"})
	if err == nil {
		t.Fatal("unknown network accepted")
	}
}

func TestConnPipelines(t *testing.T) {
	t.Parallel()
	rec := &recorder{reply: func(w ResponseWriter, m *Message) { w.Ack("for " + m.Recipient) }}
	addr, _ := serve(t, &Server{Handler: rec})
	conn, err := Dial(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			who := fmt.Sprintf("user%d", i)
			r, err := conn.Send(&Message{Recipient: who, Text: "hi"})
			if err != nil || r != (Reply{OK: true, Text: "for " + who}) {
				errs <- fmt.Errorf("Send for %s = %+v, %v", who, r, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if c := rec.count(); c != n {
		t.Fatalf("server handled %d, want %d", c, n)
	}
}

func TestConnAfterServerClosesIt(t *testing.T) {
	t.Parallel()
	// Long enough that a loaded machine (the race detector, other tests)
	// still delivers the first message before the idle close.
	addr, _ := serve(t, &Server{Handler: &recorder{}, IdleTimeout: time.Second})
	conn, err := (&Client{Timeout: 5 * time.Second}).Dial(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := conn.Send(&Message{Recipient: "bob", Text: "hi"}); err != nil || !r.OK {
		t.Fatalf("Send = %+v, %v", r, err)
	}
	waitFor(t, 5*time.Second, "idle close seen", func() bool { return conn.broken() != nil })
	if _, err := conn.Send(&Message{Recipient: "bob", Text: "again"}); !errors.Is(err, ErrConnClosed) {
		t.Fatalf("Send on a closed Conn: %v, want ErrConnClosed", err)
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	if err := conn.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if _, err := conn.Send(&Message{Version: 'A'}); !errors.Is(err, ErrVersion) {
		t.Fatalf("v1 over Conn: %v, want ErrVersion", err)
	}
}
