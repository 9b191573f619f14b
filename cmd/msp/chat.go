package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/msprelay/msprelay/identity"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/sessionclient"
	"github.com/msprelay/msprelay/sessionproto"
)

// chatJSON is one line of `msp chat --json` (and an invitation in `msp
// listen --json`).
type chatJSON struct {
	Type         string    `json:"type"` // message, join, leave, roster, invite
	Conversation string    `json:"conversation"`
	User         string    `json:"user"`
	Node         string    `json:"node"`
	Term         string    `json:"term"`
	Text         string    `json:"text,omitempty"`
	ID           string    `json:"id,omitempty"`
	Time         time.Time `json:"time"`
	Reason       string    `json:"reason,omitempty"`
	History      bool      `json:"history,omitempty"`
	// Verified (messages only) says whether the sender's node proved that
	// User sent it; anything else is a claim. SenderMethod says how
	// ("peercred", "kernel", "signature", "secret", "trust", "none"), and
	// SenderUser names the local user who really sent a message that
	// claims User.
	Verified     *bool  `json:"verified,omitempty"`
	SenderMethod string `json:"sender_method,omitempty"`
	SenderUser   string `json:"sender_user,omitempty"`
	Terminals    int    `json:"terminals,omitempty"` // rang: how many terminals were rung
	Code         int    `json:"code,omitempty"`      // error: the session protocol's code
}

// maxChatLine bounds one stdin line; longer ones are refused by the node
// anyway (the conversation's text limit).
const maxChatLine = 64 << 10

