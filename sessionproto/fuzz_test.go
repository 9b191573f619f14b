package sessionproto

import (
	"bytes"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"testing/iotest"
)

// Seed corpora live in testdata/fuzz/<target>/; the f.Add calls below are
// the minimum each target starts from.

// FuzzClientStream feeds arbitrary bytes to the server's reader of client
// frames. Every frame it accepts must survive encoding and re-reading
// unchanged, and reading must stop with an error, never a panic.
func FuzzClientStream(f *testing.F) {
	f.Add([]byte("VER 1 MSPS1\r\nUSR 2 alice pts/1\r\nSND 3 bob - 5\r\nhello"))
	f.Add([]byte("PNG\r\nOUT\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkStream(t, data, &clientGrammar, nil)
		checkPooled(t, data, &clientGrammar)
	})
}

// checkPooled reads data with a FrameReader that owns its buffer and with
// one that borrows it from a pool only while a frame arrives (the server's
// reader of client frames), the latter also from a source that yields one
// octet at a time, so that it gives its buffer back and borrows it again
// between any two octets: all three must read the same frames and stop
// with the same error.
func checkPooled(t *testing.T, data []byte, g *grammar) {
	pool := &sync.Pool{}
	plain := newFrameReader(bytes.NewReader(data), g)
	pooled := []*FrameReader{
		{g: g, src: bytes.NewReader(data), pool: pool},
		{g: g, src: iotest.OneByteReader(bytes.NewReader(data)), pool: pool},
	}
	for _, fr := range pooled {
		fr.pre.src = fr.src
	}
	for i := range 1000 {
		want, wantErr := plain.Read()
		for k, fr := range pooled {
			got, err := fr.Read()
			if fmt.Sprint(err) != fmt.Sprint(wantErr) || !reflect.DeepEqual(got, want) {
				t.Fatalf("frame %d, pooled reader %d: got %+v, %v; want %+v, %v", i, k, got, err, want, wantErr)
			}
		}
		if wantErr != nil {
			return
		}
	}
}

// FuzzServerStream feeds arbitrary bytes to the client's reader of server
// frames and to the payload decoders behind it.
func FuzzServerStream(f *testing.F) {
	f.Add([]byte("USR 2 OK alice pts/1 NLN n1 trust\r\nILN 3 NLN bob n1 tty1\r\nMSG 9\r\n\r\nhi there"))
	f.Add([]byte("911 3 authentication failed\r\nACK 5 delivered to alice\r\nNAM 6 LST 7\r\nx\r\ny\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkStream(t, data, &serverGrammar, func(f *Frame) {
			switch f.Cmd {
			case "MSG":
				ParseMessage(f.Payload)
			case "WHO":
				ParseWho(f.Payload)
			case "LST", "NAM":
				ParseNames(f.Payload)
			}
		})
	})
}

// checkStream reads frames of grammar g from data until an error.
func checkStream(t *testing.T, data []byte, g *grammar, each func(*Frame)) {
	fr := newFrameReader(bytes.NewReader(data), g)
	for range 1000 {
		fm, err := fr.Read()
		if err != nil {
			return
		}
		if each != nil {
			each(fm)
		}
		enc := AppendFrame(nil, fm)
		again, err := newFrameReader(bytes.NewReader(enc), g).Read()
		if err != nil {
			t.Fatalf("re-reading %q (from %+v): %v", enc, fm, err)
		}
		if !reflect.DeepEqual(fm, again) {
			t.Fatalf("round trip changed the frame:\n got %+v\nwant %+v\n(encoded %q)", again, fm, enc)
		}
	}
}

// FuzzMessage: any MSG payload the client accepts encodes back to one that
// decodes to the same message.
func FuzzMessage(f *testing.F) {
	f.Add([]byte("Id: 1\r\nSender: bob\r\nVerified: yes\r\nTime: 2024-05-06T07:08:09.5Z\r\nSignature: 00ff\r\n\r\nhi"))
	f.Add([]byte("\r\n"))
	f.Add([]byte("Id: 2\r\nSender: root\r\nVerified: no\r\nSender-Method: kernel\r\nSender-User: mallory\r\n\r\nhi"))
	f.Add([]byte("Sender-Method: peercred\r\nsender-method: secret\r\n\r\nrepeated"))
	f.Fuzz(func(t *testing.T, p []byte) {
		m, err := ParseMessage(p)
		if err != nil {
			return
		}
		enc := AppendMessage(nil, m)
		m2, err := ParseMessage(enc)
		if err != nil {
			t.Fatalf("re-parsing %q: %v", enc, err)
		}
		if !m.Time.Equal(m2.Time) {
			t.Fatalf("time %v became %v", m.Time, m2.Time)
		}
		m.Time = m2.Time
		if *m != *m2 {
			t.Fatalf("round trip changed the message:\n got %+v\nwant %+v", *m2, *m)
		}
	})
}

// FuzzWho: WHO and list payloads reach a fixed point after one round trip
// (the first may drop sub-second digits).
func FuzzWho(f *testing.F) {
	f.Add([]byte("alice n1 pts/1 NLN 2024-01-02T03:04:05Z 2024-01-02T03:04:06Z helpdesk,ops\r\n"))
	f.Add([]byte("bob n2 - HDN - - -\r\n"))
	f.Fuzz(func(t *testing.T, p []byte) {
		if es, err := ParseWho(p); err == nil {
			var enc []byte
			for i := range es {
				enc = AppendWhoLine(enc, &es[i])
			}
			es2, err := ParseWho(enc)
			if err != nil {
				t.Fatalf("re-parsing %q: %v", enc, err)
			}
			var enc2 []byte
			for i := range es2 {
				enc2 = AppendWhoLine(enc2, &es2[i])
			}
			if !bytes.Equal(enc, enc2) {
				t.Fatalf("not a fixed point:\n%q\n%q", enc, enc2)
			}
		}
		if ns, err := ParseNames(p); err == nil {
			ns2, err := ParseNames(AppendNames(nil, ns))
			if err != nil || !reflect.DeepEqual(ns, ns2) {
				t.Fatalf("names %q became %q (%v)", ns, ns2, err)
			}
		}
	})
}

// FuzzToken: every string survives encodeToken/decodeToken, and the token
// is one non-empty argument a line may hold.
func FuzzToken(f *testing.F) {
	for _, s := range []string{"", "-", "alice", "50%", "a b,c", "caf\xe9", "\x00\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok := EncodeToken(s)
		if tok == "" {
			t.Fatal("empty token")
		}
		for i := 0; i < len(tok); i++ {
			if c := tok[i]; c != '%' && TokenSpecial(c) {
				t.Fatalf("token %q holds octet 0x%02X", tok, c)
			}
		}
		if got, err := DecodeToken(tok); err != nil || got != s {
			t.Fatalf("DecodeToken(%q) = %q %v, want %q", tok, got, err, s)
		}
	})
}
