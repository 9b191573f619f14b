package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/msprelay/msprelay/msp"
)

func cmdSend(ctx context.Context, args []string, e env) int {
	fs := newFlags("send", "[flags] RECIPIENT [MESSAGE...]\n\nRECIPIENT is user, user@node, or '' for any user of the node; MESSAGE is read from stdin when absent.", e)
	server := fs.String("server", envOr(e, "MSPRELAY_SERVER", "localhost:18"), "MSP server host:port (env MSPRELAY_SERVER)")
	udp := fs.Bool("udp", false, "send over UDP (retransmits with the same cookie; no reply means not delivered)")
	v1 := fs.Bool("v1", false, "send an RFC 1159 version 'A' message (no sender, no cookie, no reply over TCP)")
	term := fs.String("term", "", "recipient terminal: empty = the most recently active one, * = all")
	from := fs.String("from", loginName(e), "sender user name")
	fromTerm := fs.String("from-term", ttyName(), "sender terminal")
	cookie := fs.String("cookie", "", "cookie (default: generated; at most 32 octets)")
	sig := fs.String("signature", "", "SIGNATURE part to send as is (see --secret-file to sign)")
	secretFile := fs.String("secret-file", e.getenv("MSPRELAY_SECRET_FILE"), "file holding the sender's secret: sign the message (hm2, timed; env MSPRELAY_SECRET_FILE)")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	quiet := fs.Bool("q", false, "do not print the server's '+' explanation")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() < 1 {
		fs.Usage()
		return exitUsage
	}
	recipient := fs.Arg(0)
	var text string
	if fs.NArg() > 1 {
		text = strings.Join(fs.Args()[1:], " ")
	} else {
		b, err := io.ReadAll(io.LimitReader(e.stdin, msp.MaxLen+1))
		if err != nil {
			return fail(e, exitUsage, "reading message from stdin: %v", err)
		}
		text = strings.TrimRight(string(b), "\n")
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
			return fail(e, exitUsage, "%v", err)
		}
		*pt.p = v
	}
	if m.Version == msp.Version2 && m.Cookie == "" {
		m.Cookie = msp.NewCookie()
	}
	if *secretFile != "" {
		if *v1 || *sig != "" {
			return fail(e, exitUsage, "--secret-file signs the message: not with --v1 (no SIGNATURE part) or --signature")
		}
		secret, err := readSecret(*secretFile)
		if err != nil {
			return fail(e, exitUsage, "%v", err)
		}
		// Signed last, over the parts as sent (cookie included); the
		// time lets the node refuse a capture replayed later.
		m.Signature = msp.SignAt(m, secret, time.Now())
	}
	if err := m.Validate(); err != nil {
		return fail(e, exitUsage, "%v", err)
	}
	c := &msp.Client{Network: "tcp", Timeout: *timeout}
	if *udp {
		c.Network = "udp"
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	r, err := c.Send(ctx, *server, m)
	switch {
	case errors.Is(err, msp.ErrNoReply), *udp && errors.Is(err, context.DeadlineExceeded):
		return fail(e, exitNack, "no acknowledgement from %s over UDP: not delivered (or every reply was lost)", *server)
	case err != nil:
		return fail(e, exitUsage, "%v", err)
	case r.None:
		return exitOK // v1 over TCP: nothing is owed back
	case !r.OK:
		return fail(e, exitNack, "%s", orDefault(show(r.Text), "refused"))
	}
	if !*quiet && r.Text != "" {
		fmt.Fprintln(e.stdout, show(r.Text))
	}
	return exitOK
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

func envOr(e env, key, def string) string {
	if v := e.getenv(key); v != "" {
		return v
	}
	return def
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
