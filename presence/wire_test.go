package presence

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/msprelay/msprelay/principal"
)

func sampleMessages() []wireMsg {
	e := entry("alice", "n1", "pts/3", principal.Busy, "al", "ally")
	e2 := entry("bob", "n1", "tty1", principal.Online)
	tty := entry("carol", "n2", "pts/0", principal.Idle)
	tty.Kind = principal.KindTTY
	tty1 := tty
	tty1.Node = "n1"
	return []wireMsg{
		{typ: msgChange, origin: "n1", ver: version{1 << 60, 7}, change: change{Op: opUpsert, Entry: e}},
		{typ: msgChange, origin: "n1", ver: version{3, 8}, change: change{Op: opRemove, Entry: principal.Entry{User: "bob", Node: "n1", Term: "tty1"}}},
		{typ: msgPull, from: "n2"},
		{typ: msgTable, tables: []wireTable{{origin: "n1", ver: version{5, 9}, entries: []principal.Entry{e, e2}}}},
		{typ: msgTable, tables: []wireTable{{origin: "n1", ver: version{5, 0}}}},
		{typ: msgState, tables: []wireTable{{origin: "n1", ver: version{5, 9}, entries: []principal.Entry{e}}, {origin: "n2", ver: version{6, 1}}}},
		{typ: msgState, tables: []wireTable{}},
		{typ: msgChange, origin: "n2", ver: version{4, 2}, change: change{Op: opUpsert, Entry: tty}},
		{typ: msgTable, tables: []wireTable{{origin: "n2", ver: version{4, 3}, entries: []principal.Entry{tty, entry("dave", "n2", "tty2", principal.Online)}}}},
		{typ: msgDelta, origin: "n1", ver: version{5, 12}, base: 9, items: []change{
			{Op: opUpsert, Entry: e}, {Op: opRemove, Entry: principal.Entry{User: "bob", Node: "n1", Term: "tty1"}}, {Op: opUpsert, Entry: tty1},
		}},
		{typ: msgDelta, origin: "n2", ver: version{1, 1}, base: 0, items: []change{{Op: opRemove, Entry: principal.Entry{User: "carol", Node: "n2", Term: "pts/0"}}}},
		{typ: msgSuspect, from: "n2", node: "n3"},
	}
}

// Rule (issue 9: "add fields backward-compatibly"): a session entry is
// encoded exactly as before terminal kinds existed, so nodes that predate
// them still read it; a tty entry sets bit 0x80 of its state byte and ends
// with an ext block holding its kind.
func TestWireEntryKindsAreBackwardCompatible(t *testing.T) {
	t.Parallel()
	e := entry("bob", "n1", "tty1", principal.Busy)
	old := appendString(nil, "bob")
	old = appendString(old, "tty1")
	old = append(old, byte(principal.Busy), 0)
	old = binary.AppendVarint(old, t0.UnixNano())
	old = binary.AppendVarint(old, t1.UnixNano())
	if got := appendEntry(nil, &e); !bytes.Equal(got, old) {
		t.Fatalf("session entry = %x, want the original layout %x", got, old)
	}
	e.Kind = principal.KindTTY
	tty := appendEntry(nil, &e)
	want := bytes.Clone(old)
	want[len(appendString(appendString(nil, "bob"), "tty1"))] |= stateExt
	want = append(want, 1, byte(principal.KindTTY))
	if !bytes.Equal(tty, want) {
		t.Fatalf("tty entry = %x, want %x", tty, want)
	}
	// Fields appended to the ext block by a later version are skipped.
	later := append(bytes.Clone(want[:len(want)-2]), 3, byte(principal.KindTTY), 0xaa, 0xbb)
	r := &reader{b: later}
	got := r.entry("n1")
	if r.err != nil || len(r.b) != 0 || got.Kind != principal.KindTTY || got.State != principal.Busy {
		t.Fatalf("entry with a longer ext block = %+v, err %v, %d left", got, r.err, len(r.b))
	}
}

