package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/sessionclient"
	"github.com/msprelay/msprelay/sessionproto"
)

// defaultMSPServer is where `msp send` looks last, after the local session
// socket and $MSPRELAY_SERVER.
const defaultMSPServer = "localhost:18"

// sessionCookieLen is the length of the cookie a node makes up for a
// session's SND (16 hex digits), which counts against MSP's limit.
const sessionCookieLen = 16

// withDefaultPort adds MSP's port 18 to a host given without one
// ("localhost" -> "localhost:18", "::1" -> "[::1]:18").
func withDefaultPort(hostport string) string {
	if _, _, err := net.SplitHostPort(hostport); err == nil {
		return hostport
	}
	h := strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
	return net.JoinHostPort(h, "18")
}

// sendTarget is one place `msp send` may reach a node: a session socket
// (SND on a signed-in session: the node knows the sender by the socket's
// peer credentials) or an MSP server.
type sendTarget struct {
	session string // session address, or ""
	mspAddr string // MSP host:port, or ""
	why     string // where the address came from, for "looked at ..."
}

func (t sendTarget) String() string {
	if t.session != "" {
		return t.session + " (" + t.why + ")"
	}
	return t.mspAddr + " (" + t.why + ")"
}

func cmdSend(ctx context.Context, args []string, e env) int {
	fs := newFlags("send", "[flags] RECIPIENT [MESSAGE...]\n\nRECIPIENT is user, user@node, or '' for any user of the node; MESSAGE is read from stdin when absent.\n"+
		"Without --server, msp sends through the local node's session socket (the node knows who you are),\n"+
		"then to $MSPRELAY_SERVER, then to localhost:18, like listen finds its node.", e)
	server := fs.String("server", "", "send plain MSP to this server, host[:port] (port 18 when absent); default: the local node, see above")
	sessAddr := fs.String("session", e.getenv("MSPRELAY_SESSION_ADDR"), "node session address to send through (default: the local node's socket)")
	udp := fs.Bool("udp", false, "send over UDP (retransmits with the same cookie; no reply means not delivered); implies plain MSP")
	v1 := fs.Bool("v1", false, "send an RFC 1159 version 'A' message (no sender, no cookie, no reply over TCP); implies plain MSP")
	term := fs.String("term", "", "recipient terminal: empty = the most recently active one, * = all")
	from := fs.String("from", loginName(e), "sender user name; a name other than yours implies plain MSP, shown UNVERIFIED")
	fromTerm := fs.String("from-term", ttyName(), "sender terminal (plain MSP)")
	cookie := fs.String("cookie", "", "cookie (default: generated; at most 32 octets); implies plain MSP")
	sig := fs.String("signature", "", "SIGNATURE part to send as is (see --secret-file to sign); implies plain MSP")
	secretFile := fs.String("secret-file", e.getenv("MSPRELAY_SECRET_FILE"), "file holding the sender's secret: sign the message (hm2, timed; env MSPRELAY_SECRET_FILE); implies plain MSP")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	quiet := fs.Bool("q", false, "do not print the server's '+' explanation")
	split := fs.Bool("split", false, "send a text over MSP's 511-octet limit as numbered parts \"(1/3) ...\"")
	translit := fs.Bool("translit", false, "replace characters ISO 8859-1 cannot hold by the nearest Latin-1 text (\"€\" -> \"EUR\", \"ő\" -> \"o\") instead of refusing")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() < 1 {
		fs.Usage()
		return exitUsage
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	recipient := fs.Arg(0)
	var text string
	if fs.NArg() > 1 {
		text = strings.Join(fs.Args()[1:], " ")
	} else {
		limit := int64(msp.MaxLen + 1)
		if *split {
			limit = maxSplitInput + 1
		}
		b, err := io.ReadAll(io.LimitReader(e.stdin, limit))
		if err != nil {
			return fail(e, exitUsage, "reading message from stdin: %v", err)
		}
		if *split && int64(len(b)) > maxSplitInput {
			return fail(e, exitUsage, "message from stdin is over %d octets: too long even for --split", maxSplitInput)
		}
		text = strings.TrimRight(string(b), "\n")
	}
	var secret []byte
	if *secretFile != "" {
		if *v1 || *sig != "" {
			return fail(e, exitUsage, "--secret-file signs the message: not with --v1 (no SIGNATURE part) or --signature")
		}
		var err error
		if secret, err = readSecret(*secretFile); err != nil {
			return fail(e, exitUsage, "%v", err)
		}
	}
	if strings.TrimSpace(text) == "" {
		return fail(e, exitUsage, "empty message: nothing sent (give the text as arguments or on stdin)")
	}
	if *translit {
		t, n := transliterate(text)
		if n > 0 && !*quiet {
			fmt.Fprintf(e.stderr, "msp: --translit replaced %d character(s) ISO 8859-1 cannot hold\n", n)
		}
		text = t
	}
	m := &msp.Message{Version: msp.Version2, Recipient: recipient, RecipTerm: *term, Text: text,
		Sender: *from, SenderTerm: *fromTerm, Cookie: *cookie, Signature: *sig}
	if *v1 {
		m = &msp.Message{Version: msp.Version1, Recipient: recipient, RecipTerm: *term, Text: text}
	}
	parts := []struct {
		what string
		p    *string
	}{{"recipient", &m.Recipient}, {"--term", &m.RecipTerm}, {"message", &m.Text},
		{"--from", &m.Sender}, {"--from-term", &m.SenderTerm}, {"--cookie", &m.Cookie}}
	for _, pt := range parts {
		v, err := toLatin1(pt.what, *pt.p)
		if err != nil {
			if pt.what == "message" {
				return fail(e, exitUsage, "%v (--translit replaces it)", err)
			}
			return fail(e, exitUsage, "%v", err)
		}
		*pt.p = v
	}
	m.Text = msp.NormalizeNewlines(m.Text)

	// Where to send: the session socket unless the flags ask for what only
	// plain MSP can say (another sender name, a cookie, a signature, UDP,
	// revision A) or name a server.
	self, _ := toLatin1("user", loginName(e))
	// A "#room" recipient is the node's MSP bridge into a conversation,
	// which the session protocol's SND does not reach.
	plain := set["server"] || *udp || *v1 || set["cookie"] || set["signature"] || set["from-term"] || secret != nil ||
		strings.HasPrefix(recipient, "#") ||
		(set["from"] && principal.CanonicalUser(m.Sender) != principal.CanonicalUser(self))
	var targets []sendTarget
	if !plain {
		for _, a := range sessionAddrs(*sessAddr) {
			targets = append(targets, sendTarget{session: a, why: "session socket"})
		}
	}
	switch {
	case set["server"]:
		targets = append(targets, sendTarget{mspAddr: withDefaultPort(*server), why: "--server"})
	default:
		if v := e.getenv("MSPRELAY_SERVER"); v != "" {
			targets = append(targets, sendTarget{mspAddr: withDefaultPort(v), why: "$MSPRELAY_SERVER"})
		}
		targets = append(targets, sendTarget{mspAddr: defaultMSPServer, why: "default"})
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	var looked []string
	for _, t := range targets {
		var code int
		var reached bool
		if t.session != "" {
			code, reached = sendSession(ctx, t, self, m, *split, *quiet, *timeout, e)
		} else {
			code, reached = sendMSP(ctx, t, m, secret, *udp, *split, *quiet, *timeout, e)
		}
		if reached {
			return code
		}
		looked = append(looked, t.String())
	}
	return fail(e, exitUsage, "no node answers; looked at %s. Start msprelay-node or give --server HOST", strings.Join(looked, ", "))
}

// readSecret reads a secret file: the secret is its content, trimmed (as
// for msp listen's --secret-file).
func readSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secret: %w", err)
	}
	secret := bytes.TrimSpace(b)
	if len(secret) == 0 {
		return nil, fmt.Errorf("secret: %s is empty", path)
	}
	return secret, nil
}