func cmdChat(ctx context.Context, args []string, e env) int {
	fs := newFlags("chat", "[flags] [NAME]\n\nJoins conversation NAME (creating it if needed; without NAME a new unnamed one),\nsends each line of stdin, prints what the others say, and leaves on EOF or Ctrl-C.", e)
	var sf sessionFlags
	addSessionFlags(fs, &sf, e)
	term := addTermFlag(fs, "chat")
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	invite := fs.String("invite", "", "comma-separated users to invite (they are rung wherever they are signed in)")
	private := fs.Bool("private", false, "create NAME invite-only if it does not exist: only you invite, only those invited join")
	reconnect := fs.Bool("reconnect", true, "sign in again, with backoff, and rejoin the room when the node restarts or the connection is lost")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 1 {
		return fail(e, exitUsage, "chat takes at most one conversation NAME")
	}
	termName, err := sf.signInNames(*term)
	if err != nil {
		return fail(e, exitUsage, "%v", err)
	}
	name := strings.TrimPrefix(fs.Arg(0), "#")
	k := newKeeper(&sf, termName, principal.Online, e)
	c, si, err := k.dial(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return exitOK // interrupted while signing in: the user asked to stop
		}
		return fail(e, exitUsage, "%v", err)
	}
	defer func() { c.Close() }()
	out := &chatPrinter{w: e.stdout, json: *asJSON}
	convs := c.Conversations()
	cctx, cancel := context.WithTimeout(ctx, sf.timeout)
	join := c.Join
	if *private {
		if name == "" {
			cancel()
			return fail(e, exitUsage, "--private needs a conversation NAME")
		}
		join = c.JoinPrivate
	}
	name, roster, err := join(cctx, name)
	cancel()
	if err != nil {
		return failPeople(e, exitUsage, "join #"+safeUTF8(name), err)
	}
	cs := &chatSession{c: c, room: name, timeout: sf.timeout, json: *asJSON, e: e, out: out}
	cs.setRoster(roster)
	k.json, k.jsonln = *asJSON, func(v any) error { return out.encodeAny(v) }
	k.rejoin = func(ctx context.Context, nc *sessionclient.Client) error {
		cctx, cancel := context.WithTimeout(ctx, sf.timeout)
		defer cancel()
		_, roster, err := nc.Join(cctx, name)
		if err == nil {
			cs.setRoster(roster)
		}
		return err
	}
	if !*asJSON {
		fmt.Fprintf(e.stderr, "msp: in #%s as %s at %s on %s; type lines to send, Ctrl-D to leave\n", safeUTF8(name), show(si.User), show(si.Term), safeUTF8(si.Node))
	}
	out.roster(name, roster)
	for _, u := range strings.Split(*invite, ",") {
		if _, err := toLatin1("--invite", strings.TrimSpace(u)); err != nil {
			return fail(e, exitUsage, "--invite: %v", err)
		}
	}
	cs.ring(ctx, strings.Split(*invite, ","))

	// The reader goroutine owns stdin; it ends at EOF (or when the process
	// exits while it waits for a line). On a terminal a line editor reads
	// keys, so that incoming lines do not break into what is being typed.
	lines := make(chan string)
	readErr := make(chan error, 1)
	stop := make(chan struct{})
	defer close(stop)
	var ed *lineEditor
	if f, ok := e.stdin.(*os.File); ok && f == os.Stdin && !*asJSON {
		if restore := rawTerminal(); restore != nil {
			defer restore()
			ed = &lineEditor{out: e.stdout, prompt: "#" + name + "> "}
			out.w = ed
		}
	}
	go func() {
		if ed != nil {
			readErr <- ed.run(e.stdin, lines, stop)
			return
		}
		sc := bufio.NewScanner(e.stdin)
		sc.Buffer(make([]byte, 4096), maxChatLine)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-stop:
				return
			}
		}
		readErr <- sc.Err()
		close(lines)
	}()
	leave := func() int {
		sctx, cancel := context.WithTimeout(context.Background(), sf.timeout)
		defer cancel()
		if err := c.Leave(sctx, name); err != nil {
			return fail(e, exitNack, "leave #%s: %v", name, err)
		}
		if err := c.SignOut(sctx); err != nil {
			return fail(e, exitNack, "sign out: %v", err)
		}
		return exitOK
	}
	ping := time.NewTicker(30 * time.Second)
	defer ping.Stop()
	var pingErr error // why this loop closed the session itself
	for {
		select {
		case <-ctx.Done():
			return leave()
		case l, ok := <-lines:
			if !ok {
				if err := <-readErr; err != nil {
					fmt.Fprintf(e.stderr, "msp: reading stdin: %v\n", err)
				}
				return leave()
			}
			if strings.TrimSpace(l) == "" {
				continue
			}
			cmd := parseChatLine(l)
			if cmd.name != "" {
				if cs.command(ctx, cmd) {
					return leave()
				}
				continue
			}
			text, err := toLatin1("message", cmd.text)
			if err != nil {
				fmt.Fprintf(e.stderr, "msp: not sent: %v\n", err)
				continue
			}
			sctx, cancel := context.WithTimeout(ctx, sf.timeout)
			id, err := c.SendConv(sctx, name, text)
			cancel()
			if err == nil && ed != nil {
				// The editor erased the typed line; show it as sent.
				m, _ := identity.ParseMethod(si.Method)
				_ = out.event(sessionproto.ConvEvent{Type: "message", Conversation: name, User: si.User, Node: si.Node, Term: si.Term, Text: text, ID: id, Time: time.Now(),
					Verified: m.Proves(), SenderMethod: si.Method})
			}
			if err != nil {
				if ctx.Err() != nil {
					return leave()
				}
				if sessionproto.IsCode(err, sessionproto.CodeBadText) {
					fmt.Fprintf(e.stderr, "msp: not sent: %s\n", peopleError(err))
					continue
				}
				if *reconnect && c.Err() != nil && (retryable(c.Err()) || pingErr != nil) {
					// The session is gone; the event loop reconnects.
					fmt.Fprintf(e.stderr, "msp: not sent (connection lost); type it again once reconnected\n")
					continue
				}
				return failPeople(e, exitNack, "send to #"+safeUTF8(name), err)
			}
		case ev, ok := <-convs:
			if !ok {
				cause := sessionEnd(c)
				if pingErr != nil {
					cause, pingErr = pingErr, nil
				}
				c.Close()
				if !*reconnect || !retryable(cause) {
					return fail(e, exitNack, "session ended: %s", peopleError(cause))
				}
				k.lost(cause)
				nc, _, err := k.reconnect(ctx)
				if err != nil {
					if ctx.Err() != nil {
						return exitOK
					}
					return fail(e, exitNack, "cannot sign in again: %s", peopleError(err))
				}
				c, cs.c, convs = nc, nc, nc.Conversations()
				continue
			}
			cs.track(ev)
			if err := out.event(ev); err != nil {
				return fail(e, exitUsage, "writing output: %v", err)
			}
		case <-ping.C:
			pctx, cancel := context.WithTimeout(ctx, sf.timeout)
			if _, err := c.Ping(pctx); err != nil && ctx.Err() == nil {
				pingErr = fmt.Errorf("no answer to a ping: %w", err)
				c.Close() // the node or the network is gone; reconnect
			}
			cancel()
		}
	}
}

