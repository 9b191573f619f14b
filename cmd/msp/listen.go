package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/sessionclient"
	"github.com/msprelay/msprelay/sessionproto"
	"github.com/msprelay/msprelay/sessionsock"
)

// sessionFlags are the flags every session command shares.
type sessionFlags struct {
	addr, user, secretFile string
	timeout                time.Duration
}

func addSessionFlags(fs interface {
	StringVar(*string, string, string, string)
	DurationVar(*time.Duration, string, time.Duration, string)
}, sf *sessionFlags, e env) {
	fs.StringVar(&sf.addr, "session", e.getenv("MSPRELAY_SESSION_ADDR"), "node session address: host:port or unix:/path (default: the local node's socket)")
	fs.StringVar(&sf.user, "user", loginName(e), "user to sign in as (root may claim any name on the local socket)")
	fs.StringVar(&sf.secretFile, "secret-file", e.getenv("MSPRELAY_SECRET_FILE"), "file holding this user's session secret (TCP sessions with --session-auth secret)")
	fs.DurationVar(&sf.timeout, "timeout", 10*time.Second, "bound on connecting and each command")
}

// toLatin1 converts the flags' names to ISO 8859-1 before anything is sent;
// call it once, right after parsing.
func (sf *sessionFlags) toLatin1() error {
	u, err := toLatin1("--user", sf.user)
	sf.user = u
	return err
}

// connect dials the first reachable session listener and signs in.
// addTermFlag adds --term, defaulting to the caller's tty or, without one,
// to cmd-PID.
func addTermFlag(fs *flag.FlagSet, cmd string) *string {
	def := ttyName()
	if def == "" {
		def = fmt.Sprintf("%s-%d", cmd, os.Getpid())
	}
	return fs.String("term", def, "terminal name to sign in at")
}

// signInNames converts --user and the terminal name to ISO 8859-1, the
// octets the session protocol carries, before anything is sent, so that a
// name Latin-1 cannot hold is refused first; it returns the terminal's.
func (sf *sessionFlags) signInNames(term string) (string, error) {
	if err := sf.toLatin1(); err != nil {
		return "", err
	}
	return toLatin1("--term", term)
}

func (sf *sessionFlags) connect(ctx context.Context, term string, state principal.State, extra ...sessionclient.SignInOption) (*sessionclient.Client, *sessionclient.SignedIn, error) {
	opts := append([]sessionclient.SignInOption(nil), extra...)
	if sf.secretFile != "" {
		b, err := os.ReadFile(sf.secretFile)
		if err != nil {
			return nil, nil, fmt.Errorf("secret: %w", err)
		}
		opts = append(opts, sessionclient.WithSecret(strings.TrimSpace(string(b))))
	}
	cctx, cancel := context.WithTimeout(ctx, sf.timeout)
	defer cancel()
	var looked []string
	for _, a := range sessionAddrs(sf.addr) {
		c, err := sessionclient.Dial(cctx, a)
		if err != nil {
			// One line for people: where, and why in a few words.
			looked = append(looked, fmt.Sprintf("%s (%s)", a, dialReason(err)))
			continue
		}
		si, err := c.SignIn(cctx, sf.user, term, state, opts...)
		if err != nil {
			c.Close()
			return nil, nil, fmt.Errorf("sign in as %s at %s: %w", show(sf.user), a, err)
		}
		return c, si, nil
	}
	return nil, nil, fmt.Errorf("no node answers; looked at %s. Start msprelay-node, or give --session ADDR", strings.Join(looked, ", "))
}

// dialReason says in a few words why a session address did not answer.
func dialReason(err error) string {
	switch {
	case errors.Is(err, syscall.ENOENT):
		return "no such socket"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "nothing listens"
	case errors.Is(err, syscall.EACCES):
		return "permission denied"
	case errors.Is(err, sessionsock.ErrUntrustedSocket):
		return "served by an untrusted user"
	case errors.Is(err, context.DeadlineExceeded):
		return "no answer in time"
	}
	if oe := (*net.OpError)(nil); errors.As(err, &oe) && oe.Err != nil {
		return oe.Err.Error()
	}
	return err.Error()
}

