package msp

import (
	"context"
	"errors"
	"net"
	"runtime"
	"strconv"
	"testing"
	"time"
)

func TestListenBindsTCPAndUDPOnOnePort(t *testing.T) {
	t.Parallel()
	for range 5 {
		l, pc, err := Listen("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		tp := l.Addr().(*net.TCPAddr).Port
		up := pc.LocalAddr().(*net.UDPAddr).Port
		l.Close()
		pc.Close()
		if tp != up || tp == 0 {
			t.Fatalf("TCP port %d, UDP port %d", tp, up)
		}
	}
	if _, _, err := Listen("no-port"); err == nil {
		t.Fatal("Listen accepted an address without a port")
	}
}

// TestListenAndServeDualStack checks that ListenAndServe on a ":port"
// address serves IPv4 and IPv6 over both transports. It binds the wildcard
// address (that is what is under test) but sends only to loopback.
func TestListenAndServeDualStack(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	s := &Server{Addr: ":0", Handler: rec, Logger: testLogger(t)}
	done := make(chan error, 1)
	go func() { done <- s.ListenAndServe() }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("ListenAndServe = %v, want ErrServerClosed", err)
		}
	})
	waitFor(t, 5*time.Second, "both sockets bound", func() bool { return len(s.Addrs()) == 2 })
	var port int
	for _, a := range s.Addrs() {
		switch a := a.(type) {
		case *net.TCPAddr:
			port = a.Port
		case *net.UDPAddr:
			if port != 0 && a.Port != port {
				t.Fatalf("UDP port %d differs from TCP port %d", a.Port, port)
			}
		}
	}
	hosts := []string{"127.0.0.1"}
	if l, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		l.Close()
		hosts = append(hosts, "::1")
	} else {
		t.Logf("no IPv6 loopback (%v): checking IPv4 only", err)
	}
	ctx := context.Background()
	for _, h := range hosts {
		addr := net.JoinHostPort(h, strconv.Itoa(port))
		for _, network := range []string{"tcp", "udp"} {
			c := &Client{Network: network, Backoff: 50 * time.Millisecond}
			r, err := c.Send(ctx, addr, &Message{Recipient: "bob", Text: "via " + network + " to " + h})
			if err != nil || !r.OK {
				t.Errorf("%s %s: Send = %+v, %v", network, addr, r, err)
			}
		}
	}
	waitFor(t, 5*time.Second, "deliveries", func() bool { return rec.done() == 2*len(hosts) })
}

// TestCloseLeavesNoGoroutines is not parallel: it counts every goroutine in
// the process, which only means something while no other test runs.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	release := make(chan struct{})
	entered := make(chan struct{}, 8)
	s := &Server{Addr: "127.0.0.1:0", Logger: testLogger(t), Handler: HandlerFunc(func(w ResponseWriter, m *Message) {
		if m.Recipient == "block" {
			entered <- struct{}{}
			select {
			case <-release:
			case <-w.Context().Done():
			}
		}
		w.Ack("ok")
	})}
	done := make(chan error, 1)
	go func() { done <- s.ListenAndServe() }()
	waitFor(t, 5*time.Second, "both sockets bound", func() bool { return len(s.Addrs()) == 2 })
	addr := s.Addrs()[0].String()
	var conns []net.Conn
	for range 20 {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, nc)
	}
	ctx := context.Background()
	for _, network := range []string{"tcp", "udp"} {
		if _, err := (&Client{Network: network}).Send(ctx, addr, &Message{Recipient: "bob", Text: "hi"}); err != nil {
			t.Fatal(err)
		}
	}
	// Handlers blocked in flight on both transports.
	write(t, conns[0], []byte("Bblock\x00\x00x\x00\x00\x00\x00\x00"))
	udp := dialUDP(t, addr)
	write(t, udp, []byte("Bblock\x00\x00x\x00\x00\x00c\x00\x00"))
	<-entered
	<-entered
	pconn, err := Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pconn.Send(&Message{Recipient: "bob"}); err != nil {
		t.Fatal(err)
	}
	pconn.Close()

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("ListenAndServe = %v", err)
	}
	close(release)
	for _, nc := range conns {
		nc.Close()
	}
	udp.Close()
	waitFor(t, 5*time.Second, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}