// chatPrinter writes conversation events as text or JSON lines. Typing
// notices are not shown.
type chatPrinter struct {
	w    io.Writer
	json bool
}

func (p *chatPrinter) roster(name string, members []sessionclient.ConvMember) {
	if p.json {
		now := time.Now().UTC()
		for _, m := range members {
			_ = p.encode(chatJSON{Type: "roster", Conversation: name, User: msp.Latin1ToUTF8(m.User), Node: m.Node, Term: msp.Latin1ToUTF8(m.Term), Time: now})
		}
		return
	}
	if len(members) == 0 {
		fmt.Fprintf(p.w, "* #%s: nobody else here\n", safeUTF8(name))
		return
	}
	who := make([]string, len(members))
	for i, m := range members {
		who[i] = fmt.Sprintf("%s (%s %s)", show(m.User), safeUTF8(m.Node), show(m.Term))
	}
	fmt.Fprintf(p.w, "* #%s: %s\n", safeUTF8(name), strings.Join(who, ", "))
}

// encode writes v as one JSON line, with every rune a terminal could act on
// escaped (safeJSON): the texts and names come from other users.
func (p *chatPrinter) encode(v chatJSON) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = p.w.Write(safeJSON(append(b, '\n')))
	return err
}

// encodeAny writes v (a connection event) as one JSON line.
func (p *chatPrinter) encodeAny(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = p.w.Write(safeJSON(append(b, '\n')))
	return err
}

func (p *chatPrinter) event(ev sessionproto.ConvEvent) error {
	if ev.Type == "typing" {
		return nil
	}
	if p.json {
		user, term := msp.Latin1ToUTF8(ev.User), msp.Latin1ToUTF8(ev.Term)
		text := msp.Latin1ToUTF8(strings.TrimRight(strings.ReplaceAll(ev.Text, "\r\n", "\n"), "\n"))
		v := chatJSON{Type: ev.Type, Conversation: ev.Conversation, User: user, Node: ev.Node, Term: term,
			Text: text, ID: ev.ID, Time: ev.Time, Reason: ev.Reason, History: ev.History}
		if ev.Type == "message" {
			v.Verified, v.SenderMethod, v.SenderUser = &ev.Verified, orDefault(ev.SenderMethod, "none"), msp.Latin1ToUTF8(ev.SenderUser)
		}
		return p.encode(v)
	}
	// Everything shown comes from other users: names through show and
	// safeUTF8, every line of a text behind textMark (render.go), so no
	// control sequence reaches the terminal and no line passes for ours.
	user, term, node, conv := show(ev.User), show(ev.Term), safeUTF8(ev.Node), safeUTF8(ev.Conversation)
	var err error
	switch ev.Type {
	case "message":
		var b strings.Builder
		fmt.Fprintf(&b, "[%s] %s@%s%s:\n", ev.Time.Local().Format("15:04:05"), orDefault(user, "(no sender)"), node, unverifiedMark(ev))
		for _, l := range textLines(strings.TrimRight(ev.Text, "\r\n")) {
			b.WriteString(textMark)
			b.WriteString(l)
			b.WriteByte('\n')
		}
		_, err = io.WriteString(p.w, b.String())
	case "join":
		_, err = fmt.Fprintf(p.w, "* %s joined #%s (%s %s)\n", user, conv, node, term)
	case "leave":
		how := "left"
		if ev.Reason == "dropped" {
			how = "dropped (node " + node + " is gone)"
		}
		_, err = fmt.Fprintf(p.w, "* %s %s #%s\n", user, how, conv)
	case "invite":
		_, err = fmt.Fprintf(p.w, "* %s (%s %s) invites you to #%s: msp chat %s\n", user, node, term, conv, conv)
	}
	return err
}

// unverifiedMark is what follows the sender of a message line: nothing
// when her node proved who sent it, otherwise " (UNVERIFIED: how)" and,
// when a local user claimed another name, who really sent it.
func unverifiedMark(ev sessionproto.ConvEvent) string {
	if ev.Verified {
		return ""
	}
	how := orDefault(safeUTF8(ev.SenderMethod), "none")
	if ev.SenderUser != "" {
		how += ", sent by local user " + show(ev.SenderUser)
	}
	return " (UNVERIFIED: " + how + ")"
}