func cmdListen(ctx context.Context, args []string, e env) int {
	fs := newFlags("listen", "[flags]\n\nSigns in and prints each message (and watched users' presence) as it arrives.", e)
	var sf sessionFlags
	addSessionFlags(fs, &sf, e)
	term := addTermFlag(fs, "listen")
	stateName := fs.String("state", "online", "presence state: online, busy, away, idle, hidden (or NLN, BSY, AWY, IDL, HDN)")
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	watch := fs.String("watch", "", "comma-separated users whose presence to report")
	reconnect := fs.Bool("reconnect", true, "sign in again, with backoff, when the node restarts or the connection is lost")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return fail(e, exitUsage, "listen takes no arguments (got %q)", fs.Arg(0))
	}
	state, err := principal.ParseState(*stateName)
	if err != nil {
		return fail(e, exitUsage, "--state: %v", err)
	}
	termName, err := sf.signInNames(*term)
	if err != nil {
		return fail(e, exitUsage, "%v", err)
	}
	var watched []string
	for _, u := range strings.Split(*watch, ",") {
		if u = strings.TrimSpace(u); u == "" {
			continue
		}
		l, err := toLatin1("--watch", u)
		if err != nil {
			return fail(e, exitUsage, "%v", err)
		}
		watched = append(watched, l)
	}
	// Acknowledge every message once it is written out, so that the node
	// keeps (and later redelivers) what never reached our output.
	k := newKeeper(&sf, termName, state, e, sessionclient.WithAcks())
	out := &printer{w: e.stdout, json: *asJSON, loc: time.Local}
	k.json, k.jsonln = *asJSON, out.writeJSON
	// The initial terminals of each watched user (ILN) arrive on the
	// session's event stream as well as in Watch's reply; the listen loop
	// prints them from the stream, in order with later changes, so they
	// are not printed here.
	watchAll := func(ctx context.Context, c *sessionclient.Client) error {
		for _, u := range watched {
			cctx, cancel := context.WithTimeout(ctx, sf.timeout)
			_, err := c.Watch(cctx, u)
			cancel()
			if err != nil {
				return fmt.Errorf("watch %s: %w", show(u), err)
			}
		}
		return nil
	}
	k.rejoin = watchAll
	c, si, err := k.dial(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return exitOK // interrupted while signing in: the user asked to stop
		}
		return fail(e, exitUsage, "%v", err)
	}
	if err := watchAll(ctx, c); err != nil {
		c.Close()
		return fail(e, exitUsage, "%v", err)
	}
	if !*asJSON {
		fmt.Fprintf(e.stderr, "msp: listening as %s at %s on %s (%s); Ctrl-C to stop\n", show(si.User), show(si.Term), safeUTF8(si.Node), si.State)
	}
	seen := newRecentSet(maxRecentIDs)
	for {
		code, cause := listenLoop(ctx, c, out, seen, sf.timeout, e)
		c.Close()
		if cause == nil {
			return code
		}
		if !*reconnect || !retryable(cause) {
			return fail(e, exitNack, "session ended: %s", peopleError(cause))
		}
		k.lost(cause)
		if c, _, err = k.reconnect(ctx); err != nil {
			if ctx.Err() != nil {
				return exitOK
			}
			return fail(e, exitNack, "cannot sign in again: %s", peopleError(err))
		}
	}
}

