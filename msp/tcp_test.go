package msp

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestTCPConformance speaks raw octets to the server, as netcat would, and
// checks each reply rule of RFC 1159 and RFC 1312 over TCP.
func TestTCPConformance(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		strip   bool // Server.StripControl
		require bool // Server.RequireSender
		reply   func(w ResponseWriter, m *Message)
		send    []string // written one after another on one connection
		replies []string // expected, in order
		closed  bool     // the server closes the connection after the replies
		handled []Message
	}{
		{
			name:    "v2: the server replies with a single character indicating positive ('+') acknowledgment, an optional message of explanation, terminated with a null",
			send:    []string{"Bbob\x00\x00hi\x00alice\x00pts/1\x00c1\x00\x00"},
			replies: []string{"+delivered\x00"},
			handled: []Message{{Version: 'B', Recipient: "bob", Text: "hi", Sender: "alice", SenderTerm: "pts/1", Cookie: "c1"}},
		},
		{
			name:    "v2: negative ('-') acknowledgment",
			reply:   func(w ResponseWriter, m *Message) { w.Nack("User not online") },
			send:    []string{"Bbob\x00\x00hi\x00alice\x00\x00c1\x00\x00"},
			replies: []string{"-User not online\x00"},
			handled: []Message{{Version: 'B', Recipient: "bob", Text: "hi", Sender: "alice", Cookie: "c1"}},
		},
		{
			name:    "v2: multiple messages can be sent over the same channel, one reply each, in order",
			reply:   func(w ResponseWriter, m *Message) { w.Ack("to " + m.Recipient) },
			send:    []string{"Ba\x00\x001\x00\x00\x00\x00\x00", "Bb\x00\x002\x00\x00\x00\x00\x00", "Bc\x00\x00" + "3\x00\x00\x00\x00\x00"},
			replies: []string{"+to a\x00", "+to b\x00", "+to c\x00"},
			handled: []Message{{Version: 'B', Recipient: "a", Text: "1"}, {Version: 'B', Recipient: "b", Text: "2"}, {Version: 'B', Recipient: "c", Text: "3"}},
		},
		{
			name:    "v2: pipelined messages in one write",
			reply:   func(w ResponseWriter, m *Message) { w.Ack(m.Text) },
			send:    []string{"Ba\x00\x001\x00\x00\x00\x00\x00Bb\x00\x002\x00\x00\x00\x00\x00"},
			replies: []string{"+1\x00", "+2\x00"},
			handled: []Message{{Version: 'B', Recipient: "a", Text: "1"}, {Version: 'B', Recipient: "b", Text: "2"}},
		},
		{
			name:    "v2: a message split across writes",
			send:    []string{"Bbo", "b\x00\x00h", "i\x00\x00\x00\x00", "\x00"},
			replies: []string{"+delivered\x00"},
			handled: []Message{{Version: 'B', Recipient: "bob", Text: "hi"}},
		},
		{
			name:    "v2: a handler that gives no reply gets a negative one",
			reply:   func(w ResponseWriter, m *Message) {},
			send:    []string{"Bbob\x00\x00hi\x00\x00\x00\x00\x00"},
			replies: []string{"-message not handled\x00"},
			handled: []Message{{Version: 'B', Recipient: "bob", Text: "hi"}},
		},
		{
			name:    "v2: only the first reply counts",
			reply:   func(w ResponseWriter, m *Message) { w.Ack("first"); w.Nack("second") },
			send:    []string{"Bbob\x00\x00hi\x00\x00\x00\x00\x00Bbob\x00\x00hi\x00\x00\x00\x00\x00"},
			replies: []string{"+first\x00", "+first\x00"},
			handled: []Message{{Version: 'B', Recipient: "bob", Text: "hi"}, {Version: 'B', Recipient: "bob", Text: "hi"}},
		},
		{
			name:    "v2: the reply explanation holds no NUL or control characters",
			reply:   func(w ResponseWriter, m *Message) { w.Ack("ok\x00\x1b[31m\r\nred\x9b") },
			send:    []string{"Bbob\x00\x00hi\x00\x00\x00\x00\x00"},
			replies: []string{"+ok[31mred\x00"},
			handled: []Message{{Version: 'B', Recipient: "bob", Text: "hi"}},
		},
		{
			name:    "v2: the reply explanation is bounded",
			reply:   func(w ResponseWriter, m *Message) { w.Ack(strings.Repeat("y", 5000)) },
			send:    []string{"Bbob\x00\x00hi\x00\x00\x00\x00\x00"},
			replies: []string{"+" + strings.Repeat("y", MaxReplyText) + "\x00"},
			handled: []Message{{Version: 'B', Recipient: "bob", Text: "hi"}},
		},
		{
			name:    "accept LF-only line ends; deliver CR LF",
			send:    []string{"Bbob\x00\x00line 1\nline 2\n\x00\x00\x00\x00\x00"},
			replies: []string{"+delivered\x00"},
			handled: []Message{{Version: 'B', Recipient: "bob", Text: "line 1\r\nline 2\r\n"}},
		},
		{
			name:    "eight-bit ISO 8859-1 text is kept",
			send:    []string{"Bj\xf6rg\x00\x00gr\xfc\xdfe\x00\xc5sa\x00\x00\x00\x00"},
			replies: []string{"+delivered\x00"},
			handled: []Message{{Version: 'B', Recipient: "j\xf6rg", Text: "gr\xfc\xdfe", Sender: "\xc5sa"}},
		},
		{
			name:    "the server must check each incoming message for illegal codes: '-' with the reason, then close",
			send:    []string{"Bbob\x00\x00\x1b]0;pwned\a\x00\x00\x00\x00\x00"},
			replies: []string{"-illegal octet: MESSAGE has octet 0x1B at offset 0\x00"},
			closed:  true,
		},
		{
			name:    "C1 control (CSI) in SENDER-TERM is refused",
			send:    []string{"Bbob\x00\x00hi\x00alice\x00\x9b1m\x00\x00\x00"},
			replies: []string{"-illegal octet: SENDER-TERM has octet 0x9B at offset 0\x00"},
			closed:  true,
		},
		{
			name:    "StripControl removes the offending octets instead",
			strip:   true,
			send:    []string{"Bbob\x00\x00\x1b[1mhi\x9b\x00al\x07ice\x00\x00\x00\x00"},
			replies: []string{"+delivered\x00"},
			handled: []Message{{Version: 'B', Recipient: "bob", Text: "[1mhi", Sender: "alice"}},
		},
		{
			name:    "unknown revision octet: '-' then close",
			send:    []string{"Xbob\x00\x00hi\x00"},
			replies: []string{"-unknown protocol revision: first octet 0x58, want 'A' or 'B'\x00"},
			closed:  true,
		},
		{
			name:    "a message of 512 octets or more: '-' then close",
			send:    []string{"Bbob\x00\x00" + strings.Repeat("z", 600)},
			replies: []string{"-message is 512 octets or longer: no complete message in 511 octets\x00"},
			closed:  true,
		},
		{
			name:    "cookie longer than 32 octets: '-' then close",
			send:    []string{"Bbob\x00\x00hi\x00\x00\x00" + strings.Repeat("c", 40) + "\x00\x00"},
			replies: []string{"-cookie longer than 32 octets: 40 octets\x00"},
			closed:  true,
		},
		{
			name:    "SENDER should not be empty: with RequireSender, '-' and the connection stays open",
			require: true,
			send:    []string{"Bbob\x00\x00hi\x00\x00\x00\x00\x00", "Bbob\x00\x00hi\x00alice\x00\x00\x00\x00"},
			replies: []string{"-empty sender: SENDER is required here\x00", "+delivered\x00"},
			handled: []Message{{Version: 'B', Recipient: "bob", Text: "hi", Sender: "alice"}},
		},
		{
			name:    "a handler panic is contained: '-' then close",
			reply:   func(w ResponseWriter, m *Message) { panic("boom") },
			send:    []string{"Bbob\x00\x00hi\x00\x00\x00\x00\x00"},
			replies: []string{"-message not handled\x00"},
			closed:  true,
			handled: []Message{{Version: 'B', Recipient: "bob", Text: "hi"}},
		},
		{
			name:    "v1: once a connection is established a short message is sent by the client; nothing is sent back",
			send:    []string{"Abob\x00tty1\x00hello\x00"},
			closed:  true,
			handled: []Message{{Version: 'A', Recipient: "bob", RecipTerm: "tty1", Text: "hello"}},
		},
		{
			name:    "v1: the handler's Ack sends nothing; data after the message is discarded",
			reply:   func(w ResponseWriter, m *Message) { w.Ack("ignored") },
			send:    []string{"Abob\x00\x00hi\x00Abob\x00\x00again\x00"},
			closed:  true,
			handled: []Message{{Version: 'A', Recipient: "bob", Text: "hi"}},
		},
		{
			name:   "v1: an invalid message gets no reply either",
			send:   []string{"Abob\x00\x00\x1bhi\x00"},
			closed: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{reply: tt.reply}
			s := &Server{Handler: rec, StripControl: tt.strip, RequireSender: tt.require}
			addr, _ := serve(t, s)
			nc := dialTCP(t, addr)
			rr := newReplyReader(t, nc)
			for _, b := range tt.send {
				write(t, nc, []byte(b))
			}
			for i, want := range tt.replies {
				if got := rr.next(); got != want {
					t.Fatalf("reply %d = %q, want %q", i, got, want)
				}
			}
			if tt.closed {
				rr.expectEOF(5 * time.Second)
			}
			waitFor(t, 5*time.Second, "handler calls", func() bool { return rec.done() >= len(tt.handled) })
			if got := rec.count(); got != len(tt.handled) {
				t.Fatalf("handler called %d times, want %d", got, len(tt.handled))
			}
			// Pipelined messages for different recipients may reach the
			// handler in any order; those for one recipient come in order.
			got := make([]Message, rec.count())
			for i := range got {
				got[i] = *rec.msg(i)
				if rec.networks[i] != "tcp" {
					t.Errorf("Network() = %q, want tcp", rec.networks[i])
				}
			}
			if g, w := byRecipient(got), byRecipient(tt.handled); !reflect.DeepEqual(g, w) {
				t.Errorf("handled %+v, want %+v", got, tt.handled)
			}
		})
	}
}

