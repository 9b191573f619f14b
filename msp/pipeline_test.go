package msp

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// msgTo encodes a revision 'B' message for recipient with text, for raw
// pipelined writes.
func msgTo(recipient, text string) string {
	return "B" + recipient + "\x00\x00" + text + "\x00\x00\x00\x00\x00"
}

// concurrency is a Handler that tracks how many calls run at once and in
// which order they start; each call sleeps for delay(m), then acknowledges
// with the message text.
type concurrency struct {
	delay func(m *Message) time.Duration

	mu      sync.Mutex // guards the fields below
	running int
	most    int
	order   []string // texts in the order calls started
}

func (h *concurrency) ServeMSP(w ResponseWriter, m *Message) {
	h.mu.Lock()
	h.running++
	h.most = max(h.most, h.running)
	h.order = append(h.order, m.Text)
	h.mu.Unlock()
	time.Sleep(h.delay(m))
	h.mu.Lock()
	h.running--
	h.mu.Unlock()
	w.Ack(m.Text)
}

func (h *concurrency) stats() (most int, order []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.most, append([]string(nil), h.order...)
}

// TestTCPPipelineRepliesInArrivalOrder: RFC 1312 lets a client send several
// messages over one connection; the server handles them at once but
// answers in the order they came, even when later handlers finish first.
func TestTCPPipelineRepliesInArrivalOrder(t *testing.T) {
	t.Parallel()
	const n = 6
	var returned [n + 1]chan struct{}
	for i := range returned {
		returned[i] = make(chan struct{})
	}
	close(returned[n])
	var mu sync.Mutex
	var finish []int // handler indices in the order they returned
	s := &Server{Handler: HandlerFunc(func(w ResponseWriter, m *Message) {
		i, _ := strconv.Atoi(m.Text)
		defer close(returned[i])
		// Each call returns only after every later one did.
		select {
		case <-returned[i+1]:
		case <-time.After(5 * time.Second):
			w.Nack("later message never finished")
			return
		}
		mu.Lock()
		finish = append(finish, i)
		mu.Unlock()
		w.Ack("to " + m.Recipient)
	})}
	addr, _ := serve(t, s)
	nc := dialTCP(t, addr)
	var all strings.Builder
	for i := range n {
		all.WriteString(msgTo("user"+strconv.Itoa(i), strconv.Itoa(i)))
	}
	write(t, nc, []byte(all.String()))
	rr := newReplyReader(t, nc)
	for i := range n {
		if got, want := rr.next(), "+to user"+strconv.Itoa(i)+"\x00"; got != want {
			t.Fatalf("reply %d = %q, want %q", i, got, want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []int{5, 4, 3, 2, 1, 0}; fmt.Sprint(finish) != fmt.Sprint(want) {
		t.Fatalf("handlers returned in order %v, want %v", finish, want)
	}
}

// pipelineNumbered serves s, sends msgs (Text set to their index) in one
// write on one connection, checks the replies are "+index" in order, and
// returns how long that took.
func pipelineNumbered(t *testing.T, s *Server, msgs []*Message) time.Duration {
	t.Helper()
	addr, _ := serve(t, s)
	nc := dialTCP(t, addr)
	var all []byte
	for i, m := range msgs {
		m.Text = strconv.Itoa(i)
		all = append(all, enc(t, m)...)
	}
	rr := newReplyReader(t, nc)
	start := time.Now()
	write(t, nc, all)
	for i := range msgs {
		if got, want := rr.next(), "+"+strconv.Itoa(i)+"\x00"; got != want {
			t.Fatalf("reply %d = %q, want %q", i, got, want)
		}
	}
	return time.Since(start)
}

// distinct returns n messages for n different recipients.
func distinct(n int) []*Message {
	out := make([]*Message, n)
	for i := range out {
		out[i] = &Message{Recipient: "u" + strconv.Itoa(i)}
	}
	return out
}

// expectOneAtATime checks h's n calls ran one at a time, in arrival order.
func expectOneAtATime(t *testing.T, h *concurrency, n int) {
	t.Helper()
	want := make([]string, n)
	for i := range want {
		want[i] = strconv.Itoa(i)
	}
	most, order := h.stats()
	if most != 1 || fmt.Sprint(order) != fmt.Sprint(want) {
		t.Fatalf("handler calls: %d at once, order %v; want 1 at once, order %v", most, order, want)
	}
}

// TestTCPPipelineSameRecipientInOrder: messages of one connection for one
// recipient ("All comparisons of parts ... are case-insensitive", whatever
// the terminal) reach the handler one at a time, in arrival order, even
// when earlier ones take longer.
func TestTCPPipelineSameRecipientInOrder(t *testing.T) {
	t.Parallel()
	h := &concurrency{delay: func(m *Message) time.Duration {
		i, _ := strconv.Atoi(m.Text)
		return time.Duration(8-i) * time.Millisecond
	}}
	var msgs []*Message
	for i, r := range []string{"bob", "BOB", "Bob", "bOb", "bob", "BOB", "bob", "Bob"} {
		msgs = append(msgs, &Message{Recipient: r, RecipTerm: []string{"", "tty1", "*"}[i%3]})
	}
	pipelineNumbered(t, &Server{Handler: h}, msgs)
	expectOneAtATime(t, h, len(msgs))
}

// TestTCPPipelineHandlesDistinctRecipientsAtOnce: 16 pipelined messages
// for different recipients are all with the handler at the same time (the
// server's default pipeline depth), not one after another. Each handler
// waits, bounded, until all have arrived: handled in turn, the first would
// wait alone until its bound and the count would show it. No timing is
// asserted; how fast pipelining is, mspbench measures.
func TestTCPPipelineHandlesDistinctRecipientsAtOnce(t *testing.T) {
	t.Parallel()
	const n = DefaultMaxPipeline
	var mu sync.Mutex // guards the counts and gaveUp
	running, most, gaveUp := 0, 0, false
	all := make(chan struct{})
	h := HandlerFunc(func(w ResponseWriter, m *Message) {
		mu.Lock()
		running++
		most = max(most, running)
		if most == n {
			close(all)
		}
		wait := !gaveUp
		mu.Unlock()
		if wait {
			select {
			case <-all:
			case <-time.After(5 * time.Second):
				mu.Lock()
				gaveUp = true // the others need not wait as well
				mu.Unlock()
			}
		}
		mu.Lock()
		running--
		mu.Unlock()
		w.Ack(m.Text)
	})
	pipelineNumbered(t, &Server{Handler: h}, distinct(n))
	mu.Lock()
	defer mu.Unlock()
	if most != n {
		t.Fatalf("at most %d of %d pipelined messages were with the handler at once, want all", most, n)
	}
}

// TestTCPPipelineSequentialWithMaxPipelineOne: MaxPipeline 1 handles a
// connection's messages strictly one after another.
func TestTCPPipelineSequentialWithMaxPipelineOne(t *testing.T) {
	t.Parallel()
	h := &concurrency{delay: func(*Message) time.Duration { return 2 * time.Millisecond }}
	pipelineNumbered(t, &Server{Handler: h, MaxPipeline: 1}, distinct(5))
	expectOneAtATime(t, h, 5)
}

// TestTCPPipelineErrorsAfterInFlight: an error's '-' reply comes after the
// replies of the messages before it, then the server closes.
func TestTCPPipelineErrorsAfterInFlight(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		last    string // sent after three gated messages
		replies []string
		calls   int
	}{
		{
			name:    "the server must check each incoming message for illegal codes: '-' with the reason after earlier replies, then close",
			last:    msgTo("eve", "\x1b[2J"),
			replies: []string{"-illegal octet: MESSAGE has octet 0x1B at offset 0\x00"},
			calls:   3,
		},
		{
			name:    "unknown revision after pipelined messages",
			last:    "Xjunk\x00",
			replies: []string{"-unknown protocol revision: first octet 0x58, want 'A' or 'B'\x00"},
			calls:   3,
		},
		{
			name:    "a handler panic: its '-' after earlier replies, then close",
			last:    msgTo("panic", "boom"),
			replies: []string{"-message not handled\x00"},
			calls:   4,
		},
		{
			name:  "a revision 'A' message waits for the earlier ones, gets no reply, and ends the connection",
			last:  "Abob\x00\x00hi\x00",
			calls: 4,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := newGate()
			var mu sync.Mutex
			calls := 0
			s := &Server{Handler: HandlerFunc(func(w ResponseWriter, m *Message) {
				mu.Lock()
				calls++
				mu.Unlock()
				switch m.Recipient {
				case "panic":
					panic("boom")
				case "bob":
					return // revision 'A': nothing is sent anyway
				}
				g.ServeMSP(w, m)
			})}
			addr, _ := serve(t, s)
			nc := dialTCP(t, addr)
			write(t, nc, []byte(msgTo("a", "1")+msgTo("b", "2")+msgTo("c", "3")+tt.last))
			g.wait(t, 3)
			// Nothing may be written while the earlier messages are in flight.
			nc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			var b [1]byte
			if n, err := nc.Read(b[:]); n != 0 || err == nil {
				t.Fatalf("got %q before the earlier replies", b[:n])
			}
			close(g.release)
			rr := newReplyReader(t, nc)
			for i, want := range append([]string{"+finished\x00", "+finished\x00", "+finished\x00"}, tt.replies...) {
				if got := rr.next(); got != want {
					t.Fatalf("reply %d = %q, want %q", i, got, want)
				}
			}
			rr.expectEOF(5 * time.Second)
			mu.Lock()
			defer mu.Unlock()
			if calls != tt.calls {
				t.Fatalf("handler called %d times, want %d", calls, tt.calls)
			}
		})
	}
}

// TestTCPPipelineRequireSenderKeepsTheStream: a policy refusal among
// pipelined messages is answered in its place and the connection goes on.
func TestTCPPipelineRequireSenderKeepsTheStream(t *testing.T) {
	t.Parallel()
	s := &Server{Handler: &recorder{}, RequireSender: true}
	addr, _ := serve(t, s)
	nc := dialTCP(t, addr)
	ok := "Bbob\x00\x00hi\x00alice\x00\x00\x00\x00"
	write(t, nc, []byte(ok+msgTo("bob", "anon")+ok))
	rr := newReplyReader(t, nc)
	for i, want := range []string{"+delivered\x00", "-empty sender: SENDER is required here\x00", "+delivered\x00"} {
		if got := rr.next(); got != want {
			t.Fatalf("reply %d = %q, want %q", i, got, want)
		}
	}
	write(t, nc, []byte(ok))
	if got := rr.next(); got != "+delivered\x00" {
		t.Fatalf("after the refusal: %q", got)
	}
}

// TestShutdownFinishesPipelinedReplies: Shutdown stops reading but writes
// the replies of every message already in flight, promptly, although the
// reader was blocked waiting for more and IdleTimeout is long.
func TestShutdownFinishesPipelinedReplies(t *testing.T) {
	t.Parallel()
	g := newGate()
	s := &Server{Handler: g, IdleTimeout: time.Minute}
	addr, _ := serve(t, s)
	nc := dialTCP(t, addr)
	write(t, nc, []byte(msgTo("a", "1")+msgTo("b", "2")+msgTo("c", "3")+msgTo("d", "4")))
	g.wait(t, 4)
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	expectShutdownWaits(t, addr, shut)
	close(g.release)
	rr := newReplyReader(t, nc)
	for i := range 4 {
		if got := rr.next(); got != "+finished\x00" {
			t.Fatalf("reply %d = %q", i, got)
		}
	}
	rr.expectEOF(5 * time.Second)
	select {
	case err := <-shut:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown still waiting after the replies")
	}
}

// idleConns is how many connections the server counts as idle.
func idleConns(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.idle.Len()
}

// TestTCPPipelineBusyIsNotIdle: a connection with pipelined messages in
// flight is not evicted at MaxConns ("-server busy" instead), and becomes
// idle, so evictable, once its replies are written.
func TestTCPPipelineBusyIsNotIdle(t *testing.T) {
	t.Parallel()
	g := newGate()
	s := &Server{Handler: g, MaxConns: 1}
	addr, _ := serve(t, s)
	busy := dialTCP(t, addr)
	write(t, busy, []byte(msgTo("a", "1")+msgTo("b", "2")))
	g.wait(t, 2)
	if n := idleConns(s); n != 0 {
		t.Fatalf("%d idle connections with handlers in flight, want 0", n)
	}
	refused := newReplyReader(t, dialTCP(t, addr))
	if got := refused.next(); got != busyReply {
		t.Fatalf("new connection at the cap got %q, want %q", got, busyReply)
	}
	close(g.release)
	rr := newReplyReader(t, busy)
	for i := range 2 {
		if got := rr.next(); got != "+finished\x00" {
			t.Fatalf("reply %d = %q", i, got)
		}
	}
	waitFor(t, 5*time.Second, "connection idle again", func() bool { return idleConns(s) == 1 })
	next := dialTCP(t, addr)
	write(t, next, []byte(msgTo("c", "3")))
	if got := newReplyReader(t, next).next(); got != "+finished\x00" {
		t.Fatalf("newcomer got %q", got)
	}
	rr.expectEOF(5 * time.Second)
}

// TestTCPPipelineIdleTimeoutWaitsForInFlight: IdleTimeout "closes a TCP
// connection with no message under way": not while pipelined handlers run,
// and counted from when the last reply is written.
func TestTCPPipelineIdleTimeoutWaitsForInFlight(t *testing.T) {
	t.Parallel()
	const idle = 100 * time.Millisecond
	g := newGate()
	s := &Server{Handler: g, IdleTimeout: idle}
	addr, _ := serve(t, s)
	nc := dialTCP(t, addr)
	write(t, nc, []byte(msgTo("a", "1")+msgTo("b", "2")))
	g.wait(t, 2)
	// Not synchronisation: handlers outlast IdleTimeout.
	time.Sleep(3 * idle)
	// Timed from the release, which comes before the replies are written:
	// a loaded test goroutine may read them late, long after the server
	// wrote them and started its idle timer.
	start := time.Now()
	close(g.release)
	rr := newReplyReader(t, nc)
	for i := range 2 {
		if got := rr.next(); got != "+finished\x00" {
			t.Fatalf("reply %d = %q", i, got)
		}
	}
	rr.expectEOF(5 * time.Second)
	if d := time.Since(start); d < idle/2 {
		t.Fatalf("closed %v after the handlers were released, before IdleTimeout (%v)", d, idle)
	}
}

// countingListener hands out connections that count their writes; the
// first write waits for release, so that replies become due meanwhile.
type countingListener struct {
	net.Listener
	release chan struct{}
	mu      sync.Mutex // guards writes
	writes  [][]byte
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, l: l}, nil
}

