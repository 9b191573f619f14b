package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/msprelay/msprelay/sessionclient"
	"github.com/msprelay/msprelay/sessionproto"
)

// Slash commands inside `msp chat` (issue 20, item 5): a line starting with
// "/" is a command, not a message; "//text" sends "/text".
const chatHelp = `commands:
  /invite USER...   ring USER wherever she is signed in, into this room
  /who              who is in this room
  /leave            leave the room and exit (as Ctrl-D does)
  /help             this list
a line starting with // sends the rest starting with one /
`

// chatCommand is what a line typed into the chat asks for.
type chatCommand struct {
	name string   // "invite", "who", "leave", "help"; "" for a message
	args []string // the command's words
	text string   // the message, for name ""
}

// parseChatLine splits one typed line into a message or a slash command.
// An unknown command is reported as such (name "?"+word) rather than sent,
// so that a typo like "/leev" does not reach everybody.
func parseChatLine(l string) chatCommand {
	if strings.HasPrefix(l, "//") {
		return chatCommand{text: l[1:]}
	}
	if !strings.HasPrefix(l, "/") {
		return chatCommand{text: l}
	}
	words := strings.Fields(l[1:])
	if len(words) == 0 {
		return chatCommand{name: "?"}
	}
	switch w := strings.ToLower(words[0]); w {
	case "invite", "who", "leave", "help":
		return chatCommand{name: w, args: words[1:]}
	case "quit", "exit", "part":
		return chatCommand{name: "leave", args: words[1:]}
	case "ring":
		return chatCommand{name: "invite", args: words[1:]}
	default:
		return chatCommand{name: "?" + words[0]}
	}
}

// chatSession is what the chat commands act on: the current session (it
// changes on reconnection) and the room.
type chatSession struct {
	c       *sessionclient.Client
	room    string
	timeout time.Duration
	json    bool
	e       env
	out     *chatPrinter
	members map[string]sessionclient.ConvMember // key user+node+term; kept by the event loop
}

func memberKey(m sessionclient.ConvMember) string { return m.User + "\x00" + m.Node + "\x00" + m.Term }

// track keeps the roster up to date from the room's events.
func (cs *chatSession) track(ev sessionproto.ConvEvent) {
	if ev.Conversation != cs.room || cs.members == nil {
		return
	}
	m := sessionclient.ConvMember{User: ev.User, Node: ev.Node, Term: ev.Term}
	switch ev.Type {
	case "join":
		cs.members[memberKey(m)] = m
	case "leave":
		delete(cs.members, memberKey(m))
	}
}

// setRoster replaces the roster with the one a join returned.
func (cs *chatSession) setRoster(ms []sessionclient.ConvMember) {
	cs.members = make(map[string]sessionclient.ConvMember, len(ms))
	for _, m := range ms {
		cs.members[memberKey(m)] = m
	}
}

// ring invites each user (UTF-8 from the command line or the chat) and
// confirms each ring on stderr ("* rang bob (1 terminal)"), or says in one
// sentence why not.
func (cs *chatSession) ring(ctx context.Context, users []string) {
	for _, u := range users {
		u = strings.TrimSpace(u)
		if u == "" {
			continue
		}
		lu, err := toLatin1("user", u)
		if err != nil {
			fmt.Fprintf(cs.e.stderr, "msp: not invited: %v\n", err)
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, cs.timeout)
		n, err := cs.c.Ring(cctx, cs.room, lu)
		cancel()
		if err != nil {
			cs.note(ctx, "ring", u, err)
			continue
		}
		if cs.json {
			_ = cs.out.encode(chatJSON{Type: "rang", Conversation: cs.room, User: u, Terminals: n, Time: time.Now().UTC()})
			continue
		}
		switch n {
		case 0:
			fmt.Fprintf(cs.out.w, "* rang %s\n", safeUTF8(u))
		case 1:
			fmt.Fprintf(cs.out.w, "* rang %s (1 terminal)\n", safeUTF8(u))
		default:
			fmt.Fprintf(cs.out.w, "* rang %s (%d terminals)\n", safeUTF8(u), n)
		}
	}
}

// note reports a failed command: one sentence for people, or a JSON line
// with the code.
func (cs *chatSession) note(_ context.Context, what, subject string, err error) {
	if cs.json {
		_ = cs.out.encode(chatJSON{Type: "error", Conversation: cs.room, User: subject, Reason: what + ": " + peopleError(err, subject), Code: codeOf(err), Time: time.Now().UTC()})
		return
	}
	fmt.Fprintf(cs.e.stderr, "msp: %s %s: %s\n", what, safeUTF8(subject), peopleError(err, subject))
}

// who prints the room's members as the session knows them.
func (cs *chatSession) who() {
	ms := make([]sessionclient.ConvMember, 0, len(cs.members))
	for _, m := range cs.members {
		ms = append(ms, m)
	}
	sort.Slice(ms, func(i, j int) bool { return memberKey(ms[i]) < memberKey(ms[j]) })
	cs.out.roster(cs.room, ms)
}

// command runs one slash command; it reports whether the chat should end
// (leave).
func (cs *chatSession) command(ctx context.Context, cmd chatCommand) (leave bool) {
	switch cmd.name {
	case "invite":
		if len(cmd.args) == 0 {
			fmt.Fprintln(cs.e.stderr, "msp: /invite needs a user name: /invite bob")
			return false
		}
		cs.ring(ctx, cmd.args)
	case "who":
		cs.who()
	case "leave":
		return true
	case "help":
		fmt.Fprint(cs.e.stderr, chatHelp)
	default:
		fmt.Fprintf(cs.e.stderr, "msp: unknown command /%s (not sent); /help lists the commands, // starts a line with /\n", safeUTF8(strings.TrimPrefix(cmd.name, "?")))
	}
	return false
}
