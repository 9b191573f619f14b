package terminal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func sampleRecords() []Record {
	at := time.Unix(1_764_000_000, 123_456_000)
	return []Record{
		{Type: 2, Line: "~", User: "reboot", Host: "6.1.0", Time: at},
		{Type: UserProcess, PID: 4242, Line: "pts/0", ID: "ts/0", User: "bob", Host: "192.0.2.7", Session: 9, Time: at,
			Addr: [16]byte{192, 0, 2, 7}},
		{Type: DeadProcess, PID: 17, Line: "pts/1", ID: "ts/1", Time: at},
		{Type: UserProcess, PID: 77, Line: "tty1", ID: "tty1", User: "alice", Time: at.Add(time.Hour)},
	}
}

// Rule: the parser reads the glibc x86_64/arm64 layout: ut_type at 0,
// ut_pid at 4, ut_line at 8, ut_user at 44, ut_host at 76, ut_tv at 340,
// 384 octets a record.
func TestUtmpLayoutIsGlibcs(t *testing.T) {
	t.Parallel()
	b := make([]byte, RecordSize)
	binary.LittleEndian.PutUint16(b[0:], UserProcess)
	binary.LittleEndian.PutUint32(b[4:], 4242)
	copy(b[8:], "pts/7")
	copy(b[44:], "carol")
	copy(b[76:], "host.example")
	binary.LittleEndian.PutUint32(b[340:], 1_700_000_000)
	binary.LittleEndian.PutUint32(b[344:], 5)
	rs, err := ParseUtmp(b)
	if err != nil || len(rs) != 1 {
		t.Fatalf("ParseUtmp = %v, %v", rs, err)
	}
	r := rs[0]
	if r.Type != UserProcess || r.PID != 4242 || r.Line != "pts/7" || r.User != "carol" || r.Host != "host.example" ||
		!r.Time.Equal(time.Unix(1_700_000_000, 5000)) {
		t.Fatalf("record = %+v", r)
	}
	if got := AppendRecord(nil, r); !bytes.Equal(got, b) {
		t.Fatalf("AppendRecord differs from the glibc layout:\n%x\n%x", got, b)
	}
}

// Rule: what WriteUtmp writes, ReadUtmp reads back.
func TestUtmpRoundTrip(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "utmp")
	want := sampleRecords()
	if err := WriteUtmp(p, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadUtmp(p)
	if err != nil || len(got) != len(want) {
		t.Fatalf("ReadUtmp = %d records, %v", len(got), err)
	}
	for i := range want {
		if got[i] != want[i] && !(got[i].Time.Equal(want[i].Time) && sameButTime(got[i], want[i])) {
			t.Fatalf("record %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func sameButTime(a, b Record) bool {
	a.Time, b.Time = time.Time{}, time.Time{}
	return a == b
}

// Rule: a record caught mid-write is reported, and the whole records before
// it are still returned; fields filling their whole array need no NUL.
func TestUtmpPartialAndFullFields(t *testing.T) {
	t.Parallel()
	long := Record{Type: UserProcess, Line: "0123456789abcdef0123456789abcdef", User: "u"}
	b := AppendRecord(nil, long)
	b = append(b, make([]byte, 100)...)
	rs, err := ParseUtmp(b)
	if !errors.Is(err, ErrBadUtmp) || len(rs) != 1 || rs[0].Line != long.Line {
		t.Fatalf("ParseUtmp = %+v, %v; want the full record and ErrBadUtmp", rs, err)
	}
	if _, err := ParseUtmp(make([]byte, (MaxRecords+1)*RecordSize)); !errors.Is(err, ErrBadUtmp) {
		t.Fatalf("ParseUtmp of too many records = %v, want ErrBadUtmp", err)
	}
}

// FuzzParseUtmp: no input panics the parser, and every record it returns
// encodes to the octets it came from, minus what follows a NUL.
func FuzzParseUtmp(f *testing.F) {
	var b []byte
	for _, r := range sampleRecords() {
		b = AppendRecord(b, r)
	}
	f.Add(b)
	f.Add(b[:RecordSize+7])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 16*RecordSize {
			// More records are more of the same, and a huge input kept
			// in the corpus makes every later mutation slow; Skip keeps it
			// out. The MaxRecords cap has its own test.
			t.Skip()
		}
		rs, err := ParseUtmp(b)
		if err != nil && !errors.Is(err, ErrBadUtmp) {
			t.Fatalf("error %v does not wrap ErrBadUtmp", err)
		}
		if len(rs) != min(len(b)/RecordSize, MaxRecords) && err == nil {
			t.Fatalf("%d records from %d octets", len(rs), len(b))
		}
		for i, r := range rs {
			again, err := ParseUtmp(AppendRecord(nil, r))
			if err != nil || len(again) != 1 {
				t.Fatalf("record %d does not re-parse: %v", i, err)
			}
			if !sameButTime(again[0], r) || !again[0].Time.Equal(r.Time) && r.Time.Unix() >= 0 {
				t.Fatalf("record %d changed: %+v -> %+v", i, r, again[0])
			}
		}
	})
}