func TestTCPResponseWriterAddrs(t *testing.T) {
	t.Parallel()
	type addrs struct{ local, remote string }
	got := make(chan addrs, 1)
	s := &Server{Handler: HandlerFunc(func(w ResponseWriter, m *Message) {
		got <- addrs{w.LocalAddr().String(), w.RemoteAddr().String()}
		if err := w.Ack("a"); err != nil {
			t.Errorf("Ack: %v", err)
		}
		if err := w.Nack("b"); !errors.Is(err, ErrReplied) {
			t.Errorf("second reply error = %v, want ErrReplied", err)
		}
		if w.Context() == nil || w.Context().Err() != nil {
			t.Errorf("handler context is %v", w.Context())
		}
	})}
	addr, _ := serve(t, s)
	nc := dialTCP(t, addr)
	write(t, nc, []byte("Bbob\x00\x00hi\x00\x00\x00\x00\x00"))
	if r := newReplyReader(t, nc).next(); r != "+a\x00" {
		t.Fatalf("reply %q", r)
	}
	a := <-got
	if a.local != addr || a.remote != nc.LocalAddr().String() {
		t.Fatalf("LocalAddr %s RemoteAddr %s; want %s and %s", a.local, a.remote, addr, nc.LocalAddr())
	}
}

func TestTCPReplyAfterHandlerReturnsIsRefused(t *testing.T) {
	t.Parallel()
	kept := make(chan ResponseWriter, 1)
	s := &Server{Handler: HandlerFunc(func(w ResponseWriter, m *Message) { kept <- w })}
	addr, _ := serve(t, s)
	nc := dialTCP(t, addr)
	write(t, nc, []byte("Bbob\x00\x00hi\x00\x00\x00\x00\x00"))
	if r := newReplyReader(t, nc).next(); r != "-message not handled\x00" {
		t.Fatalf("reply %q", r)
	}
	if err := (<-kept).Ack("late"); !errors.Is(err, ErrHandlerReturned) {
		t.Fatalf("late Ack error = %v, want ErrHandlerReturned", err)
	}
}