type countingConn struct {
	net.Conn
	l *countingListener
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.l.mu.Lock()
	first := len(c.l.writes) == 0
	c.l.writes = append(c.l.writes, append([]byte(nil), b...))
	c.l.mu.Unlock()
	if first {
		select {
		case <-c.l.release:
		case <-time.After(10 * time.Second):
		}
	}
	return c.Conn.Write(b)
}

// Pipelined replies that become due while an earlier one is being written
// go out together, in order, in the next write: one write for many
// replies, where the client would otherwise cost the server a write each.
func TestTCPPipelineRepliesDueTogetherShareAWrite(t *testing.T) {
	t.Parallel()
	const n = 8
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln, release: make(chan struct{})}
	var returned sync.WaitGroup
	returned.Add(n)
	s := &Server{Handler: HandlerFunc(func(w ResponseWriter, m *Message) {
		w.Ack(m.Text)
		returned.Done()
	})}
	go s.Serve(cl)
	t.Cleanup(func() { s.Close() })
	nc := dialTCP(t, ln.Addr().String())
	var all []byte
	for i := range n {
		all = append(all, msgTo("u"+strconv.Itoa(i), strconv.Itoa(i))...)
	}
	rr := newReplyReader(t, nc)
	write(t, nc, []byte(all))
	returned.Wait() // every handler returned while the first reply's write waits
	waitFor(t, 10*time.Second, "the later replies to be queued behind the first", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for c := range s.conns {
			if p := c.pipe; p != nil {
				p.mu.Lock()
				due := len(p.due)
				p.mu.Unlock()
				if due == n-1 {
					return true
				}
			}
		}
		return false
	})
	close(cl.release)
	for i := range n {
		if got, want := rr.next(), "+"+strconv.Itoa(i)+"\x00"; got != want {
			t.Fatalf("reply %d = %q, want %q", i, got, want)
		}
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if len(cl.writes) != 2 || string(cl.writes[0]) != "+0\x00" {
		t.Fatalf("writes %q, want the first reply alone, then the other %d in one write", cl.writes, n-1)
	}
}
