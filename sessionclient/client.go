// Package sessionclient is the Go client of the msprelay session protocol
// (docs/SESSION.md), used by the msp CLI, bots and the tests. It imports only
// leaf packages (sessionproto, sessionsock, principal), so a program that
// uses it links none of the server: no NATS, memberlist or Prometheus.
package sessionclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/sessionproto"
	"github.com/msprelay/msprelay/sessionsock"
)

// Reasons a client connection ended, as reported by Client.Err.
var (
	ErrKicked         = errors.New("session: signed in again elsewhere on this terminal (OUT OTH)")
	ErrServerShutdown = errors.New("session: server shutting down (OUT SSD)")
	ErrIdleTimeout    = errors.New("session: closed by the server after idling (OUT TMO)")
	ErrSignedOut      = errors.New("session: signed out")
	ErrClientClosed   = errors.New("session: client closed")
	ErrConnClosed     = errors.New("session: connection closed by the server")
	// ErrWhoTruncated is returned by Who, with the entries that fitted, when
	// the server had more matches than one reply holds.
	ErrWhoTruncated = errors.New("session: WHO reply truncated")
)

// Buffer sizes of the channels a Client delivers pushes on.
const (
	MessageBuffer = 256
	EventBuffer   = 1024
)

// PresenceEvent is a presence report for a watched user: the initial state
// of each terminal (ILN, Initial set) or a change (NLN; FLN with State
// principal.Offline).
type PresenceEvent struct {
	Initial bool
	User    string
	Node    string
	Term    string
	State   principal.State
}

// SignedIn describes the session the server accepted.
type SignedIn struct {
	User   string          // canonical user name
	Term   string          // terminal, or sessionproto.NoTerminal
	State  principal.State //
	Node   string          // the node holding the session
	Method string          // "peercred", "secret" or "trust"
	Acks   bool            // the session acknowledges messages (WithAcks, MSPS2 or MSPS3)
	// BatchAcks: the server takes several ids per ACK line (MSPS3); without
	// it AckAll sends one line per id, still in one write.
	BatchAcks bool
}

// Client is a session-protocol client. It is safe for concurrent use:
// commands may be issued from any goroutine and are matched to replies by
// TrID.
//
// Ownership: the Client owns conn and one read-loop goroutine, started by
// NewClient and ended by Close (or by the server closing the connection).
// The read loop owns the Messages and Events channels and closes them when
// it ends. It waits when either channel is full, which also delays command
// replies: a client that watches users or has a terminal must keep reading
// them.
type Client struct {
	conn      net.Conn
	fr        *sessionproto.FrameReader
	closing   chan struct{} // closed by Close
	done      chan struct{} // closed when the read loop returns
	closeOnce sync.Once
	msgs      chan *sessionproto.Message
	events    chan PresenceEvent
	conv      convClient // conversations (convclient.go)

	wmu sync.Mutex // serialises writes of whole frames to conn

	// mu guards the fields below.
	mu      sync.Mutex
	next    uint32
	perAck  int // ids per ACK line: 1, or sessionproto.MaxAckIDs under MSPS3
	pending map[uint32]*call
	pings   []chan time.Duration // FIFO of PNGs awaiting QNG
	reason  error                // why the server ended the session (OUT, fatal error)
	err     error                // why the read loop ended
}

// call is one command awaiting its reply.
type call struct {
	reply chan *sessionproto.Frame // cap 1
	iln   []PresenceEvent          // ILN lines that arrived before the reply
}

// Dial connects to a session server. addr is "host:port", "unix:/path" or a
// path starting with "/". A Unix socket must be served by root or by the
// running user ([sessionsock.ErrUntrustedSocket] otherwise): its server decides which
// messages the client shows as verified.
func Dial(ctx context.Context, addr string) (*Client, error) {
	network, a := "tcp", addr
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, a = "unix", p
	} else if strings.HasPrefix(addr, "/") {
		network = "unix"
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, a)
	if err != nil {
		return nil, fmt.Errorf("session: dial %s: %w", addr, err)
	}
	if network == "unix" {
		if err := sessionsock.CheckServer(conn); err != nil {
			conn.Close()
			return nil, fmt.Errorf("session: dial %s: %w", addr, err)
		}
	}
	return NewClient(conn), nil
}