// IdleTimeout closes a TCP connection idle that long after its last reply.
// The margins hold on a loaded machine: the server's idle time starts after
// it has read the message and written the reply, so it cannot end earlier
// than IdleTimeout after the client started writing (a lower bound that
// scheduling delays can only lengthen), and the upper bound is generous.
func TestTCPIdleTimeout(t *testing.T) {
	t.Parallel()
	const idle = 300 * time.Millisecond
	s := &Server{Handler: &recorder{}, IdleTimeout: idle}
	addr, _ := serve(t, s)
	nc := dialTCP(t, addr)
	rr := newReplyReader(t, nc)
	start := time.Now()
	write(t, nc, []byte("Bbob\x00\x00hi\x00\x00\x00\x00\x00"))
	if r := rr.next(); r != "+delivered\x00" {
		t.Fatalf("reply %q", r)
	}
	rr.expectEOF(idle + 10*time.Second)
	if d := time.Since(start); d < idle {
		t.Fatalf("idle connection closed %v after the message was sent, before IdleTimeout (%v)", d, idle)
	}
}

func TestTCPReadTimeoutBoundsAWholeMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		drip bool
	}{
		{"a half-sent message is dropped after ReadTimeout", false},
		{"the whole message must arrive within ReadTimeout, however it trickles", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{}
			s := &Server{Handler: rec, ReadTimeout: 300 * time.Millisecond, IdleTimeout: time.Minute}
			addr, _ := serve(t, s)
			nc := dialTCP(t, addr)
			rr := newReplyReader(t, nc)
			start := time.Now()
			write(t, nc, []byte("Bbob\x00"))
			if tt.drip {
				// One octet every 50 ms: each read is quick, the message is not.
				for _, c := range []byte("hello there, slowly") {
					if _, err := nc.Write([]byte{c}); err != nil {
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
			rr.expectEOF(5 * time.Second)
			if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
				t.Fatalf("closed after %v, want about ReadTimeout (300ms)", d)
			}
			if rec.count() != 0 {
				t.Fatal("handler called for an incomplete message")
			}
		})
	}
}

