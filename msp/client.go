package msp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Client defaults.
const (
	// DefaultClientTimeout bounds one Send.
	DefaultClientTimeout = 30 * time.Second
	// DefaultRetries is how many times a UDP datagram is sent again.
	DefaultRetries = 4
	// DefaultBackoff is the wait before the first UDP retransmission; each
	// later wait doubles (0.5+1+2+4+8 s: the client gives up after 15.5 s).
	DefaultBackoff = 500 * time.Millisecond
)

// Client errors.
var (
	// ErrNoReply: over UDP nothing came back. For revision 'B' that means the
	// message was not delivered, was for any user, or was lost: the sender
	// cannot tell which.
	ErrNoReply = errors.New("msp: no reply")
	// ErrBadReply: the server's answer is not "+text\0" or "-text\0".
	ErrBadReply = errors.New("msp: malformed reply")
	// ErrConnClosed: the [Conn] was closed, by Close or by the server.
	ErrConnClosed = errors.New("msp: connection closed")
)

// Client sends messages. The zero value sends over TCP with the defaults.
type Client struct {
	// Network is "tcp" (the default) or "udp".
	Network string
	// Timeout bounds one Send (with UDP, all its retransmissions); zero
	// means [DefaultClientTimeout].
	Timeout time.Duration
	// Retries is how many times a UDP datagram is sent again with no reply;
	// zero means [DefaultRetries], negative none.
	Retries int
	// Backoff is the wait before the first UDP retransmission, doubling
	// after each; zero means [DefaultBackoff].
	Backoff time.Duration
}

// Reply is the server's answer.
type Reply struct {
	// OK is true for '+' (and for a revision 'A' UDP echo).
	OK bool
	// Text is the explanation, with octets other than printable ISO 8859-1
	// removed so it is safe to show.
	Text string
	// None is true when no reply is owed: revision 'A' over TCP.
	None bool
}

// NewCookie returns a fresh COOKIE: the UTC send time as YYMMDDHHMMSS, as in
// RFC 1312's example ("910806121325"), then a dot and 16 random hex digits so
// that messages sent in the same second differ. It is 29 printable octets.
func NewCookie() string {
	var r [8]byte
	rand.Read(r[:])
	return time.Now().UTC().Format("060102150405") + "." + hex.EncodeToString(r[:])
}

// prepare gives a revision 'B' message without a cookie a new one, stored in
// m so that sending m again is recognised by the server as a retransmission,
// and encodes it.
func prepare(m *Message) ([]byte, error) {
	if m.version() == Version2 && m.Cookie == "" {
		m.Cookie = NewCookie()
	}
	return m.MarshalBinary()
}

func (c *Client) timeout() time.Duration { return durationOr(c.Timeout, DefaultClientTimeout) }

