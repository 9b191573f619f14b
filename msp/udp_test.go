package msp

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// probe is a message the default recorder acknowledges; the first datagram
// read after sending it shows whether anything was sent before it.
const probe = "Bprobe\x00\x00p\x00prober\x00\x00probe-cookie\x00\x00"

const probeReply = "+delivered\x00"

// expectSilence checks that nothing was sent on nc for the datagrams already
// processed: it sends the probe and requires its reply to be the first
// datagram to arrive.
func expectSilence(t *testing.T, nc interface {
	Write([]byte) (int, error)
}, read func() []byte) {
	t.Helper()
	if _, err := nc.Write([]byte(probe)); err != nil {
		t.Fatal(err)
	}
	if got := read(); string(got) != probeReply {
		t.Fatalf("got datagram %q, want silence then the probe's reply", got)
	}
}

// TestUDPConformance sends raw datagrams and checks each reply rule of RFC
// 1159 and RFC 1312 over UDP.
func TestUDPConformance(t *testing.T) {
	t.Parallel()
	tests := []udpCase{
		{
			name:    "v2: if the message was addressed to a particular user and was successfully delivered, a positive acknowledgement should be sent",
			send:    "Bbob\x00\x00hi\x00alice\x00\x00c-1\x00\x00",
			want:    "+delivered\x00",
			handled: 1,
		},
		{
			name:    "v2: if the message was directed at any user (RECIPIENT empty), no reply is sent",
			send:    "B\x00\x00hi\x00alice\x00\x00c-2\x00\x00",
			handled: 1,
		},
		{
			name:    "v2: if the message could not be delivered for some reason, no reply is sent (never '-' over UDP)",
			reply:   func(w ResponseWriter, m *Message) { w.Nack("User not online") },
			send:    "Bbob\x00\x00hi\x00alice\x00\x00c-3\x00\x00",
			handled: 1,
		},
		{
			name:    "v2: a handler that gives no reply sends nothing",
			reply:   func(w ResponseWriter, m *Message) {},
			send:    "Bbob\x00\x00hi\x00alice\x00\x00c-4\x00\x00",
			handled: 1,
		},
		{
			name: "v2: an invalid message gets no reply (illegal octet)",
			send: "Bbob\x00\x00\x1b[2J\x00alice\x00\x00c-5\x00\x00",
		},
		{
			name: "v2: an invalid message gets no reply (too few parts)",
			send: "Bbob\x00\x00hi\x00",
		},
		{
			name: "an unknown revision gets no reply",
			send: "Zbob\x00\x00hi\x00",
		},
		{
			name: "a datagram of 512 octets or more gets no reply",
			send: "Bbob\x00\x00" + strings.Repeat("x", 600) + "\x00\x00\x00\x00\x00",
		},
		{
			name:    "v2: RequireSender drops a message without SENDER, silently",
			require: true,
			send:    "Bbob\x00\x00hi\x00\x00\x00c-6\x00\x00",
		},
		{
			name:    "v1: an answering datagram is sent back to the client containing exactly the same data",
			send:    "Abob\x00tty1\x00hello\x00",
			want:    "Abob\x00tty1\x00hello\x00",
			handled: 1,
		},
		{
			name:    "v1: the echo does not depend on the handler's answer",
			reply:   func(w ResponseWriter, m *Message) { w.Nack("no") },
			send:    "Abob\x00\x00hello\x00",
			want:    "Abob\x00\x00hello\x00",
			handled: 1,
		},
		{
			name:    "v1: the echo is of the data received, even when StripControl cleaned the message",
			strip:   true,
			send:    "Abob\x00\x00he\x07llo\x00",
			want:    "Abob\x00\x00he\x07llo\x00",
			handled: 1,
		},
		{
			name: "v1: an invalid message is not echoed",
			send: "Abob\x00\x00he\x07llo\x00",
		},
	}
	for _, path := range udpPaths {
		for _, tt := range tests {
			t.Run(path.name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				tt.run(t, path)
			})
		}
	}
}

// udpCase is one case of TestUDPConformance.
type udpCase struct {
	name    string
	strip   bool // Server.StripControl
	require bool // Server.RequireSender
	reply   func(w ResponseWriter, m *Message)
	send    string
	want    string // the answering datagram; "" means none
	handled int
}