func TestTCPMaxConnsEvictsLongestIdle(t *testing.T) {
	t.Parallel()
	s := &Server{Handler: &recorder{}, MaxConns: 3}
	addr, _ := serve(t, s)
	var idle []*replyReader
	for i := range 3 {
		nc := dialTCP(t, addr)
		idle = append(idle, newReplyReader(t, nc))
		waitFor(t, 5*time.Second, "connection admitted", func() bool { return s.connCount() == i+1 })
	}
	// The second connection sends a message, so the first is now the one
	// idle longest.
	write(t, idle[1].nc, []byte("Bbob\x00\x00hi\x00\x00\x00\x00\x00"))
	if r := idle[1].next(); r != "+delivered\x00" {
		t.Fatalf("reply %q", r)
	}
	nc := dialTCP(t, addr)
	write(t, nc, []byte("Bbob\x00\x00new\x00\x00\x00\x00\x00"))
	if r := newReplyReader(t, nc).next(); r != "+delivered\x00" {
		t.Fatalf("new connection at the cap got %q", r)
	}
	idle[0].expectEOF(5 * time.Second)
	// The others are still served.
	for _, rr := range idle[1:] {
		write(t, rr.nc, []byte("Bbob\x00\x00still\x00\x00\x00\x00\x00"))
		if r := rr.next(); r != "+delivered\x00" {
			t.Fatalf("surviving connection got %q", r)
		}
	}
}

