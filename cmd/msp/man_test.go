package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/msprelay/msprelay/internal/cliflags"
)

// manPath is msp(1), generated from the commands' own flag sets.
const manPath = "../../deploy/man/msp.1"

var updateMan = flag.Bool("update-man", false, "rewrite "+manPath+" from the commands' flags")

// manCommands are the commands msp(1) documents, in its order.
var manCommands = []string{"send", "listen", "who", "chat", "status"}

// manDefaults are the defaults that depend on who runs msp and where, as
// the man page states them.
var manDefaults = map[string]string{
	"send/from":      "your login name",
	"send/from-term": "your terminal",
	"listen/user":    "your login name",
	"who/user":       "your login name",
	"listen/term":    "your terminal, else listen-PID",
	"chat/user":      "your login name",
	"chat/term":      "your terminal, else chat-PID",
}

// mspManPage builds msp(1) from the flag sets the commands define.
func mspManPage(t *testing.T) string {
	t.Helper()
	page := cliflags.ManPage{
		Name:    "msp",
		Section: "1",
		Summary: "send messages to msprelay users, listen for them, see who is where",
		Description: []string{
			"msp is the user's client of msprelay, a relay for the Message Send Protocol (RFC 1312). " +
				"send delivers a short message like write(1); listen and chat sign in to the local node's " +
				"session socket and print what arrives, each message marked verified or UNVERIFIED; who and " +
				"status look up users and nodes.",
			"Names and texts are converted between UTF-8 and ISO 8859-1, the character set MSP carries; " +
				"nothing a sender chose reaches the terminal raw.",
		},
		Sections: []cliflags.ManSection{
			{Title: "Environment", Paragraphs: []string{
				"MSPRELAY_SERVER: the MSP server of send. MSPRELAY_SESSION_ADDR and MSPRELAY_SECRET_FILE: " +
					"--session and --secret-file of the session commands. MSPRELAY_SESSION_SOCKET: the local " +
					"node's socket. MSPRELAY_HTTP_URL and MSPRELAY_HTTP_TOKEN_FILE: --url and --token-file of status.",
			}},
			{Title: "Exit status", Paragraphs: []string{
				"0 on success ('+' for send), 1 when the message was refused ('-') or a node is not ready, " +
					"2 on usage, input or network errors.",
			}},
			{Title: "See also", Paragraphs: []string{"msprelay-node(8), msprelay-relay(8), write(1), mesg(1)"}},
		},
	}
	for _, name := range manCommands {
		var fs *flag.FlagSet
		var stderr bytes.Buffer
		e := env{stdin: strings.NewReader(""), stdout: &bytes.Buffer{}, stderr: &stderr,
			getenv: func(string) string { return "" }, flagSets: func(f *flag.FlagSet) { fs = f }}
		if code := run(context.Background(), []string{name, "-h"}, e); code != exitOK || fs == nil {
			t.Fatalf("msp %s -h: exit %d, flag set %v", name, code, fs != nil)
		}
		// The usage text: "usage: msp NAME SYNOPSIS\n\nDESCRIPTION\n\nflags:".
		text, _, _ := strings.Cut(stderr.String(), "\nflags:\n")
		head, desc, _ := strings.Cut(text, "\n\n")
		cmd := cliflags.ManCommand{Name: name, Synopsis: strings.TrimPrefix(head, "usage: msp "+name+" ")}
		for p := range strings.SplitSeq(strings.TrimSpace(desc), "\n\n") {
			if p != "" {
				cmd.Description = append(cmd.Description, strings.ReplaceAll(p, "\n", " "))
			}
		}
		fs.VisitAll(func(f *flag.Flag) {
			arg, help := flag.UnquoteUsage(f)
			def, text := manDefaults[name+"/"+f.Name]
			if !text && f.DefValue != "false" {
				def = f.DefValue
			}
			cmd.Rows = append(cmd.Rows, cliflags.Row{Flag: f.Name, Arg: strings.ToUpper(arg), Default: def, DefaultIsText: text, Help: help})
		})
		page.Commands = append(page.Commands, cmd)
	}
	return cliflags.Roff(page, nil)
}

// Issue 20: "man pages msp(1), msprelay-node(8), msprelay-relay(8),
// generated from the flag table": msp(1) is made from the flag sets the
// commands parse with, so a flag added to a command and not to the page
// fails here (go run ./internal/flagtable/mkdocs rewrites it).
func TestManPageAgreesWithFlags(t *testing.T) {
	got := mspManPage(t)
	if *updateMan {
		if err := os.WriteFile(manPath, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(manPath)
	if err != nil {
		t.Fatalf("%v (run go run ./internal/flagtable/mkdocs)", err)
	}
	if string(want) != got {
		t.Errorf("%s disagrees with msp's flags: run go run ./internal/flagtable/mkdocs", filepath.Base(manPath))
	}
}