// listenLoop prints pushes until ctx ends (sign out, exit 0) or the session
// ends; then it returns the session's end as cause, for the caller to
// reconnect. A nil cause means the command is over with code. seen holds
// the ids shown so far, across reconnections, so that a message the node
// hands out again after a reconnection (its ACK was lost with the
// connection) is shown once.
func listenLoop(ctx context.Context, c *sessionclient.Client, out *printer, seen *recentSet, timeout time.Duration, e env) (code int, cause error) {
	ping := time.NewTicker(30 * time.Second)
	defer ping.Stop()
	msgs, events, convs := c.Messages(), c.Events(), c.Conversations()
	batch := make([]*sessionproto.Message, 0, maxListenBatch)
	ids := make([]string, 0, maxListenBatch)
	for {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			if err := c.SignOut(sctx); err != nil && c.Err() == nil {
				return fail(e, exitNack, "sign out: %s", peopleError(err)), nil
			}
			return exitOK, nil
		case m, ok := <-msgs:
			if !ok {
				return 0, sessionEnd(c)
			}
			// The messages that arrived together (the node pushes them
			// in one write, the client reads them in one read) are
			// written out in one write and acknowledged in one.
			batch, ended := takeBatch(append(batch[:0], m), msgs)
			// A message comes again, with the same id, when our ACK did
			// not reach the node in time: show it once, acknowledge always.
			if err := out.messages(batch, seen); err != nil {
				return fail(e, exitUsage, "writing output: %v", err), nil
			}
			if ended {
				// Nothing can be acknowledged any more; the node hands
				// these out again after the reconnection.
				return 0, sessionEnd(c)
			}
			ids = ids[:0]
			for _, m := range batch {
				ids = append(ids, m.ID)
			}
			clear(batch) // the messages are written; keep none alive
			actx, cancel := context.WithTimeout(ctx, timeout)
			err := c.AckAll(actx, ids)
			cancel()
			if err != nil && ctx.Err() == nil {
				// The node keeps what was not acknowledged and hands it
				// out again after the reconnection.
				return 0, fmt.Errorf("acknowledging %d messages: %w", len(ids), err)
			}
		case ev, ok := <-events:
			if !ok {
				events = nil // messages channel reports the end
				continue
			}
			if err := out.event(ev); err != nil {
				return fail(e, exitUsage, "writing output: %v", err), nil
			}
		case ev, ok := <-convs:
			if ok && ev.Type == "invite" { // listen joins nothing, so rings are all it gets
				_ = (&chatPrinter{w: out.w, json: out.json}).event(ev)
			}
			if !ok {
				convs = nil
			}
		case <-ping.C:
			// A ping that gets no answer within the timeout means the
			// node or the network is gone: end this session and
			// reconnect rather than wait for TCP to notice.
			pctx, cancel := context.WithTimeout(ctx, timeout)
			iv, err := c.Ping(pctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				return 0, fmt.Errorf("no answer to a ping: %w", err)
			}
			if err == nil && iv > 0 && iv/2 < 30*time.Second {
				ping.Reset(iv / 2)
			}
		}
	}
}

// maxListenBatch bounds the messages listen writes out and acknowledges
// together.
const maxListenBatch = 64

// takeBatch adds to batch the messages already waiting in msgs, without
// waiting for more, up to maxListenBatch; ended reports that msgs was
// closed meanwhile.
func takeBatch(batch []*sessionproto.Message, msgs <-chan *sessionproto.Message) (_ []*sessionproto.Message, ended bool) {
	for len(batch) < maxListenBatch {
		select {
		case m, ok := <-msgs:
			if !ok {
				return batch, true
			}
			batch = append(batch, m)
		default:
			return batch, false
		}
	}
	return batch, false
}

// sessionEnd is why c's session ended, never nil.
func sessionEnd(c *sessionclient.Client) error {
	<-c.Done()
	if err := c.Err(); err != nil {
		return err
	}
	return sessionclient.ErrConnClosed
}

// printer writes messages and presence events as text or JSON lines, all
// of it made safe for a terminal by render.go. It belongs to the listen
// loop's goroutine.
type printer struct {
	w    io.Writer
	json bool
	loc  *time.Location // time zone of the times shown
	buf  bytes.Buffer   // a batch of messages, written out at once (messages)
}

// messages writes out the messages of ms not in seen (adding them), in one
// write.
func (p *printer) messages(ms []*sessionproto.Message, seen *recentSet) error {
	w := p.w
	p.buf.Reset()
	p.w = &p.buf
	for _, m := range ms {
		if seen.add(m.ID) {
			continue
		}
		if err := p.message(m); err != nil {
			p.w = w
			return err
		}
	}
	p.w = w
	if p.buf.Len() == 0 {
		return nil
	}
	_, err := w.Write(p.buf.Bytes())
	if p.buf.Cap() > 64<<10 {
		p.buf = bytes.Buffer{} // a rare huge batch does not stay
	}
	return err
}

type jsonMessage struct {
	Type       string `json:"type"`
	ID         string `json:"id"`
	Sender     string `json:"sender"`
	SenderTerm string `json:"sender_term"`
	Recipient  string `json:"recipient"`
	RecipTerm  string `json:"recip_term"`
	Text       string `json:"text"`
	OriginNode string `json:"origin_node"`
	OriginAddr string `json:"origin_addr"`
	Transport  string `json:"transport"`
	Verified   bool   `json:"verified"`
	// SenderMethod is how the node established the sender ("none",
	// "peercred", "kernel", "signature", "secret", "trust"; "" from an
	// older node).
	SenderMethod string `json:"sender_method"`
	// SenderUser is the user the node proved sent it ("" when none);
	// when it is not Sender, Sender is only a claim.
	SenderUser string    `json:"sender_user"`
	Time       time.Time `json:"time"`
	// Queued: the message waited in the mailbox; Sent is when it was
	// sent (the same instant as Time, named for people reading queued mail).
	Queued bool      `json:"queued"`
	Sent   time.Time `json:"sent"`
}