// Send delivers m to addr and returns the server's reply. A revision 'B'
// message with an empty Cookie gets one from [NewCookie], written into m, so
// that calling Send again with m retransmits rather than sends anew.
//
// Over TCP, revision 'B' returns the '+' or '-' reply; revision 'A' returns
// Reply{None: true} once written. Over UDP the datagram is retransmitted with
// the same octets (same cookie) until an answer comes, with doubling waits:
// revision 'B' returns the '+' reply or [ErrNoReply] (a '-' from a server that
// sends one over UDP against RFC 1312 is returned as a reply); revision 'A'
// waits for the echo and checks it matches.
func (c *Client) Send(ctx context.Context, addr string, m *Message) (Reply, error) {
	b, err := prepare(m)
	if err != nil {
		return Reply{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	switch c.Network {
	case "", "tcp":
		return sendTCP(ctx, addr, b)
	case "udp":
		return c.sendUDP(ctx, addr, b)
	}
	return Reply{}, fmt.Errorf("msp: send: unknown network %q", c.Network)
}

// dial connects and ties the connection's deadline to ctx; stop undoes the
// tie.
func dial(ctx context.Context, network, addr string) (nc net.Conn, stop func() bool, err error) {
	var d net.Dialer
	nc, err = d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, nil, fmt.Errorf("msp: %w", err) // err names network and address
	}
	// Deadlines come only from ctx ending, so an I/O timeout always comes
	// with ctx.Err() set and is reported as ctx's error.
	return nc, context.AfterFunc(ctx, func() { nc.SetDeadline(time.Now()) }), nil
}

func sendTCP(ctx context.Context, addr string, b []byte) (Reply, error) {
	nc, stop, err := dial(ctx, "tcp", addr)
	if err != nil {
		return Reply{}, err
	}
	defer nc.Close()
	defer stop()
	if _, err := nc.Write(b); err != nil {
		return Reply{}, fmt.Errorf("msp: send to %s: %w", addr, ctxErr(ctx, err))
	}
	if b[0] == Version1 {
		// RFC 1159: "The client closes the connection after sending the
		// message."
		return Reply{None: true}, nil
	}
	line, err := bufio.NewReaderSize(nc, MaxLen+1).ReadSlice(0)
	if err != nil {
		return Reply{}, fmt.Errorf("msp: reply from %s: %w", addr, ctxErr(ctx, err))
	}
	return parseReply(line)
}

// ctxErr prefers ctx's error to the deadline error it caused.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

func (c *Client) sendUDP(ctx context.Context, addr string, b []byte) (Reply, error) {
	nc, stop, err := dial(ctx, "udp", addr)
	if err != nil {
		return Reply{}, err
	}
	defer nc.Close()
	defer stop()
	retries := c.Retries
	switch {
	case retries == 0:
		retries = DefaultRetries
	case retries < 0:
		retries = 0
	}
	wait := durationOr(c.Backoff, DefaultBackoff)
	buf := make([]byte, MaxLen+1)
	for attempt := 0; attempt <= retries; attempt, wait = attempt+1, 2*wait {
		if _, err := nc.Write(b); err != nil {
			return Reply{}, fmt.Errorf("msp: send to %s: %w", addr, ctxErr(ctx, err))
		}
		until := time.Now().Add(wait)
		if dl, ok := ctx.Deadline(); ok && dl.Before(until) {
			until = dl
		}
		nc.SetReadDeadline(until)
		r, err := awaitDatagram(nc, buf, b)
		var ne net.Error
		switch {
		case err == nil:
			return r, nil
		case ctx.Err() != nil:
			return Reply{}, fmt.Errorf("msp: send to %s: %w", addr, ctx.Err())
		case !errors.As(err, &ne) || !ne.Timeout():
			return Reply{}, fmt.Errorf("msp: reply from %s: %w", addr, err)
		}
	}
	return Reply{}, fmt.Errorf("%w from %s after %d datagrams", ErrNoReply, addr, retries+1)
}

// awaitDatagram reads until an answer to request arrives or the read
// deadline passes, ignoring datagrams that are not one.
func awaitDatagram(nc net.Conn, buf, request []byte) (Reply, error) {
	for {
		n, err := nc.Read(buf)
		if err != nil {
			return Reply{}, err
		}
		if request[0] == Version1 {
			if bytes.Equal(buf[:n], request) {
				return Reply{OK: true}, nil
			}
			continue
		}
		if r, err := parseReply(buf[:n]); err == nil {
			return r, nil
		}
	}
}

// parseReply decodes exactly one reply: '+' or '-', text, NUL.
func parseReply(b []byte) (Reply, error) {
	if len(b) < 2 || b[len(b)-1] != 0 || (b[0] != '+' && b[0] != '-') {
		return Reply{}, fmt.Errorf("%w: %q", ErrBadReply, b[:min(len(b), 32)])
	}
	text := b[1 : len(b)-1]
	if bytes.IndexByte(text, 0) >= 0 {
		return Reply{}, fmt.Errorf("%w: NUL inside the explanation", ErrBadReply)
	}
	s, _ := strip(string(text), className)
	return Reply{OK: b[0] == '+', Text: s}, nil
}

// Conn is a revision 'B' TCP connection carrying many messages. Send may be
// called from several goroutines: requests are written in order and replies,
// which the server sends in the same order, are matched to them, so senders
// pipeline. A Send that times out breaks the connection (its reply would
// arrive out of turn); after any error, dial again.
//
// Conn owns its network connection and one reader goroutine; Close ends both.
type Conn struct {
	nc      net.Conn
	timeout time.Duration
	done    chan struct{} // closed when the reader goroutine returns

	wmu sync.Mutex // serialises writes so requests and waiters stay in one order

	mu      sync.Mutex    // guards waiters and err
	waiters []chan result // one per written request, oldest first
	err     error         // why the connection broke; set once
}

type result struct {
	reply Reply
	err   error
}

// Dial opens a [Conn] to addr with the zero [Client]'s settings.
func Dial(ctx context.Context, addr string) (*Conn, error) {
	return (&Client{}).Dial(ctx, addr)
}

// Dial opens a [Conn] to addr; c.Timeout bounds each Send.
func (c *Client) Dial(ctx context.Context, addr string) (*Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("msp: %w", err) // err names network and address
	}
	conn := &Conn{nc: nc, timeout: c.timeout(), done: make(chan struct{})}
	go conn.readReplies()
	return conn, nil
}