// NewClient runs the protocol over an established connection, which the
// Client then owns.
func NewClient(conn net.Conn) *Client {
	c := &Client{
		conn:    conn,
		fr:      sessionproto.NewServerReader(conn),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
		msgs:    make(chan *sessionproto.Message, MessageBuffer),
		events:  make(chan PresenceEvent, EventBuffer),
		conv:    newConvClient(),
		pending: map[uint32]*call{},
	}
	go c.readLoop()
	return c
}

// Messages returns the channel of pushed messages; it is closed when the
// connection ends.
func (c *Client) Messages() <-chan *sessionproto.Message { return c.msgs }

// Events returns the channel of presence reports (ILN, NLN, FLN) in arrival
// order; it is closed when the connection ends. ILN lines also come back
// from Watch.
func (c *Client) Events() <-chan PresenceEvent { return c.events }

// Done is closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err reports why the connection ended (ErrKicked, ErrServerShutdown,
// ErrIdleTimeout, ErrSignedOut, ErrClientClosed, ErrConnClosed, an *sessionproto.Error
// or an I/O error), or nil while it is up.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.errLocked()
}

func (c *Client) errLocked() error {
	if c.reason != nil {
		return c.reason
	}
	return c.err
}

// Close closes the connection and waits for the read loop. It is
// idempotent.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		close(c.closing)
		c.conn.Close()
	})
	<-c.done
	return nil
}

// SignInOption modifies SignIn.
type SignInOption func(*signInOptions)

type signInOptions struct {
	secret string
	acks   bool
}

// WithSecret supplies the user's shared secret for servers that challenge
// (secret mode). The secret itself is never sent.
func WithSecret(secret string) SignInOption {
	return func(o *signInOptions) { o.secret = secret }
}

// SignIn negotiates the version and signs in as user at term (sessionproto.NoTerminal for
// a session without presence) in state (principal.Offline means online).
func (c *Client) SignIn(ctx context.Context, user, term string, state principal.State, opts ...SignInOption) (*SignedIn, error) {
	var o signInOptions
	for _, f := range opts {
		f(&o)
	}
	versions := []string{sessionproto.ProtocolVersion}
	if o.acks {
		versions = []string{sessionproto.ProtocolVersionBatch, sessionproto.ProtocolVersionAcks, sessionproto.ProtocolVersion}
	}
	vf, _, err := c.expect(ctx, "VER", nil, versions...)
	if err != nil {
		return nil, err
	}
	// An older server answers MSPS2 (one id per ACK) or MSPS1 (no ACK).
	batch := o.acks && len(vf.Args) == 1 && vf.Args[0] == sessionproto.ProtocolVersionBatch
	acks := batch || (o.acks && len(vf.Args) == 1 && vf.Args[0] == sessionproto.ProtocolVersionAcks)
	c.mu.Lock()
	c.perAck = 1
	if batch {
		c.perAck = sessionproto.MaxAckIDs
	}
	c.mu.Unlock()
	args := []string{sessionproto.EncodeToken(user), sessionproto.EncodeToken(term)}
	if state != principal.Offline {
		args = append(args, state.Code())
	}
	f, _, err := c.call(ctx, "USR", nil, args...)
	if err != nil {
		return nil, err
	}
	if f.Cmd == "CHL" {
		if o.secret == "" || len(f.Args) != 1 {
			return nil, fmt.Errorf("%w: the server asks for a secret (use WithSecret)", sessionproto.ErrAuthFailed)
		}
		if f, _, err = c.call(ctx, "QRY", nil, sessionproto.ChallengeResponse(o.secret, f.Args[0], user, term)); err != nil {
			return nil, err
		}
	}
	if f.Cmd != "USR" || len(f.Args) != 6 || f.Args[0] != "OK" {
		return nil, fmt.Errorf("%w: unexpected sign-in reply %s %v", sessionproto.ErrBadPayload, f.Cmd, f.Args)
	}
	si := &SignedIn{Node: f.Args[4], Method: f.Args[5], Acks: acks, BatchAcks: batch}
	if si.User, si.Term, _, err = sessionproto.Decode3(f.Args[1], f.Args[2], "-"); err != nil {
		return nil, fmt.Errorf("%w: sign-in reply: %v", sessionproto.ErrBadPayload, err)
	}
	if si.State, err = principal.ParseState(f.Args[3]); err != nil {
		return nil, fmt.Errorf("%w: sign-in reply: %v", sessionproto.ErrBadPayload, err)
	}
	return si, nil
}