func TestTCPMaxConnsBusyWhenNoneIdle(t *testing.T) {
	t.Parallel()
	g := newGate()
	s := &Server{MaxConns: 1, Handler: g}
	addr, _ := serve(t, s)
	busy := dialTCP(t, addr)
	write(t, busy, []byte("Bbob\x00\x00hi\x00\x00\x00\x00\x00"))
	<-g.entered
	nc := dialTCP(t, addr)
	rr := newReplyReader(t, nc)
	if r := rr.next(); r != "-server busy\x00" {
		t.Fatalf("got %q, want -server busy", r)
	}
	rr.expectEOF(5 * time.Second)
	close(g.release)
	if r := newReplyReader(t, busy).next(); r != "+finished\x00" {
		t.Fatalf("busy connection's reply %q", r)
	}
}

// TestTCPThousandsOfIdleConnsDoNotDelayASender opens 2000 idle connections
// (the cap) and checks a new sender is still served promptly.
func TestTCPThousandsOfIdleConnsDoNotDelayASender(t *testing.T) {
	t.Parallel()
	const n = 2000
	s := &Server{Handler: &recorder{}, MaxConns: n, MaxConnsPerIP: -1} // one address plays 2000 clients
	addr, _ := serve(t, s)
	for range n {
		dialTCP(t, addr)
	}
	waitFor(t, 20*time.Second, "2000 connections admitted", func() bool { return s.connCount() == n })
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := (&Client{}).Send(ctx, addr, &Message{Recipient: "bob", Text: "hi"})
	if err != nil || !r.OK {
		t.Fatalf("Send = %+v, %v", r, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("send took %v with %d idle connections", d, n)
	}
	// One idle connection was evicted to admit the sender, which has gone.
	waitFor(t, 5*time.Second, "sender gone", func() bool { return s.connCount() == n-1 })
}

func TestShutdownFinishesInFlightReply(t *testing.T) {
	t.Parallel()
	g := newGate()
	s := &Server{Handler: g}
	addr, _ := serve(t, s)
	idle := newReplyReader(t, dialTCP(t, addr))
	waitFor(t, 5*time.Second, "idle connection admitted", func() bool { return s.connCount() == 1 })
	busy := dialTCP(t, addr)
	write(t, busy, []byte("Bbob\x00\x00hi\x00\x00\x00\x00\x00"))
	<-g.entered

	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	// Idle connections are closed at once, and no new ones are accepted.
	idle.expectEOF(5 * time.Second)
	expectShutdownWaits(t, addr, shut)
	close(g.release)
	rr := newReplyReader(t, busy)
	if r := rr.next(); r != "+finished\x00" {
		t.Fatalf("in-flight reply %q", r)
	}
	rr.expectEOF(5 * time.Second)
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestShutdownHonoursContext(t *testing.T) {
	t.Parallel()
	g := newGate()
	s := &Server{Handler: g}
	addr, _ := serve(t, s)
	write(t, dialTCP(t, addr), []byte("Bbob\x00\x00hi\x00\x00\x00\x00\x00"))
	<-g.entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want DeadlineExceeded", err)
	}
	// Close cancels the handler's context and waits for it.
	s.Close()
}

func TestServeAfterShutdown(t *testing.T) {
	t.Parallel()
	s := &Server{Handler: &recorder{}}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	l, pc, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(l); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve = %v", err)
	}
	if err := s.ServePacket(pc); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("ServePacket = %v", err)
	}
	if err := s.ListenAndServe(); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("ListenAndServe = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
}

func TestServeWithoutHandler(t *testing.T) {
	t.Parallel()
	l, pc, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{}
	if err := s.Serve(l); !errors.Is(err, errNoHandler) {
		t.Fatalf("Serve = %v", err)
	}
	if err := s.ServePacket(pc); !errors.Is(err, errNoHandler) {
		t.Fatalf("ServePacket = %v", err)
	}
}
