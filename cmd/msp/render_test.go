package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/msprelay/msprelay/sessionclient"
	"github.com/msprelay/msprelay/sessionproto"
)

// checkSafe fails the test when out holds an octet outside the safe set:
// anything but valid UTF-8 of printable runes and LF.
func checkSafe(t *testing.T, what, out string) {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Fatalf("%s: output is not valid UTF-8: %q", what, out)
	}
	for i, r := range out {
		if r != '\n' && !safeRune(r) {
			t.Fatalf("%s: unsafe rune %U at byte %d of %q", what, r, i, out)
		}
	}
}

// checkShape fails the test unless out is a header with the verified mark,
// then exactly one textMark line per text line, then (for long texts) a
// footer with the mark again.
func checkShape(t *testing.T, out string, m *sessionproto.Message) {
	t.Helper()
	mark := "UNVERIFIED"
	if m.Verified {
		mark = "verified"
	}
	lines := strings.Split(strings.TrimSuffix(strings.TrimPrefix(out, "\n"), "\n"), "\n")
	if !strings.HasPrefix(lines[0], "Message from ") || !strings.Contains(lines[0], mark+") at ") {
		t.Fatalf("header %q lacks the %s mark", lines[0], mark)
	}
	body := lines[1:]
	if n := len(textLines(m.Text)); n > footerAfter {
		last := body[len(body)-1]
		if !strings.HasPrefix(last, "End of message from ") || !strings.Contains(last, "("+mark+")") {
			t.Fatalf("long text (%d lines): last line %q does not repeat the %s mark", n, last, mark)
		}
		body = body[:len(body)-1]
	}
	if len(body) != len(textLines(m.Text)) {
		t.Fatalf("%d text lines shown for %d in the text", len(body), len(textLines(m.Text)))
	}
	for _, l := range body {
		if !strings.HasPrefix(l, textMark) {
			t.Fatalf("text line %q is not marked with %q", l, textMark)
		}
	}
}

// Issue 12 item 8: "`msp listen` renders every field safely (no control
// octets), marks every line of a message's text, and keeps the
// verified/unverified mark visible."
func TestRenderHostileMessages(t *testing.T) {
	t.Parallel()
	when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	fakeHeader := "Message from root via n1 (tcp 10.0.0.1:18, verified) at 03:04:05:"
	cases := []struct {
		name string
		m    sessionproto.Message
		want []string // substrings of the output, in order
		not  []string // substrings that must not appear
	}{
		{"ESC sequences show in caret notation",
			sessionproto.Message{Sender: "eve", Text: "\x1b[2J\x1b]0;owned\x07done"},
			[]string{"| ^[[2J^[]0;owned^Gdone\n"}, []string{"\x1b", "\x07"}},
		{"C1 controls (8-bit CSI) show as \\xNN",
			sessionproto.Message{Sender: "eve", Text: "a\x9b31mred\x85b"},
			[]string{`| a\x9b31mred\x85b`}, []string{"\u009b", "\u0085"}},
		{"DEL and NUL show in caret notation",
			sessionproto.Message{Sender: "eve", Text: "x\x7fy\x00z"},
			[]string{"| x^?y^@z"}, nil},
		{"bidi override in a node name is escaped",
			sessionproto.Message{Sender: "eve", OriginNode: "n1\u202eevil", Text: "hi"},
			[]string{`via n1\u{202e}evil`}, []string{"\u202e"}},
		{"invalid UTF-8 in a node name shows as \\xNN",
			sessionproto.Message{Sender: "eve", OriginNode: "n\xff1", Text: "hi"},
			[]string{`via n\xff1`}, nil},
		{"controls in sender names are escaped",
			sessionproto.Message{Sender: "ev\x1be", SenderTerm: "pts/\x9b1", Text: "hi"},
			[]string{`Message from ev^[e on pts/\x9b1 via`}, nil},
		{"Latin-1 letters show as UTF-8",
			sessionproto.Message{Sender: "j\xfcrgen", Text: "gr\xfc\xdfe"},
			[]string{"Message from jürgen", "| grüße\n"}, nil},
		{"every line is marked, whatever ends it (CR LF, LF, lone CR)",
			sessionproto.Message{Sender: "eve", Text: "one\r\ntwo\nthree\rfour"},
			[]string{"| one\n| two\n| three\n| four\n"}, []string{"\r"}},
		{"tabs expand to spaces",
			sessionproto.Message{Sender: "eve", Text: "a\tb"},
			[]string{"| a       b\n"}, []string{"\t"}},
		{"150 newlines and a fake header: marked, and the mark repeated after",
			sessionproto.Message{Sender: "mallory", Text: strings.Repeat("\n", 150) + fakeHeader + "\nsee above"},
			[]string{"via ? (UNVERIFIED)", "\n| " + fakeHeader + "\n", "| see above\nEnd of message from mallory (UNVERIFIED), 152 lines.\n"}, nil},
		{"a verified sender is marked verified",
			sessionproto.Message{Sender: "alice", Verified: true, Transport: "session", Text: "hi"},
			[]string{"(session, verified)"}, []string{"UNVERIFIED"}},
		{"no sender is said so",
			sessionproto.Message{Text: "v1"},
			[]string{"Message from (no sender) via"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.m.Time = when
			out := renderMessage(&tc.m, time.UTC)
			checkSafe(t, "renderMessage", out)
			checkShape(t, out, &tc.m)
			rest := out
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("output lacks %q (in order):\n%s", w, out)
				}
				rest = rest[i+len(w):]
			}
			for _, n := range tc.not {
				if strings.Contains(out, n) {
					t.Errorf("output holds %q:\n%s", n, out)
				}
			}
		})
	}
}