// run sends the case's datagram to a server taking path and checks the
// answer, the handler calls and the silence after.
func (tt udpCase) run(t *testing.T, path udpPath) {
	rec := &recorder{}
	rec.reply = func(w ResponseWriter, m *Message) {
		if tt.reply != nil && m.Recipient != "probe" {
			tt.reply(w, m)
			return
		}
		w.Ack("delivered")
	}
	s := &Server{Handler: rec, StripControl: tt.strip, RequireSender: tt.require}
	_, addr := serveUDPPath(t, s, path)
	nc := dialUDP(t, addr)
	write(t, nc, []byte(tt.send))
	if tt.want != "" {
		if got := readDatagram(t, nc); string(got) != tt.want {
			t.Fatalf("answer %q, want %q", got, tt.want)
		}
	}
	waitFor(t, 5*time.Second, "handler calls", func() bool { return rec.done() >= tt.handled })
	expectSilence(t, nc, func() []byte { return readDatagram(t, nc) })
	if got := rec.count() - 1; got != tt.handled {
		t.Fatalf("handler called %d times (probe aside), want %d", got, tt.handled)
	}
	if tt.handled > 0 && rec.networks[0] != "udp" {
		t.Fatalf("Network() = %q, want udp", rec.networks[0])
	}
}

// TestUDPNoAmplification checks "a reply is never larger than the request"
// for requests of several sizes and a handler with a long explanation.
func TestUDPNoAmplification(t *testing.T) {
	t.Parallel()
	for _, path := range udpPaths {
		t.Run(path.name, func(t *testing.T) {
			t.Parallel()
			testUDPNoAmplification(t, path)
		})
	}
}

func testUDPNoAmplification(t *testing.T, path udpPath) {
	s := &Server{Handler: HandlerFunc(func(w ResponseWriter, m *Message) {
		w.Ack(strings.Repeat("delivered to every terminal ", 100))
	})}
	_, addr := serveUDPPath(t, s, path)
	nc := dialUDP(t, addr)
	for i, text := range []string{"", "x", "hello", strings.Repeat("y", 40), strings.Repeat("z", 400)} {
		req := enc(t, &Message{Recipient: "b", Text: text, Cookie: NewCookie()[:12] + string(rune('a'+i))})
		write(t, nc, req)
		got := readDatagram(t, nc)
		if len(got) > len(req) {
			t.Fatalf("reply of %d octets to a request of %d", len(got), len(req))
		}
		want := "+" + strings.Repeat("delivered to every terminal ", 100)[:len(req)-2] + "\x00"
		if string(got) != want {
			t.Fatalf("reply %q, want %q", got, want)
		}
	}
}