type jsonEvent struct {
	Type  string `json:"type"` // "presence"
	Event string `json:"event"`
	User  string `json:"user"`
	Node  string `json:"node"`
	Term  string `json:"term"`
	State string `json:"state"`
}

func (p *printer) message(m *sessionproto.Message) error {
	if p.json {
		text := msp.Latin1ToUTF8(strings.ReplaceAll(m.Text, "\r\n", "\n"))
		return p.writeJSON(jsonMessage{Type: "message", ID: m.ID,
			Sender: msp.Latin1ToUTF8(m.Sender), SenderTerm: msp.Latin1ToUTF8(m.SenderTerm),
			Recipient: msp.Latin1ToUTF8(m.Recipient), RecipTerm: msp.Latin1ToUTF8(m.RecipTerm),
			Text: text, OriginNode: m.OriginNode, OriginAddr: m.OriginAddr, Transport: m.Transport,
			Verified: m.Verified, SenderMethod: m.SenderMethod, SenderUser: msp.Latin1ToUTF8(m.SenderUser), Time: m.Time,
			Queued: m.Queued, Sent: m.Time})
	}
	_, err := io.WriteString(p.w, markQueued(renderMessage(m, p.loc), m, p.loc))
	return err
}

func (p *printer) event(ev sessionclient.PresenceEvent) error {
	kind := "online"
	switch {
	case ev.Initial:
		kind = "initial"
	case ev.State == principal.Offline:
		kind = "offline"
	}
	if p.json {
		return p.writeJSON(jsonEvent{Type: "presence", Event: kind, User: msp.Latin1ToUTF8(ev.User),
			Node: ev.Node, Term: msp.Latin1ToUTF8(ev.Term), State: ev.State.String()})
	}
	_, err := io.WriteString(p.w, renderEvent(ev))
	return err
}

// writeJSON writes v as one line of JSON safe for a terminal.
func (p *printer) writeJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = p.w.Write(safeJSON(append(b, '\n')))
	return err
}

// maxRecentIDs bounds how many message ids listen remembers to drop repeats.
const maxRecentIDs = 4096

// recentSet is a bounded set of message ids, oldest forgotten first. It
// belongs to the listen loop's goroutine.
type recentSet struct {
	ids   map[string]struct{}
	order []string // ring of the ids in ids, oldest at next
	next  int
}

func newRecentSet(n int) *recentSet {
	return &recentSet{ids: make(map[string]struct{}, n), order: make([]string, 0, n)}
}

// add records id and reports whether it was already there. Empty ids are
// never repeats.
func (r *recentSet) add(id string) bool {
	if id == "" {
		return false
	}
	if _, ok := r.ids[id]; ok {
		return true
	}
	if len(r.order) < cap(r.order) {
		r.order = append(r.order, id)
	} else {
		delete(r.ids, r.order[r.next])
		r.order[r.next] = id
		r.next = (r.next + 1) % len(r.order)
	}
	r.ids[id] = struct{}{}
	return false
}

// markQueued adds "(queued, sent Dec 06 17:07)" to the header line (the
// first line) of a rendered message that waited in the mailbox, so that
// mail up to a week old does not pass for live (issue 20, item 5).
func markQueued(rendered string, m *sessionproto.Message, loc *time.Location) string {
	if !m.Queued {
		return rendered
	}
	mark := " (queued"
	if !m.Time.IsZero() {
		mark += ", sent " + m.Time.In(loc).Format("Jan 02 15:04")
	}
	mark += ")"
	start := len(rendered) - len(strings.TrimLeft(rendered, "\n"))
	i := strings.IndexByte(rendered[start:], '\n')
	if i < 0 {
		return rendered + mark
	}
	end := start + i
	if end > start && rendered[end-1] == ':' { // "Message from ... at 17:07:00:"
		end--
	}
	return rendered[:end] + mark + rendered[end:]
}