// SetState changes the session's presence state (CHG).
func (c *Client) SetState(ctx context.Context, st principal.State) error {
	_, _, err := c.expect(ctx, "CHG", nil, st.Code())
	return err
}

// Watch adds user to the watch list (ADD FL) and returns its terminals at
// that moment; later changes arrive on Events.
func (c *Client) Watch(ctx context.Context, user string) ([]PresenceEvent, error) {
	_, cl, err := c.expect(ctx, "ADD", nil, "FL", sessionproto.EncodeToken(user))
	if err != nil {
		return nil, err
	}
	return cl.iln, nil
}

// Unwatch removes user from the watch list (REM FL).
func (c *Client) Unwatch(ctx context.Context, user string) error {
	_, _, err := c.expect(ctx, "REM", nil, "FL", sessionproto.EncodeToken(user))
	return err
}

// Block refuses messages from sender ("user" or "user@node") (ADD BL).
func (c *Client) Block(ctx context.Context, sender string) error {
	_, _, err := c.expect(ctx, "ADD", nil, "BL", sessionproto.EncodeToken(sender))
	return err
}

// Unblock lifts a block (REM BL).
func (c *Client) Unblock(ctx context.Context, sender string) error {
	_, _, err := c.expect(ctx, "REM", nil, "BL", sessionproto.EncodeToken(sender))
	return err
}

// Watched returns the watch list (LST FL).
func (c *Client) Watched(ctx context.Context) ([]string, error) { return c.names(ctx, "LST", "FL") }

// Blocked returns the block list (LST BL).
func (c *Client) Blocked(ctx context.Context) ([]string, error) { return c.names(ctx, "LST", "BL") }

// Names returns the session's alias names (NAM LST).
func (c *Client) Names(ctx context.Context) ([]string, error) { return c.names(ctx, "NAM", "LST") }

func (c *Client) names(ctx context.Context, cmd, arg string) ([]string, error) {
	f, _, err := c.expect(ctx, cmd, nil, arg)
	if err != nil {
		return nil, err
	}
	return sessionproto.ParseNames(f.Payload)
}

// AddName claims an alias name for this session (NAM ADD).
func (c *Client) AddName(ctx context.Context, name string) error {
	_, _, err := c.expect(ctx, "NAM", nil, "ADD", sessionproto.EncodeToken(name))
	return err
}

// DelName gives an alias name up (NAM DEL).
func (c *Client) DelName(ctx context.Context, name string) error {
	_, _, err := c.expect(ctx, "NAM", nil, "DEL", sessionproto.EncodeToken(name))
	return err
}

// Who looks up the terminals answering to name ("user", "alias" or
// "user@node"); an empty name lists everyone. An absent user gives an empty
// list and no error.
func (c *Client) Who(ctx context.Context, name string) ([]principal.Entry, error) {
	var args []string
	if name != "" {
		args = []string{sessionproto.EncodeToken(name)}
	}
	f, _, err := c.expect(ctx, "WHO", nil, args...)
	if err != nil {
		return nil, err
	}
	es, err := sessionproto.ParseWho(f.Payload)
	if err != nil {
		return nil, err
	}
	if len(f.Args) != 1 {
		return es, fmt.Errorf("%w: WHO reply without a count", sessionproto.ErrBadPayload)
	}
	if n, _ := strconv.Atoi(f.Args[0]); n > len(es) {
		return es, fmt.Errorf("%w: %d of %d shown", ErrWhoTruncated, len(es), n)
	}
	return es, nil
}