// maxSplitInput bounds what --split reads from stdin (about 30 parts).
const maxSplitInput = 16 << 10

// usable is how many octets of text fit in m with its other parts as they
// are: MSP's limit of 511 octets for the whole message less the rest.
func usable(m *msp.Message) int {
	c := *m
	c.Text = ""
	return msp.MaxLen - c.EncodedLen()
}

// partsOf returns text as the one message to send when it fits in max
// octets, its numbered parts with split, or (ok false) the exit code after
// saying the usable maximum.
func partsOf(text string, max int, split bool, e env) ([]string, int, bool) {
	if len(text) <= max {
		return []string{text}, 0, true
	}
	if !split {
		return nil, fail(e, exitUsage, "message is %d octets; at most %d fit for this recipient and sender (MSP's 511-octet limit less the other parts); shorten it or use --split", len(text), max), false
	}
	ps, err := splitText(text, max)
	if err != nil {
		return nil, fail(e, exitUsage, "%v", err), false
	}
	return ps, 0, true
}

// splitText cuts text into numbered parts "(i/n) ..." of at most max
// octets each, at a space or line end where one is near, never inside a CR
// LF pair.
func splitText(text string, max int) ([]string, error) {
	for n := 2; n < 1000; n *= 10 { // the label's width depends on how many parts there are
		label := len(fmt.Sprintf("(%d/%d) ", n*10-1, n*10-1))
		room := max - label
		if room < 16 {
			return nil, fmt.Errorf("only %d octets fit in one message for this recipient and sender: too few to split into", max)
		}
		var chunks []string
		rest := text
		for len(rest) > 0 {
			if len(rest) <= room {
				chunks = append(chunks, rest)
				break
			}
			cut := room
			if i := strings.LastIndexAny(rest[:room], " \n"); i > room/2 {
				cut = i + 1
			}
			if cut > 0 && rest[cut-1] == '\r' { // keep CR LF together
				cut--
			}
			chunks = append(chunks, strings.TrimRight(rest[:cut], " "))
			rest = strings.TrimLeft(rest[cut:], " ")
		}
		if len(chunks) < n*10 {
			out := make([]string, len(chunks))
			for i, c := range chunks {
				out[i] = fmt.Sprintf("(%d/%d) %s", i+1, len(chunks), c)
			}
			return out, nil
		}
	}
	return nil, errors.New("message too long even for --split")
}

