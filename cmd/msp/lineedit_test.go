package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/msprelay/msprelay/internal/syncbuf"

	"github.com/msprelay/msprelay/internal/testcluster"
)

// "On a terminal it is a pleasant line-mode chat (readline-style input that
// is not clobbered by incoming lines)": a line arriving while one is typed
// is printed above it, and the typed text is redrawn after it.
func TestLineEditorKeepsInputAcrossIncomingLines(t *testing.T) {
	t.Parallel()
	var out syncbuf.Buffer
	ed := &lineEditor{out: &out, prompt: "#ops> "}
	in, keys := io.Pipe()
	lines := make(chan string, 4)
	done := make(chan error, 1)
	stop := make(chan struct{})
	defer close(stop)
	go func() { done <- ed.run(in, lines, stop) }()

	io.WriteString(keys, "hel")
	testcluster.WaitFor(t, 5*time.Second, "typed text echoed", func() bool { return strings.HasSuffix(out.String(), "#ops> hel") })
	ed.Write([]byte("[10:00:00] bob@n2: hi\n"))
	if got := out.String(); !strings.HasSuffix(got, "\r\x1b[K[10:00:00] bob@n2: hi\n\r\x1b[K#ops> hel") {
		t.Fatalf("after an incoming line the output ends %q", got[max(0, len(got)-60):])
	}
	// Backspace, a two-octet UTF-8 character, an arrow key (ignored),
	// Ctrl-W, then Enter.
	io.WriteString(keys, "l\x7flo gr\xc3\xbc\xc3\x9fe\x1b[A wor\x17ld\r")
	select {
	case l := <-lines:
		if l != "hello grüße ld" {
			t.Fatalf("line %q", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no line")
	}
	io.WriteString(keys, "x\x15\x04") // Ctrl-U empties the line, Ctrl-D then ends
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Ctrl-D on an empty line did not end input")
	}
	if _, ok := <-lines; ok {
		t.Fatal("lines not closed")
	}
}