// Send sends text to recipient at recipTerm (SND). ok tells whether the
// message reached at least one terminal (ACK) or not (NAK); summary is the
// server's explanation either way. err is set only when the command itself
// failed (e.g. *sessionproto.Error with sessionproto.CodeBadText).
func (c *Client) Send(ctx context.Context, recipient, recipTerm, text string) (ok bool, summary string, err error) {
	f, _, err := c.call(ctx, "SND", []byte(text), sessionproto.EncodeToken(recipient), sessionproto.EncodeToken(recipTerm))
	if err != nil {
		return false, "", err
	}
	switch f.Cmd {
	case "ACK":
		return true, f.Text, nil
	case "NAK":
		return false, f.Text, nil
	}
	return false, "", fmt.Errorf("%w: unexpected SND reply %s", sessionproto.ErrBadPayload, f.Cmd)
}

// Ping sends PNG and returns the interval the server asks pings to come
// within (QNG).
func (c *Client) Ping(ctx context.Context) (time.Duration, error) {
	ch := make(chan time.Duration, 1)
	c.mu.Lock()
	if err := c.errLocked(); err != nil {
		c.mu.Unlock()
		return 0, err
	}
	c.pings = append(c.pings, ch)
	c.mu.Unlock()
	if err := c.write(ctx, sessionproto.Line("PNG", 0, false)); err != nil {
		return 0, err
	}
	select {
	case d := <-ch:
		return d, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-c.done:
		select {
		case d := <-ch:
			return d, nil
		default:
			return 0, c.Err()
		}
	}
}

// SignOut sends OUT, waits for the server to close the session, and closes
// the client.
func (c *Client) SignOut(ctx context.Context) error {
	defer c.Close()
	if err := c.write(ctx, sessionproto.Line("OUT", 0, false)); err != nil {
		return err
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := c.Err(); !errors.Is(err, ErrSignedOut) {
		return err
	}
	return nil
}

// expect is call that also accepts only a reply of the command's own name.
func (c *Client) expect(ctx context.Context, cmd string, payload []byte, args ...string) (*sessionproto.Frame, *call, error) {
	f, cl, err := c.call(ctx, cmd, payload, args...)
	if err == nil && f.Cmd != cmd {
		err = fmt.Errorf("%w: %s answered with %s", sessionproto.ErrBadPayload, cmd, f.Cmd)
	}
	return f, cl, err
}

// call sends a command with a fresh TrID and waits for the reply carrying
// it. A numeric reply becomes an *sessionproto.Error.
func (c *Client) call(ctx context.Context, cmd string, payload []byte, args ...string) (*sessionproto.Frame, *call, error) {
	cl := &call{reply: make(chan *sessionproto.Frame, 1)}
	c.mu.Lock()
	if err := c.errLocked(); err != nil {
		c.mu.Unlock()
		return nil, nil, err
	}
	c.next++
	if c.next == 0 {
		c.next = 1 // TrID 0 is what the server uses when it could not read one
	}
	trid := c.next
	c.pending[trid] = cl
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.pending, trid)
		c.mu.Unlock()
	}
	var b []byte
	if payload != nil {
		b = sessionproto.WithPayload(cmd, trid, true, payload, args...)
	} else {
		b = sessionproto.Line(cmd, trid, true, args...)
	}
	if err := c.write(ctx, b); err != nil {
		forget()
		return nil, nil, err
	}
	var f *sessionproto.Frame
	select {
	case f = <-cl.reply:
	case <-ctx.Done():
		forget()
		return nil, nil, ctx.Err()
	case <-c.done:
		// The reply may have come just before the server closed (911).
		select {
		case f = <-cl.reply:
		default:
			return nil, nil, c.Err()
		}
	}
	if f.Code != 0 {
		return nil, nil, &sessionproto.Error{Code: f.Code, Text: f.Text}
	}
	return f, cl, nil
}

// write sends one whole frame, bounded by ctx's deadline.
func (c *Client) write(ctx context.Context, b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	dl, _ := ctx.Deadline()
	c.conn.SetWriteDeadline(dl)
	if _, err := c.conn.Write(b); err != nil {
		// A partial frame would desynchronise the stream: give up on it.
		c.conn.Close()
		return fmt.Errorf("session: write: %w", err)
	}
	return nil
}