// Rule: every message decodes to what was encoded.
func TestWireRoundTrip(t *testing.T) {
	t.Parallel()
	for _, m := range sampleMessages() {
		b := encodeMessage(m)
		got, err := decodeMessage(b)
		if err != nil {
			t.Fatalf("decode(type %d): %v", m.typ, err)
		}
		if !bytes.Equal(encodeMessage(got), b) {
			t.Fatalf("type %d: re-encoding differs", m.typ)
		}
		if m.typ == msgTable || m.typ == msgState {
			for i := range m.tables {
				if w, g := formatEntries(m.tables[i].entries), formatEntries(got.tables[i].entries); w != g {
					t.Fatalf("table %d entries = %s, want %s", i, g, w)
				}
			}
		}
		if m.typ == msgDelta {
			for i := range m.items {
				if got.items[i].Op != m.items[i].Op || formatEntries([]principal.Entry{got.items[i].Entry}) != formatEntries([]principal.Entry{m.items[i].Entry}) {
					t.Fatalf("delta item %d = %d %s, want %d %s", i, got.items[i].Op, formatEntries([]principal.Entry{got.items[i].Entry}),
						m.items[i].Op, formatEntries([]principal.Entry{m.items[i].Entry}))
				}
			}
		}
		if m.typ == msgChange && formatEntries([]principal.Entry{got.change.Entry}) != formatEntries([]principal.Entry{m.change.Entry}) {
			t.Fatalf("change entry = %s, want %s", formatEntries([]principal.Entry{got.change.Entry}), formatEntries([]principal.Entry{m.change.Entry}))
		}
	}
}

// Rule: malformed input is rejected with ErrMalformed, never a panic, and
// claimed counts cannot make the decoder allocate beyond the input.
func TestWireRejectsMalformed(t *testing.T) {
	t.Parallel()
	good := encodeMessage(sampleMessages()[0])
	table := encodeMessage(sampleMessages()[3])
	hdr := func(typ byte, rest ...byte) []byte { return append([]byte{wireVersion, typ}, rest...) }
	str := func(s string) []byte { return appendString(nil, s) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	huge := binary.AppendUvarint(nil, 1<<40)
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"unknown version", []byte{9, msgPull}},
		{"unknown type", hdr(99)},
		{"truncated change", good[:len(good)-1]},
		{"trailing bytes", append(bytes.Clone(good), 0)},
		{"origin not a node name", cat(hdr(msgPull), str("a.b"))},
		{"suspect notice without the suspect", cat(hdr(msgSuspect), str("n1"))},
		{"suspect not a node name", cat(hdr(msgSuspect), str("n1"), str("a.b"))},
		{"name longer than MaxNameLen", cat(hdr(msgPull), str(strings.Repeat("n", principal.MaxNameLen+1)))},
		{"length beyond input", cat(hdr(msgPull), []byte{40}, []byte("abc"))},
		{"unknown op", cat(hdr(msgChange), str("n1"), []byte{1, 1, 9})},
		{"change number 0", cat(hdr(msgChange), str("n1"), []byte{1, 0, byte(opRemove)}, str("alice"), str("tty"))},
		{"user not canonical", cat(hdr(msgChange), str("n1"), []byte{1, 1, byte(opRemove)}, str("Alice"), str("tty"))},
		{"terminal is *", cat(hdr(msgChange), str("n1"), []byte{1, 1, byte(opRemove)}, str("alice"), str("*"))},
		{"state offline stored", cat(hdr(msgChange), str("n1"), []byte{1, 1, byte(opUpsert)}, str("alice"), str("tty"), []byte{0, 0, 0, 0})},
		{"state out of range", cat(hdr(msgChange), str("n1"), []byte{1, 1, byte(opUpsert)}, str("alice"), str("tty"), []byte{byte(principal.Hidden) + 1, 0, 0, 0})},
		{"too many aliases", cat(hdr(msgChange), str("n1"), []byte{1, 1, byte(opUpsert)}, str("alice"), str("tty"), []byte{1, MaxAliases + 1})},
		{"huge entry count", cat(hdr(msgTable), str("n1"), []byte{1, 1}, huge)},
		{"entry count beyond input", cat(hdr(msgTable), str("n1"), []byte{1, 1, 100}, table[8:40])},
		{"huge table count", cat(hdr(msgState), huge)},
		{"duplicate entry", cat(hdr(msgTable), str("n1"), []byte{1, 1, 2},
			appendEntry(nil, &principal.Entry{User: "a", Term: "t", State: principal.Online}), appendEntry(nil, &principal.Entry{User: "a", Term: "T", State: principal.Online}))},
		{"bad varint", cat(hdr(msgChange), str("n1"), bytes.Repeat([]byte{0xff}, 11))},
		{"ext length 0", cat(hdr(msgChange), str("n1"), []byte{1, 1, byte(opUpsert)}, str("alice"), str("tty"), []byte{byte(principal.Online) | stateExt, 0, 0, 0, 0})},
		{"ext kind session", cat(hdr(msgChange), str("n1"), []byte{1, 1, byte(opUpsert)}, str("alice"), str("tty"), []byte{byte(principal.Online) | stateExt, 0, 0, 0, 1, byte(principal.KindSession)})},
		{"ext kind unknown", cat(hdr(msgChange), str("n1"), []byte{1, 1, byte(opUpsert)}, str("alice"), str("tty"), []byte{byte(principal.Online) | stateExt, 0, 0, 0, 1, 9})},
		{"ext beyond input", cat(hdr(msgChange), str("n1"), []byte{1, 1, byte(opUpsert)}, str("alice"), str("tty"), []byte{byte(principal.Online) | stateExt, 0, 0, 0, 5, byte(principal.KindTTY)})},
		{"ext too long", cat(hdr(msgChange), str("n1"), []byte{1, 1, byte(opUpsert)}, str("alice"), str("tty"), []byte{byte(principal.Online) | stateExt, 0, 0, 0, maxExtBytes + 1}, bytes.Repeat([]byte{1}, maxExtBytes+1))},
		{"delta that ends where it starts", cat(hdr(msgDelta), str("n1"), []byte{1, 5, 5, 1, byte(opRemove)}, str("alice"), str("tty"))},
		{"delta that ends before it starts", cat(hdr(msgDelta), str("n1"), []byte{1, 5, 4, 1, byte(opRemove)}, str("alice"), str("tty"))},
		{"empty delta", cat(hdr(msgDelta), str("n1"), []byte{1, 0, 1, 0})},
		{"delta changing one terminal twice", cat(hdr(msgDelta), str("n1"), []byte{1, 0, 2, 2, byte(opRemove)}, str("alice"), str("tty"),
			[]byte{byte(opRemove)}, str("alice"), str("TTY"))},
		{"delta item count beyond input", cat(hdr(msgDelta), str("n1"), []byte{1, 0, 2, 100, byte(opRemove)}, str("alice"), str("tty"))},
		{"delta item count beyond the cap", cat(hdr(msgDelta), str("n1"), []byte{1, 0, 2}, binary.AppendUvarint(nil, maxDeltaItems+1),
			bytes.Repeat(cat([]byte{byte(opRemove)}, str("a"), str("t")), maxDeltaItems+1))},
		{"delta item with unknown op", cat(hdr(msgDelta), str("n1"), []byte{1, 0, 1, 1, 9})},
		{"ext flag on offline state", cat(hdr(msgChange), str("n1"), []byte{1, 1, byte(opUpsert)}, str("alice"), str("tty"), []byte{stateExt, 0, 0, 0, 1, byte(principal.KindTTY)})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeMessage(tt.in); !errors.Is(err, ErrMalformed) {
				t.Fatalf("decodeMessage = %v, want ErrMalformed", err)
			}
		})
	}
}

