package sessionproto

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
)

// counter returns a TrID source counting from 1.
func counter() func() uint32 {
	var n uint32
	return func() uint32 { n++; return n }
}

// Issue 21: "acknowledges them in one frame". Under MSPS3 up to MaxAckIDs
// ids share a line; for an MSPS2 server every id has its own line; no line
// goes over MaxLine; ids are tokens ("-" for the empty one).
func TestAppendAcks(t *testing.T) {
	t.Parallel()
	ids := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, strings.Repeat(string(rune('a'+i%26)), 24))
		}
		return out
	}
	long := strings.Repeat("x", 300) // four of them do not fit one line
	for _, tc := range []struct {
		name    string
		ids     []string
		perLine int
		lines   []int // ids per line
	}{
		{"none: nothing", nil, MaxAckIDs, nil},
		{"MSPS2: one id per line", ids(3), 1, []int{1, 1, 1}},
		{"MSPS3: one line", ids(3), MaxAckIDs, []int{3}},
		{"MSPS3: MaxAckIDs per line", ids(MaxAckIDs + 5), MaxAckIDs, []int{MaxAckIDs, 5}},
		{"perLine above MaxAckIDs is MaxAckIDs", ids(MaxAckIDs + 1), 1000, []int{MaxAckIDs, 1}},
		{"perLine 0 is 1", ids(2), 0, []int{1, 1}},
		{"a line stops at MaxLine", []string{long, long, long, long, long}, MaxAckIDs, []int{3, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := AppendAcks(nil, tc.ids, tc.perLine, counter())
			fr := NewClientReader(bytes.NewReader(b))
			var got []string
			var per []int
			for {
				f, err := fr.Read()
				if err != nil {
					break
				}
				if f.Cmd != "ACK" || f.TrID != uint32(len(per)+1) {
					t.Fatalf("frame %+v, want ACK %d", f, len(per)+1)
				}
				ids, err := ParseAckIDs(f.Args, MaxAckIDs)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, ids...)
				per = append(per, len(ids))
			}
			for _, l := range strings.SplitAfter(string(b), "\r\n") {
				if len(l) > MaxLine {
					t.Errorf("line of %d octets", len(l))
				}
			}
			if !slices.Equal(got, tc.ids) || !slices.Equal(per, tc.lines) {
				t.Fatalf("read back %d ids in lines %v, want %d in %v\n%q", len(got), per, len(tc.ids), tc.lines, b)
			}
		})
	}
}

// The ACK arguments a server takes: one to max tokens, each decoded.
func TestParseAckIDs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want []string
		bad  bool
	}{
		{"one", []string{"abc"}, []string{"abc"}, false},
		{"several, escaped and empty", []string{"a%20b", "-", "%2D"}, []string{"a b", "", "-"}, false},
		{"none", nil, nil, true},
		{"more than max", slices.Repeat([]string{"x"}, 4), nil, true},
		{"bad escape", []string{"ok", "%zz"}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseAckIDs(tc.args, 3)
			if tc.bad != (err != nil) || !slices.Equal(got, tc.want) {
				t.Fatalf("ParseAckIDs(%q) = %q, %v", tc.args, got, err)
			}
			if err != nil && !errors.Is(err, ErrAckIDs) {
				t.Fatalf("error %v is not ErrAckIDs", err)
			}
		})
	}
}

// FuzzAckLine reads arbitrary client bytes as the server does and decodes
// the ids of every ACK line: it must never panic, and ids it accepts,
// written back by AppendAcks (in MSPS3 and MSPS2 form), read back as the
// same ids. Seeds are in testdata/fuzz/FuzzAckLine.
func FuzzAckLine(f *testing.F) {
	f.Add([]byte("ACK 1 0123456789abcdef01234567\r\n"))
	f.Add([]byte("ACK 2 aa bb %2D - cc\r\nACK 3 x\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := NewClientReader(bytes.NewReader(data))
		for range 100 {
			fm, err := fr.Read()
			if err != nil {
				return
			}
			if fm.Cmd != "ACK" {
				continue
			}
			ids, err := ParseAckIDs(fm.Args, MaxAckIDs)
			if err != nil {
				continue
			}
			for _, id := range ids {
				if len("ACK 4294967295 ")+len(EncodeToken(id))+2 > MaxLine {
					return // an id too long for any line: AppendAcks cannot help it
				}
			}
			for _, per := range []int{MaxAckIDs, 1} {
				enc := AppendAcks(nil, ids, per, counter())
				r := NewClientReader(bytes.NewReader(enc))
				var back []string
				for {
					g, err := r.Read()
					if err != nil {
						break
					}
					more, err := ParseAckIDs(g.Args, MaxAckIDs)
					if err != nil {
						t.Fatalf("re-reading %q: %v", enc, err)
					}
					back = append(back, more...)
				}
				if !slices.Equal(back, ids) {
					t.Fatalf("round trip of %q (per line %d): %q, want %q", enc, per, back, ids)
				}
			}
		}
	})
}