// readLoop reads server frames until the connection ends.
func (c *Client) readLoop() {
	var err error
	for err == nil {
		var f *sessionproto.Frame
		if f, err = c.fr.Read(); err == nil {
			err = c.handle(f)
		}
	}
	select {
	case <-c.closing:
		err = ErrClientClosed
	default:
		if errors.Is(err, io.EOF) {
			err = ErrConnClosed
		}
	}
	c.conn.Close()
	c.mu.Lock()
	c.err = err
	c.pending = map[uint32]*call{}
	c.pings = nil
	c.mu.Unlock()
	close(c.msgs)
	close(c.events)
	close(c.conv.ch)
	close(c.done)
}

// handle routes one server frame. An error ends the connection.
func (c *Client) handle(f *sessionproto.Frame) error {
	if done, err := c.handleConv(f); done || err != nil {
		return err
	}
	switch f.Cmd {
	case "ILN", "NLN", "FLN":
		ev, err := parseEvent(f)
		if err != nil {
			return err
		}
		if f.Cmd == "ILN" {
			c.mu.Lock()
			if cl := c.pending[f.TrID]; cl != nil {
				cl.iln = append(cl.iln, ev)
			}
			c.mu.Unlock()
		}
		select {
		case c.events <- ev:
		case <-c.closing:
		}
	case "MSG":
		m, err := sessionproto.ParseMessage(f.Payload)
		if err != nil {
			return err
		}
		select {
		case c.msgs <- m:
		case <-c.closing:
		}
	case "QNG":
		secs := 0
		if len(f.Args) == 1 {
			secs, _ = strconv.Atoi(f.Args[0])
		}
		c.mu.Lock()
		if len(c.pings) > 0 {
			c.pings[0] <- time.Duration(secs) * time.Second
			c.pings = c.pings[1:]
		}
		c.mu.Unlock()
	case "OUT":
		c.setReason(outReason(f.Args))
	default:
		c.mu.Lock()
		cl := c.pending[f.TrID]
		delete(c.pending, f.TrID)
		c.mu.Unlock()
		switch {
		case cl != nil:
			cl.reply <- f
		case f.Code != 0:
			// An error for no command of ours (TrID 0): the server is about
			// to close the connection.
			c.setReason(&sessionproto.Error{Code: f.Code, Text: f.Text})
		}
	}
	return nil
}

func (c *Client) setReason(err error) {
	c.mu.Lock()
	if c.reason == nil {
		c.reason = err
	}
	c.mu.Unlock()
}

func outReason(args []string) error {
	if len(args) == 0 {
		return ErrSignedOut
	}
	switch args[0] {
	case "OTH":
		return ErrKicked
	case "SSD":
		return ErrServerShutdown
	case "TMO":
		return ErrIdleTimeout
	}
	return fmt.Errorf("session: signed out by the server (OUT %s)", args[0])
}

// parseEvent decodes ILN (state user node term), NLN (same) and FLN (user
// node term).
func parseEvent(f *sessionproto.Frame) (PresenceEvent, error) {
	ev := PresenceEvent{Initial: f.Cmd == "ILN"}
	a := f.Args
	if f.Cmd != "FLN" {
		if len(a) != 4 {
			return ev, fmt.Errorf("%w: %s with %d arguments", sessionproto.ErrBadPayload, f.Cmd, len(a))
		}
		st, err := principal.ParseState(a[0])
		if err != nil {
			return ev, fmt.Errorf("%w: %s: %v", sessionproto.ErrBadPayload, f.Cmd, err)
		}
		ev.State, a = st, a[1:]
	}
	if len(a) != 3 {
		return ev, fmt.Errorf("%w: %s with %d arguments", sessionproto.ErrBadPayload, f.Cmd, len(f.Args))
	}
	var err error
	if ev.User, ev.Node, ev.Term, err = sessionproto.Decode3(a[0], a[1], a[2]); err != nil {
		return ev, fmt.Errorf("%w: %s: %v", sessionproto.ErrBadPayload, f.Cmd, err)
	}
	return ev, nil
}