func TestUDPDuplicates(t *testing.T) {
	t.Parallel()
	t.Run("a retransmission is acknowledged again but delivered once", func(t *testing.T) {
		t.Parallel()
		rec := &recorder{reply: func(w ResponseWriter, m *Message) { w.Ack("delivered to " + m.Recipient) }}
		_, addr := serve(t, &Server{Handler: rec})
		nc := dialUDP(t, addr)
		req := []byte("Bbob\x00\x00hi\x00alice\x00\x00cookie-1\x00\x00")
		for i := range 3 {
			write(t, nc, req)
			if got := readDatagram(t, nc); string(got) != "+delivered to bob\x00" {
				t.Fatalf("answer %d = %q", i, got)
			}
		}
		// The cookie is compared case-insensitively.
		write(t, nc, []byte("Bbob\x00\x00hi\x00alice\x00\x00COOKIE-1\x00\x00"))
		if got := readDatagram(t, nc); string(got) != "+delivered to bob\x00" {
			t.Fatalf("answer to upper-case cookie = %q", got)
		}
		if n := rec.count(); n != 1 {
			t.Fatalf("delivered %d times, want 1", n)
		}
	})
	t.Run("source address, source port and cookie identify a message: another port is another message", func(t *testing.T) {
		t.Parallel()
		rec := &recorder{}
		_, addr := serve(t, &Server{Handler: rec})
		req := []byte("Bbob\x00\x00hi\x00alice\x00\x00cookie-1\x00\x00")
		for range 2 {
			nc := dialUDP(t, addr)
			write(t, nc, req)
			if got := readDatagram(t, nc); string(got) != "+delivered\x00" {
				t.Fatalf("answer %q", got)
			}
		}
		if n := rec.count(); n != 2 {
			t.Fatalf("delivered %d times, want 2", n)
		}
	})
	// Issue 12: "a message to alice with the same cookie as one just sent to
	// bob is answered for bob and dropped." The cookie identifies a message
	// only together with what it says and to whom.
	t.Run("one cookie on different messages: each is a new message", func(t *testing.T) {
		t.Parallel()
		rec := &recorder{reply: func(w ResponseWriter, m *Message) { w.Ack("delivered to " + m.Recipient + " " + m.RecipTerm) }}
		_, addr := serve(t, &Server{Handler: rec})
		nc := dialUDP(t, addr)
		for _, tc := range []struct{ req, want string }{
			{"Bbob\x00\x00hi\x00alice\x00\x00c-1\x00\x00", "+delivered to bob \x00"},
			{"Balice\x00\x00hi\x00alice\x00\x00c-1\x00\x00", "+delivered to alice \x00"},
			{"Balice\x00tty2\x00hi\x00alice\x00\x00c-1\x00\x00", "+delivered to alice tty2\x00"},
			{"Balice\x00\x00bye\x00alice\x00\x00c-1\x00\x00", "+delivered to alice \x00"},
			{"Balice\x00\x00bye\x00carol\x00\x00c-1\x00\x00", "+delivered to alice \x00"},
			// A true retransmission of the second (recipient case aside,
			// which the RFC folds) is answered again, not handled.
			{"BALICE\x00\x00hi\x00alice\x00\x00C-1\x00\x00", "+delivered to alice \x00"},
		} {
			write(t, nc, []byte(tc.req))
			if got := readDatagram(t, nc); string(got) != tc.want {
				t.Fatalf("%q: answer %q, want %q", tc.req, got, tc.want)
			}
		}
		if n := rec.count(); n != 5 {
			t.Fatalf("handled %d messages, want 5 (each different message once)", n)
		}
	})
	t.Run("a duplicate of a message still being handled is dropped", func(t *testing.T) {
		t.Parallel()
		release := make(chan struct{})
		rec := &recorder{reply: func(w ResponseWriter, m *Message) {
			if m.Recipient != "probe" {
				<-release
			}
			w.Ack("delivered")
		}}
		_, addr := serve(t, &Server{Handler: rec})
		nc := dialUDP(t, addr)
		req := []byte("Bbob\x00\x00hi\x00alice\x00\x00slow\x00\x00")
		write(t, nc, req)
		waitFor(t, 5*time.Second, "first copy in the handler", func() bool { return rec.count() == 1 })
		write(t, nc, req)
		write(t, nc, req)
		// The probe is handled after the duplicates were read, and is
		// answered first: the duplicates drew nothing.
		expectSilence(t, nc, func() []byte { return readDatagram(t, nc) })
		close(release)
		if got := readDatagram(t, nc); string(got) != "+delivered\x00" {
			t.Fatalf("answer %q", got)
		}
		if n := rec.count(); n != 2 {
			t.Fatalf("handler called %d times, want 2 (message and probe)", n)
		}
	})
	t.Run("a Nacked message is not delivered again and draws no reply", func(t *testing.T) {
		t.Parallel()
		rec := &recorder{reply: func(w ResponseWriter, m *Message) {
			if m.Recipient == "probe" {
				w.Ack("delivered")
				return
			}
			w.Nack("offline")
		}}
		_, addr := serve(t, &Server{Handler: rec})
		nc := dialUDP(t, addr)
		req := []byte("Bbob\x00\x00hi\x00alice\x00\x00n-1\x00\x00")
		write(t, nc, req)
		waitFor(t, 5*time.Second, "handled", func() bool { return rec.done() == 1 })
		write(t, nc, req)
		expectSilence(t, nc, func() []byte { return readDatagram(t, nc) })
		if n := rec.count(); n != 2 {
			t.Fatalf("handler called %d times, want 2 (message and probe)", n)
		}
	})
	t.Run("v1: a retransmitted datagram is echoed again but delivered once", func(t *testing.T) {
		t.Parallel()
		rec := &recorder{}
		_, addr := serve(t, &Server{Handler: rec})
		nc := dialUDP(t, addr)
		req := []byte("Abob\x00\x00hi\x00")
		for i := range 3 {
			write(t, nc, req)
			if got := readDatagram(t, nc); !bytes.Equal(got, req) {
				t.Fatalf("echo %d = %q", i, got)
			}
			waitFor(t, 5*time.Second, "handled", func() bool { return rec.done() == 1 })
		}
		if n := rec.count(); n != 1 {
			t.Fatalf("delivered %d times, want 1", n)
		}
	})
	t.Run("an empty cookie cannot identify a message: each copy is delivered", func(t *testing.T) {
		t.Parallel()
		rec := &recorder{}
		_, addr := serve(t, &Server{Handler: rec})
		nc := dialUDP(t, addr)
		for range 2 {
			write(t, nc, []byte("Bbob\x00\x00hi\x00\x00\x00\x00\x00"))
			if got := readDatagram(t, nc); string(got) != "+delivered\x00" {
				t.Fatalf("answer %q", got)
			}
		}
		if n := rec.count(); n != 2 {
			t.Fatalf("delivered %d times, want 2", n)
		}
	})
	t.Run("DedupWindow < 0 turns the filter off", func(t *testing.T) {
		t.Parallel()
		rec := &recorder{}
		_, addr := serve(t, &Server{Handler: rec, DedupWindow: -1})
		nc := dialUDP(t, addr)
		for range 2 {
			write(t, nc, []byte("Bbob\x00\x00hi\x00\x00\x00c\x00\x00"))
			readDatagram(t, nc)
		}
		if n := rec.count(); n != 2 {
			t.Fatalf("delivered %d times, want 2", n)
		}
	})
}