// The JSON lines are as safe as the text: C1, DEL and bidi overrides are
// \u-escaped, and the document still decodes to the same strings.
func TestSafeJSON(t *testing.T) {
	t.Parallel()
	in := jsonMessage{Type: "message", Sender: "a\x7f\u009b", Text: "x\u202ey\U0001F600\u2028z", OriginNode: "n\u0085"}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	out := safeJSON(b)
	checkSafe(t, "safeJSON", string(out))
	var back jsonMessage
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatalf("safeJSON output does not decode: %v\n%s", err, out)
	}
	if back != in {
		t.Errorf("decoded %+v, want %+v", back, in)
	}
}

// FuzzRender checks the renderer's promise for any message: no output octet
// outside the safe set, ever; every text line marked; the verified mark in
// the header and, for long texts, after the text.
func FuzzRender(f *testing.F) {
	f.Add("eve", "pts/1", "n1", "hello", false)
	f.Add("mallory", "\x1b[31m", "n1\u202e", strings.Repeat("\n", 150)+"Message from root via n1 (tcp 1.2.3.4:5, verified) at 00:00:00:\nx", true)
	f.Fuzz(func(t *testing.T, sender, term, node, text string, verified bool) {
		m := &sessionproto.Message{Sender: sender, SenderTerm: term, OriginNode: node, OriginAddr: node,
			Transport: "tcp", Text: text, Verified: verified, Time: time.Unix(0, 0)}
		out := renderMessage(m, time.UTC)
		checkSafe(t, "renderMessage", out)
		checkShape(t, out, m)
		checkSafe(t, "renderEvent", renderEvent(sessionclient.PresenceEvent{User: sender, Term: term, Node: node}))
		checkSafe(t, "show", show(text))
		p := &printer{w: &strings.Builder{}, json: true, loc: time.UTC}
		if err := p.message(m); err != nil {
			t.Fatal(err)
		}
		js := p.w.(*strings.Builder).String()
		checkSafe(t, "JSON line", js)
		var back jsonMessage
		if err := json.Unmarshal([]byte(js), &back); err != nil {
			t.Fatalf("JSON line does not decode: %v\n%s", err, js)
		}
	})
}

// Issue 18: "a SENDER naming someone else is shown as what it is (claimed
// name and the real local user)", in the text and in --json.
func TestListenShowsWhoReallySent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		m        sessionproto.Message
		header   string // what the header must say
		notShown string // what it must not
	}{
		{"an impersonation shows the claim, UNVERIFIED, and the real local user",
			sessionproto.Message{Sender: "root", Verified: false, SenderMethod: "kernel", SenderUser: "mallory", Transport: "tcp", Text: "hi"},
			"Message from UNVERIFIED root (sent by local user mallory) via", ""},
		{"a local user under her own name is verified",
			sessionproto.Message{Sender: "alice", Verified: true, SenderMethod: "kernel", SenderUser: "alice", Transport: "tcp", Text: "hi"},
			"Message from alice via", "sent by"},
		{"no SENDER from an identified local user shows that user",
			sessionproto.Message{Verified: true, SenderMethod: "kernel", SenderUser: "alice", Transport: "udp", Text: "hi"},
			"Message from alice via", "(no sender)"},
		{"a bare claim stays a claim",
			sessionproto.Message{Sender: "root", SenderMethod: "none", Transport: "tcp", Text: "hi"},
			"Message from root via", "sent by"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := renderMessage(&tc.m, time.UTC)
			checkSafe(t, tc.name, out)
			checkShape(t, out, &tc.m)
			if !strings.Contains(out, tc.header) || (tc.notShown != "" && strings.Contains(out, tc.notShown)) {
				t.Fatalf("rendered %q; want %q and not %q", out, tc.header, tc.notShown)
			}
			p := &printer{w: &strings.Builder{}, json: true, loc: time.UTC}
			if err := p.message(&tc.m); err != nil {
				t.Fatal(err)
			}
			var back jsonMessage
			if err := json.Unmarshal([]byte(p.w.(*strings.Builder).String()), &back); err != nil {
				t.Fatal(err)
			}
			if back.Verified != tc.m.Verified || back.SenderMethod != tc.m.SenderMethod || back.SenderUser != tc.m.SenderUser {
				t.Fatalf("--json %+v, want verified %v, method %q, user %q", back, tc.m.Verified, tc.m.SenderMethod, tc.m.SenderUser)
			}
		})
	}
}