// Rule: the digest in node metadata stays far below memberlist's 512-byte
// limit (over it, memberlist panics) and round-trips.
func TestDigestIsSmallAndRoundTrips(t *testing.T) {
	t.Parallel()
	d := digest{ver: version{1<<63 + 5, 1<<64 - 1}, count: 1<<32 - 1}
	b := encodeDigest(d)
	if len(b) != 21 {
		t.Fatalf("digest is %d bytes, want 21", len(b))
	}
	got, err := decodeDigest(b)
	if err != nil || got != d {
		t.Fatalf("decodeDigest = %+v, %v; want %+v", got, err, d)
	}
	for _, bad := range [][]byte{nil, b[:20], append(bytes.Clone(b), 0), append([]byte{9}, b[1:]...)} {
		if _, err := decodeDigest(bad); !errors.Is(err, ErrMalformed) {
			t.Fatalf("decodeDigest(%x) = %v, want ErrMalformed", bad, err)
		}
	}
}

// FuzzDecodeMessage checks that no input panics the decoder and that what it
// accepts re-encodes to the same bytes and decodes to the same message.
func FuzzDecodeMessage(f *testing.F) {
	for _, m := range sampleMessages() {
		f.Add(encodeMessage(m))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMessage(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		again, err := decodeMessage(encodeMessage(m))
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if normalise(again) != normalise(m) {
			t.Fatalf("round trip changed the message:\n%+v\n%+v", m, again)
		}
	})
}

// normalise renders a message with times as instants, for comparison.
func normalise(m wireMsg) string {
	s := fmt.Sprintf("%d|%s|%v|%d|%s|%s", m.typ, m.origin, m.ver, m.change.Op, formatEntries([]principal.Entry{m.change.Entry}), m.from+"|"+m.node)
	for _, t := range m.tables {
		s += fmt.Sprintf("|%s %v %s", t.origin, t.ver, formatEntries(t.entries))
	}
	return s
}