func TestUDPDedupWindowExpires(t *testing.T) {
	t.Parallel()
	const window = 200 * time.Millisecond
	rec := &recorder{}
	_, addr := serve(t, &Server{Handler: rec, DedupWindow: window})
	nc := dialUDP(t, addr)
	req := []byte("Bbob\x00\x00hi\x00\x00\x00win\x00\x00")
	// The server starts the window when it handles the message, after this
	// instant and before the reply arrives; so a second delivery may come no
	// sooner than window after sent.
	sent := time.Now()
	write(t, nc, req)
	readDatagram(t, nc)
	// Retransmit until the message is delivered a second time: only after
	// the window has passed.
	waitFor(t, 5*time.Second, "second delivery", func() bool {
		write(t, nc, req)
		readDatagram(t, nc)
		return rec.count() == 2
	})
	if d := time.Since(sent); d < window {
		t.Fatalf("delivered again after %v, inside the %v window", d, window)
	}
}

func TestUDPDedupMemoryIsBounded(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	s := &Server{Handler: rec, DedupEntries: 3}
	_, addr := serve(t, s)
	nc := dialUDP(t, addr)
	msg := func(cookie string) []byte { return []byte("Bbob\x00\x00hi\x00\x00\x00" + cookie + "\x00\x00") }
	for _, c := range []string{"c1", "c2", "c3", "c4", "c5"} {
		write(t, nc, msg(c))
		readDatagram(t, nc)
		waitFor(t, 5*time.Second, "entry finished", func() bool { p, _ := s.dedupCounts(); return p == 0 })
	}
	if p, f := s.dedupCounts(); p != 0 || f != 3 {
		t.Fatalf("dedup holds %d pending and %d finished entries, want 0 and 3", p, f)
	}
	// c1 was evicted (oldest first), so it is delivered again; c5 is not.
	write(t, nc, msg("c5"))
	readDatagram(t, nc)
	write(t, nc, msg("c1"))
	readDatagram(t, nc)
	if n := rec.count(); n != 6 {
		t.Fatalf("handler called %d times, want 6", n)
	}
}

func TestUDPMaxInflight(t *testing.T) {
	t.Parallel()
	var inflight, peak atomic.Int32
	release := make(chan struct{})
	rec := &recorder{reply: func(w ResponseWriter, m *Message) {
		n := inflight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-release
		inflight.Add(-1)
		w.Ack("ok")
	}}
	_, addr := serve(t, &Server{Handler: rec, MaxInflight: 2})
	nc := dialUDP(t, addr)
	for i := range 5 {
		write(t, nc, []byte("Bbob\x00\x00hi\x00\x00\x00c"+string(rune('0'+i))+"\x00\x00"))
	}
	waitFor(t, 5*time.Second, "two handlers running", func() bool { return inflight.Load() == 2 })
	if n := rec.count(); n != 2 {
		t.Fatalf("%d handlers started with MaxInflight 2", n)
	}
	close(release)
	for range 5 {
		readDatagram(t, nc)
	}
	if p := peak.Load(); p != 2 {
		t.Fatalf("peak concurrency %d, want 2", p)
	}
}

