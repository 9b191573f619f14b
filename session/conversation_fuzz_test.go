package session

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/msprelay/msprelay/conversation"
	"github.com/msprelay/msprelay/sessionproto"
)

// FuzzConvPayload feeds arbitrary client MSG payloads to the conversation
// payload reader: it must never panic, and plain text (no headers) is taken
// whole, with its line ends made CR LF.
func FuzzConvPayload(f *testing.F) {
	f.Add([]byte("hello\nworld"))
	f.Add([]byte("Content-Type: text/x-msmsgscontrol\r\n\r\n"))
	f.Add([]byte("Content-Type: text/plain; charset=ISO-8859-1\r\nX: y\r\n\r\nbody"))
	f.Add([]byte("content-type:"))
	f.Fuzz(func(t *testing.T, p []byte) {
		kind, text, err := parseConvPayload(p)
		if err != nil {
			return
		}
		if kind != conversation.KindMessage && kind != conversation.KindTyping {
			t.Fatalf("kind %v", kind)
		}
		if kind == conversation.KindTyping && text != "" {
			t.Fatalf("typing notice with text %q", text)
		}
		if strings.Contains(strings.ReplaceAll(text, "\r\n", ""), "\n") {
			t.Fatalf("bare LF left in %q", text)
		}
	})
}

// FuzzConvMessage feeds arbitrary server MSG payloads to the client's
// conversation message decoder, and checks that what the server encodes
// decodes to the same message.
func FuzzConvMessage(f *testing.F) {
	f.Add([]byte("Id: abc\r\nTime: 2026-11-30T07:04:16.123456789Z\r\nContent-Type: text/plain; charset=ISO-8859-1\r\n\r\nhello"), "gr\xfc\xdfe\r\nx")
	f.Add([]byte("Content-Type: text/x-msmsgscontrol\r\nTypingUser: bob\r\n\r\n"), "")
	f.Add([]byte("Id: %zz\r\n\r\n"), "%")
	f.Fuzz(func(t *testing.T, p []byte, text string) {
		var ev sessionproto.ConvEvent
		_ = sessionproto.ParseConvMessage(p, &ev)

		in := conversation.Event{Kind: conversation.KindMessage, Conversation: "ops", ID: "0123", User: "bob", Node: "n1", Term: "pts/1", Text: text, Time: time.Unix(1, 5).UTC()}
		b := convMessageFrame(&in, true)
		fr, err := sessionproto.NewServerReader(bytes.NewReader(b)).Read()
		if err != nil {
			t.Fatalf("server MSG frame: %v", err)
		}
		if want := b[strings.Index(string(b), "\r\n")+2:]; !bytes.Equal(fr.Payload, want) {
			t.Fatalf("payload %q, want %q", fr.Payload, want)
		}
		var out sessionproto.ConvEvent
		if err := sessionproto.ParseConvMessage(fr.Payload, &out); err != nil {
			t.Fatalf("decoding what the server wrote: %v", err)
		}
		if out.Text != text || out.ID != "0123" || !out.History || !out.Time.Equal(in.Time) || out.Type != "message" {
			t.Fatalf("round trip: %+v from %q", out, text)
		}
	})
}
