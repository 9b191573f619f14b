package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/sessionclient"
	"github.com/msprelay/msprelay/sessionproto"
)

// Commands that act for the user on her node through the session protocol
// (issue 20, item 4): wall, mesg, state, block, unblock, blocks, alias.
// Each signs in without a terminal on the local session socket, where the
// node knows the user by the socket's peer credentials.

// userSession signs in without a terminal and returns the client.
func userSession(ctx context.Context, sf *sessionFlags, e env) (*sessionclient.Client, *sessionclient.SignedIn, int, bool) {
	if err := sf.toLatin1(); err != nil {
		return nil, nil, fail(e, exitUsage, "%v", err), false
	}
	c, si, err := sf.connect(ctx, sessionproto.NoTerminal, principal.Offline)
	if err != nil {
		return nil, nil, fail(e, exitUsage, "%v", err), false
	}
	return c, si, 0, true
}

// cmdWall: msp wall [--node N] [MESSAGE...]
func cmdWall(ctx context.Context, args []string, e env) int {
	fs := newFlags("wall", "[flags] [MESSAGE...]\n\nSends MESSAGE (or stdin) to every signed-in session and every tty that accepts messages\nin the cluster, headed \"Broadcast from USER@NODE\". For root and members of group "+sessionproto.DefaultAdminGroup+" only.", e)
	var sf sessionFlags
	addSessionFlags(fs, &sf, e)
	node := fs.String("node", "", "reach only this node's terminals")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	var text string
	if fs.NArg() > 0 {
		text = strings.Join(fs.Args(), " ")
	} else {
		b, err := io.ReadAll(io.LimitReader(e.stdin, msp.MaxLen+1))
		if err != nil {
			return fail(e, exitUsage, "reading message from stdin: %v", err)
		}
		text = strings.TrimRight(string(b), "\n")
	}
	if strings.TrimSpace(text) == "" {
		return fail(e, exitUsage, "empty message: nothing sent")
	}
	lt, err := toLatin1("message", text)
	if err != nil {
		return fail(e, exitUsage, "%v", err)
	}
	c, _, code, ok := userSession(ctx, &sf, e)
	if !ok {
		return code
	}
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, sf.timeout+wallWait)
	defer cancel()
	terms, nodes, err := c.Wall(cctx, *node, lt)
	if err != nil {
		return failPeople(e, exitNack, "wall", err)
	}
	fmt.Fprintf(e.stdout, "broadcast to %d terminal%s on %d node%s\n", terms, plural(terms), nodes, plural(nodes))
	return exitOK
}

// wallWait is how much longer than a command a broadcast may take: the
// node waits for every other node.
const wallWait = 15 * time.Second

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// cmdState: msp state online|busy|away|idle|hidden
func cmdState(ctx context.Context, args []string, e env) int {
	fs := newFlags("state", "[flags] online|busy|away|idle|hidden\n\nChanges the state of all your running sessions (msp listen, msp chat) on your node.", e)
	var sf sessionFlags
	addSessionFlags(fs, &sf, e)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return exitUsage
	}
	st, err := principal.ParseState(fs.Arg(0))
	if err != nil || st == principal.Offline {
		return fail(e, exitUsage, "state %q: want online, busy, away, idle or hidden", fs.Arg(0))
	}
	return setUserState(ctx, &sf, st, "state "+st.String(), e)
}

func setUserState(ctx context.Context, sf *sessionFlags, st principal.State, what string, e env) int {
	c, si, code, ok := userSession(ctx, sf, e)
	if !ok {
		return code
	}
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, sf.timeout)
	defer cancel()
	n, err := c.SetUserState(cctx, st)
	if err != nil {
		return failPeople(e, exitNack, what, err)
	}
	fmt.Fprintf(e.stdout, "%s: %d session%s of %s on %s\n", what, n, plural(n), show(si.User), safeUTF8(si.Node))
	return exitOK
}