func TestUDPShutdownFinishesInFlightReply(t *testing.T) {
	t.Parallel()
	for _, path := range udpPaths {
		t.Run(path.name, func(t *testing.T) {
			t.Parallel()
			testUDPShutdownFinishesInFlightReply(t, path)
		})
	}
}

func testUDPShutdownFinishesInFlightReply(t *testing.T, path udpPath) {
	g := newGate()
	s := &Server{Handler: g}
	_, addr := serveUDPPath(t, s, path)
	nc := dialUDP(t, addr)
	write(t, nc, []byte("Bbob\x00\x00hi\x00\x00\x00c\x00\x00"))
	<-g.entered
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	waitFor(t, 5*time.Second, "packet conn no longer read", func() bool { return s.shuttingDown() })
	close(g.release)
	if got := readDatagram(t, nc); string(got) != "+finished\x00" {
		t.Fatalf("in-flight reply %q", got)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// TestUDPBurstIsAnsweredToEachSender: datagrams of several senders that
// arrive together (and are read in one batch) are each handled once and
// answered to their own sender, and each revision 'A' echo is "exactly the
// same data" as its own datagram, although the read buffers are read into
// again while answers may still wait to be written.
func TestUDPBurstIsAnsweredToEachSender(t *testing.T) {
	t.Parallel()
	for _, path := range udpPaths {
		t.Run(path.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{reply: func(w ResponseWriter, m *Message) { w.Ack("delivered to " + m.Recipient) }}
			_, addr := serveUDPPath(t, &Server{Handler: rec, RatePerIP: -1}, path)
			const senders, each = 6, 24
			var wg sync.WaitGroup
			errs := make(chan error, senders)
			for i := range senders {
				nc := dialUDP(t, addr)
				wg.Go(func() { errs <- burst(nc, i, each) })
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			// An echo goes out before its handler call starts.
			waitFor(t, 5*time.Second, "a handler call per datagram", func() bool { return rec.done() >= senders*each })
			if n := rec.count(); n != senders*each {
				t.Fatalf("%d handler calls for %d distinct datagrams", n, senders*each)
			}
		})
	}
}

// burst sends n datagrams from nc at once, alternately revision 'A' and
// 'B', each with parts of its own, and sends again those not yet answered
// (a flooded loopback may drop some; the duplicate filter answers a
// retransmission without handling it again) until all are, checking that
// every answer is one of them.
func burst(nc net.Conn, sender, n int) error {
	want := make(map[string]string) // request → its answer
	for i := range n {
		if i%2 == 0 {
			req := fmt.Sprintf("Au%dx%d\x00\x00text %d of sender %d\x00", sender, i, i, sender)
			want[req] = req
		} else {
			req := fmt.Sprintf("Bu%dx%d\x00\x00text\x00bob\x00\x00c%d\x00\x00", sender, i, i)
			want[req] = fmt.Sprintf("+delivered to u%dx%d\x00", sender, i)
		}
	}
	answers := make(map[string]bool)
	for _, a := range want {
		answers[a] = true
	}
	pending := maps.Clone(answers) // answers not seen yet
	buf := make([]byte, MaxLen+1)
	for attempt := 0; attempt < 5 && len(pending) > 0; attempt++ {
		for req, a := range want {
			if pending[a] {
				if _, err := nc.Write([]byte(req)); err != nil {
					return err
				}
			}
		}
		nc.SetReadDeadline(time.Now().Add(time.Second))
		for len(pending) > 0 {
			k, err := nc.Read(buf)
			if err != nil {
				break // sends the unanswered ones again
			}
			got := string(buf[:k])
			if !answers[got] {
				return fmt.Errorf("sender %d: answer %q is not for one of its datagrams", sender, got)
			}
			delete(pending, got)
		}
	}
	if len(pending) > 0 {
		return fmt.Errorf("sender %d: %d of %d datagrams never answered", sender, len(pending), n)
	}
	return nil
}
