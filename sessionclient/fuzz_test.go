package sessionclient

import (
	"bytes"
	"testing"

	"github.com/msprelay/msprelay/sessionproto"
)

// FuzzPresencePush feeds arbitrary server bytes to the client's reader and
// its presence push decoder (ILN, NLN, FLN): it must never panic, and an
// event it accepts, written back as the server would, decodes to the same
// event. Seeds are in testdata/fuzz/FuzzPresencePush.
func FuzzPresencePush(f *testing.F) {
	f.Add([]byte("ILN 3 NLN bob n1 tty1\r\nNLN AWY alice n2 pts/1\r\nFLN alice n2 pts/1\r\n"))
	f.Add([]byte("NLN HDN caf%E9 n1 -\r\nFLN a%20b n1 %2D\r\nILN 4 BSY x y z extra\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := sessionproto.NewServerReader(bytes.NewReader(data))
		for range 100 {
			fm, err := fr.Read()
			if err != nil {
				return
			}
			if fm.Cmd != "ILN" && fm.Cmd != "NLN" && fm.Cmd != "FLN" {
				continue
			}
			ev, err := parseEvent(fm)
			if err != nil {
				continue
			}
			args := []string{sessionproto.EncodeToken(ev.User), sessionproto.EncodeToken(ev.Node), sessionproto.EncodeToken(ev.Term)}
			if fm.Cmd != "FLN" {
				args = append([]string{ev.State.Code()}, args...)
			}
			enc := sessionproto.Line(fm.Cmd, fm.TrID, fm.HasTrID, args...)
			again, err := sessionproto.NewServerReader(bytes.NewReader(enc)).Read()
			if err != nil {
				t.Fatalf("re-reading %q: %v", enc, err)
			}
			ev2, err := parseEvent(again)
			if err != nil || ev2 != ev {
				t.Fatalf("round trip of %q: %+v %v, want %+v", enc, ev2, err, ev)
			}
		}
	})
}