// cmdMesg: msp mesg [y|n], like mesg(1) for every running session of the
// user on her node, and for the terminal msp runs on.
func cmdMesg(ctx context.Context, args []string, e env) int {
	fs := newFlags("mesg", "[flags] [y|n]\n\nmesg n makes all your running sessions on your node (and this terminal) refuse messages; mesg y accepts them again.\nWithout an argument, says whether this terminal accepts messages.", e)
	var sf sessionFlags
	addSessionFlags(fs, &sf, e)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	tty := ttyDevice(e)
	switch {
	case fs.NArg() == 0:
		if tty == nil {
			return fail(e, exitUsage, "mesg without y or n needs a terminal on stdin")
		}
		fi, err := tty.Stat()
		if err != nil {
			return fail(e, exitUsage, "%v", err)
		}
		if fi.Mode()&0o020 != 0 {
			fmt.Fprintln(e.stdout, "is y")
			return exitOK
		}
		fmt.Fprintln(e.stdout, "is n")
		return exitNack // mesg(1): exit 1 for "n"
	case fs.NArg() > 1:
		fs.Usage()
		return exitUsage
	}
	var st principal.State
	switch strings.ToLower(fs.Arg(0)) {
	case "y", "yes":
		st = principal.Online
	case "n", "no":
		st = principal.Busy
	default:
		return fail(e, exitUsage, "mesg %q: want y or n", fs.Arg(0))
	}
	if tty != nil {
		// mesg(1): the terminal's group write bit.
		if fi, err := tty.Stat(); err == nil {
			mode := fi.Mode().Perm()
			if st == principal.Online {
				mode |= 0o020
			} else {
				mode &^= 0o020
			}
			if err := tty.Chmod(mode); err != nil {
				fmt.Fprintf(e.stderr, "msp: this terminal: %v\n", err)
			}
		}
	}
	return setUserState(ctx, &sf, st, "mesg "+strings.ToLower(fs.Arg(0))[:1], e)
}

// ttyDevice is stdin when it is a terminal device, else nil.
func ttyDevice(e env) *os.File {
	f, ok := e.stdin.(*os.File)
	if !ok || ttyName() == "" {
		return nil
	}
	return f
}

// cmdBlock: msp block USER, msp unblock USER, msp blocks.
func cmdBlock(ctx context.Context, name string, args []string, e env) int {
	syn := map[string]string{
		"block":   "[flags] USER\n\nRefuses messages and invitations from USER (user or user@node), on every node and at every sign-in.",
		"unblock": "[flags] USER\n\nLifts a block.",
		"blocks":  "[flags]\n\nLists the users you block.",
	}[name]
	fs := newFlags(name, syn, e)
	var sf sessionFlags
	addSessionFlags(fs, &sf, e)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if (name == "blocks") != (fs.NArg() == 0) || fs.NArg() > 1 {
		fs.Usage()
		return exitUsage
	}
	c, _, code, ok := userSession(ctx, &sf, e)
	if !ok {
		return code
	}
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, sf.timeout)
	defer cancel()
	if name == "blocks" {
		names, err := c.BlockList(cctx)
		if err != nil {
			return failPeople(e, exitNack, "blocks", err)
		}
		for _, n := range names {
			fmt.Fprintln(e.stdout, show(n))
		}
		return exitOK
	}
	u, err := toLatin1("USER", fs.Arg(0))
	if err != nil {
		return fail(e, exitUsage, "%v", err)
	}
	if err := c.BlockUser(cctx, u, name == "block"); err != nil {
		return failPeople(e, exitNack, name, err, fs.Arg(0))
	}
	if name == "block" {
		fmt.Fprintf(e.stdout, "blocked %s\n", safeUTF8(fs.Arg(0)))
	} else {
		fmt.Fprintf(e.stdout, "unblocked %s\n", safeUTF8(fs.Arg(0)))
	}
	return exitOK
}

// cmdAlias: msp alias add|del NAME, msp alias list.
func cmdAlias(ctx context.Context, args []string, e env) int {
	fs := newFlags("alias", "[flags] add NAME | del NAME | list\n\nGives all your running sessions on your node another name to be reached by (msp send NAME),\nfor as long as they run.", e)
	var sf sessionFlags
	addSessionFlags(fs, &sf, e)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	op := fs.Arg(0)
	if !(op == "list" && fs.NArg() == 1) && !((op == "add" || op == "del") && fs.NArg() == 2) {
		fs.Usage()
		return exitUsage
	}
	c, si, code, ok := userSession(ctx, &sf, e)
	if !ok {
		return code
	}
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, sf.timeout)
	defer cancel()
	if op == "list" {
		names, err := c.Aliases(cctx)
		if err != nil {
			return failPeople(e, exitNack, "alias list", err)
		}
		for _, n := range names {
			fmt.Fprintln(e.stdout, show(n))
		}
		return exitOK
	}
	name, err := toLatin1("NAME", fs.Arg(1))
	if err != nil {
		return fail(e, exitUsage, "%v", err)
	}
	n, err := c.Alias(cctx, name, op == "add")
	if err != nil {
		return failPeople(e, exitNack, "alias "+op, err, fs.Arg(1))
	}
	if n == 0 && op == "add" {
		return fail(e, exitNack, "alias add: no session of yours runs on %s to hold %s; start msp listen first", safeUTF8(si.Node), safeUTF8(fs.Arg(1)))
	}
	fmt.Fprintf(e.stdout, "alias %s %s: %d session%s\n", op, safeUTF8(fs.Arg(1)), n, plural(n))
	return exitOK
}