// sendSession sends through a session socket: SND on a session signed in
// without a terminal. reached is false when nothing answers there, so that
// the caller tries the next place.
func sendSession(ctx context.Context, t sendTarget, user string, m *msp.Message, split, quiet bool, timeout time.Duration, e env) (code int, reached bool) {
	c, err := sessionclient.Dial(ctx, t.session)
	if err != nil {
		return 0, false
	}
	defer c.Close()
	if _, err := c.SignIn(ctx, user, sessionproto.NoTerminal, principal.Offline); err != nil {
		return fail(e, exitUsage, "signing in at %s to send: %s", t.session, peopleError(err)), true
	}
	probe := &msp.Message{Version: msp.Version2, Recipient: m.Recipient, RecipTerm: m.RecipTerm,
		Sender: user, Cookie: strings.Repeat("0", sessionCookieLen)}
	texts, code, ok := partsOf(m.Text, usable(probe), split, e)
	if !ok {
		return code, true
	}
	for _, text := range texts {
		ok, summary, err := c.Send(ctx, m.Recipient, m.RecipTerm, text)
		if err != nil {
			return fail(e, exitUsage, "sending through %s: %s", t.session, peopleError(err)), true
		}
		if !ok {
			return fail(e, exitNack, "%s", orDefault(show(summary), "refused")), true
		}
		if !quiet && summary != "" {
			fmt.Fprintln(e.stdout, show(summary))
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_ = c.SignOut(sctx)
	return exitOK, true
}

// sendMSP sends plain MSP to t. reached is false when the connection is
// refused (nothing listens there), so that the caller tries the next
// place.
func sendMSP(ctx context.Context, t sendTarget, m *msp.Message, secret []byte, udp, split, quiet bool, timeout time.Duration, e env) (code int, reached bool) {
	room := *m
	if secret != nil {
		// The signature counts against the limit too; its length does not
		// depend on the text.
		if room.Cookie == "" {
			room.Cookie = msp.NewCookie()
		}
		room.Signature = msp.SignAt(&room, secret, time.Now())
	}
	texts, code, ok := partsOf(m.Text, usable(&room), split, e)
	if !ok {
		return code, true
	}
	c := &msp.Client{Network: "tcp", Timeout: timeout}
	if udp {
		c.Network = "udp"
	}
	for i, text := range texts {
		pm := *m
		pm.Text = text
		if pm.Version == msp.Version2 && (pm.Cookie == "" || i > 0) {
			pm.Cookie = msp.NewCookie()
		}
		if secret != nil {
			// Signed last, over the parts as sent (cookie included); the
			// time lets the node refuse a capture replayed later.
			pm.Signature = msp.SignAt(&pm, secret, time.Now())
		}
		if err := pm.Validate(); err != nil {
			return fail(e, exitUsage, "%v", err), true
		}
		r, err := c.Send(ctx, t.mspAddr, &pm)
		switch {
		case errors.Is(err, msp.ErrNoReply), udp && errors.Is(err, context.DeadlineExceeded):
			return fail(e, exitNack, "no acknowledgement from %s over UDP: not delivered (or every reply was lost)", t.mspAddr), true
		case err != nil && i == 0 && refused(err) && t.why != "--server":
			return 0, false
		case err != nil && refused(err):
			return fail(e, exitUsage, "no MSP server answers at %s (%s); is msprelay-node running there?", t.mspAddr, t.why), true
		case err != nil:
			return fail(e, exitUsage, "%v", err), true
		case r.None:
			continue // v1 over TCP: nothing is owed back
		case !r.OK:
			return fail(e, exitNack, "%s", orDefault(show(r.Text), "refused")), true
		}
		if !quiet && r.Text != "" {
			fmt.Fprintln(e.stdout, show(r.Text))
		}
	}
	return exitOK, true
}

// refused reports whether err means nothing listens at the address.
func refused(err error) bool {
	var oe *net.OpError
	var dnsErr *net.DNSError
	return errors.As(err, &oe) && oe.Op == "dial" || errors.As(err, &dnsErr)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
