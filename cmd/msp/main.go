// Command msp is the msprelay user CLI: send a short message (like write(1)
// or zwrite), listen for messages and presence on a session, and look up who
// is where.
//
//	msp send [flags] RECIPIENT [MESSAGE...]   exit 0 on '+', 1 on '-', 2 on usage or network error
//	msp listen [flags]                        print messages as they arrive
//	msp who [flags] [USER]                    presence lookup
//	msp status [flags]                        cluster nodes, readiness, versions
//	msp wall|mesg|state|block|unblock|blocks|alias  act for the user on her node (usercmds.go)
//
// Text on the command line and terminal is UTF-8; MSP and the session
// protocol carry ISO 8859-1, so msp converts every name and text both ways
// (names.go) and refuses, with exit 2, characters Latin-1 cannot hold.
// Everything shown that came from the network or another user goes through
// render.go first, so no control sequence a sender chose reaches the
// terminal.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"os/user"
	"strings"
	"syscall"

	"github.com/msprelay/msprelay/internal/buildinfo"
	"github.com/msprelay/msprelay/sessionsock"
)

// Exit codes: the contract scripts rely on.
const (
	exitOK    = 0 // '+': delivered or queued
	exitNack  = 1 // '-': refused or failed, reason on stderr
	exitUsage = 2 // bad usage, bad input or network error
)

// env is what a command may touch of the outside world, so tests can run
// commands in-process with their own streams.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	// flagSets, when set, is handed every flag set a command makes: the
	// man page msp(1) is generated from them (man_test.go).
	flagSets func(*flag.FlagSet)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv})
	stop()
	os.Exit(code)
}

const usage = `usage: msp <command> [flags] [args]

commands:
  send RECIPIENT [MESSAGE...]   send a message (from stdin when MESSAGE is absent)
  listen                        sign in and print messages and presence as they arrive
  who [USER]                    show where users are signed in
  status                        show the cluster's nodes, readiness and versions (node --http)
  chat [NAME]                   join (or create) conversation NAME and talk
  wall [MESSAGE...]             broadcast to every terminal of the cluster (root, group msprelay-admin)
  mesg [y|n]                    accept or refuse messages on all your running sessions and this tty
  state STATE                   set all your running sessions to online, busy, away, idle or hidden
  block USER, unblock USER      refuse or accept USER's messages again, everywhere, at every sign-in
  blocks                        list whom you block
  alias add|del NAME, alias list  another name your running sessions answer to
  version                       print the version (also --version)

Run 'msp <command> -h' for the command's flags.
`

func run(ctx context.Context, args []string, e env) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "send":
		return cmdSend(ctx, args[1:], e)
	case "listen":
		return cmdListen(ctx, args[1:], e)
	case "who":
		return cmdWho(ctx, args[1:], e)
	case "status":
		return cmdStatus(ctx, args[1:], e)
	case "chat":
		return cmdChat(ctx, args[1:], e)
	case "wall":
		return cmdWall(ctx, args[1:], e)
	case "mesg":
		return cmdMesg(ctx, args[1:], e)
	case "state":
		return cmdState(ctx, args[1:], e)
	case "block", "unblock", "blocks":
		return cmdBlock(ctx, args[0], args[1:], e)
	case "alias":
		return cmdAlias(ctx, args[1:], e)
	case "-version", "--version", "version":
		fmt.Fprintln(e.stdout, "msp", buildinfo.Version())
		return exitOK
	case "-h", "-help", "--help", "help":
		fmt.Fprint(e.stdout, usage)
		return exitOK
	}
	fmt.Fprintf(e.stderr, "msp: unknown command %q\n\n%s", args[0], usage)
	return exitUsage
}

// newFlags makes a command's flag set; parse errors print usage and exit 2.
func newFlags(name, synopsis string, e env) *flag.FlagSet {
	fs := flag.NewFlagSet("msp "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: msp %s %s\n\nflags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	if e.flagSets != nil {
		e.flagSets(fs)
	}
	return fs
}

// parseFlags parses args and reports the exit code to use when parsing ends
// the command (help or a bad flag).
func parseFlags(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	return 0, true
}

// fail prints one error line on stderr and returns code. Errors may quote
// what a server or another user sent, so the line is made safe to print.
func fail(e env, code int, format string, a ...any) int {
	msg := safeUTF8(fmt.Sprintf(format, a...))
	if !strings.HasPrefix(msg, "msp: ") {
		msg = "msp: " + msg
	}
	fmt.Fprintln(e.stderr, msg)
	return code
}

// loginName is the invoking user's login name, the default sender and
// session user.
func loginName(e env) string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if n := e.getenv("USER"); n != "" {
		return n
	}
	return "nobody"
}

// ttyName is the terminal on standard input as MSP names it ("pts/3"), or
// "" when stdin is not a terminal.
func ttyName() string {
	p, err := os.Readlink("/proc/self/fd/0")
	if err != nil {
		return ""
	}
	if t, ok := strings.CutPrefix(p, "/dev/"); ok && (strings.HasPrefix(t, "pts/") || strings.HasPrefix(t, "tty")) {
		return t
	}
	return ""
}

// sessionAddrs lists where to look for the node's session listener: the
// flag's address alone, or the default socket paths in order.
func sessionAddrs(flagValue string) []string {
	if flagValue != "" {
		return []string{flagValue}
	}
	return sessionsock.SocketCandidates()
}