// Send writes m (a revision 'B' message; a missing cookie is filled in as by
// [Client.Send]) and waits for its reply.
func (c *Conn) Send(m *Message) (Reply, error) {
	if m.version() != Version2 {
		return Reply{}, fmt.Errorf("%w: Conn carries revision B only", ErrVersion)
	}
	b, err := prepare(m)
	if err != nil {
		return Reply{}, err
	}
	ch := make(chan result, 1)
	c.wmu.Lock()
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		c.wmu.Unlock()
		return Reply{}, c.err
	}
	c.waiters = append(c.waiters, ch)
	c.mu.Unlock()
	c.nc.SetWriteDeadline(time.Now().Add(c.timeout))
	_, err = c.nc.Write(b)
	c.wmu.Unlock()
	if err != nil {
		c.fail(fmt.Errorf("msp: send: %w", err))
	}
	t := time.NewTimer(c.timeout)
	defer t.Stop()
	select {
	case r := <-ch:
		return r.reply, r.err
	case <-t.C:
		c.fail(fmt.Errorf("%w: no reply within %v", ErrNoReply, c.timeout))
		r := <-ch
		return r.reply, r.err
	}
}

// readReplies hands each reply to the oldest waiting Send.
func (c *Conn) readReplies() {
	defer close(c.done)
	br := bufio.NewReaderSize(c.nc, MaxLen+1)
	for {
		line, err := br.ReadSlice(0)
		if err != nil {
			c.fail(fmt.Errorf("%w: %w", ErrConnClosed, err))
			return
		}
		r, err := parseReply(line)
		c.mu.Lock()
		var ch chan result
		if len(c.waiters) > 0 && err == nil {
			ch = c.waiters[0]
			c.waiters = c.waiters[1:]
		}
		c.mu.Unlock()
		if ch == nil {
			if err == nil {
				err = fmt.Errorf("%w: reply to no request", ErrBadReply)
			}
			c.fail(err)
			return
		}
		ch <- result{reply: r}
	}
}

// fail breaks the connection: every waiting Send gets err (or the first
// error recorded) and later Sends fail at once.
func (c *Conn) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	ws := c.waiters
	c.waiters = nil
	err = c.err
	c.mu.Unlock()
	c.nc.Close()
	for _, ch := range ws {
		ch <- result{err: err}
	}
}

// Close closes the connection and waits for its reader goroutine. Sends
// still waiting fail with [ErrConnClosed]. Close is idempotent.
func (c *Conn) Close() error {
	c.fail(ErrConnClosed)
	<-c.done
	return nil
}

// broken returns why the connection broke, or nil.
func (c *Conn) broken() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}
