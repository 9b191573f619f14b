package terminal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// The glibc utmp record on x86_64 and arm64 (both little-endian, both with
// a 32-bit ut_tv for compatibility with 32-bit programs): 384 octets.
//
//	off  size  field
//	  0     2  ut_type (+2 padding)
//	  4     4  ut_pid
//	  8    32  ut_line     device name without "/dev/"
//	 40     4  ut_id
//	 44    32  ut_user
//	 76   256  ut_host
//	332     4  ut_exit (termination, exit: int16 each)
//	336     4  ut_session
//	340     8  ut_tv (seconds, microseconds: int32 each)
//	348    16  ut_addr_v6
//	364    20  reserved
const RecordSize = 384

// Record types (ut_type) this package cares about.
const (
	DeadProcess = 8 // a login that ended; the slot is reused later
	UserProcess = 7 // a user's login on ut_line
)

// MaxRecords bounds how much of a utmp file is read: far more than any host
// has logins, far less than memory.
const MaxRecords = 16384

// ErrBadUtmp is the error for a utmp file that does not hold whole records.
var ErrBadUtmp = errors.New("terminal: malformed utmp")

// Record is one utmp record. Strings are the octets up to the first NUL.
type Record struct {
	Type    int16
	PID     int32
	Line    string // "pts/0", "tty1"
	ID      string
	User    string
	Host    string
	Session int32
	Time    time.Time // ut_tv, microsecond resolution
	Addr    [16]byte
}

// rawRecord mirrors the C layout for encoding/binary.
type rawRecord struct {
	Type     int16
	_        [2]byte
	PID      int32
	Line     [32]byte
	ID       [4]byte
	User     [32]byte
	Host     [256]byte
	Exit     [2]int16
	Session  int32
	Sec      int32
	Usec     int32
	Addr     [16]byte
	Reserved [20]byte
}

func cstr(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// ParseUtmp decodes the whole records in b. A trailing partial record (a
// writer caught mid-write) is reported with ErrBadUtmp after the records
// before it, which the caller may still use.
func ParseUtmp(b []byte) ([]Record, error) {
	n := len(b) / RecordSize
	if n > MaxRecords {
		return nil, fmt.Errorf("%w: %d records, at most %d are read", ErrBadUtmp, n, MaxRecords)
	}
	out := make([]Record, 0, n)
	for i := range n {
		var raw rawRecord
		if _, err := binary.Decode(b[i*RecordSize:(i+1)*RecordSize], binary.LittleEndian, &raw); err != nil {
			return out, fmt.Errorf("%w: record %d: %v", ErrBadUtmp, i, err)
		}
		r := Record{Type: raw.Type, PID: raw.PID, Line: cstr(raw.Line[:]), ID: cstr(raw.ID[:]),
			User: cstr(raw.User[:]), Host: cstr(raw.Host[:]), Session: raw.Session, Addr: raw.Addr}
		if raw.Sec != 0 || raw.Usec != 0 {
			r.Time = time.Unix(int64(raw.Sec), int64(raw.Usec)*1000)
		}
		out = append(out, r)
	}
	if rest := len(b) % RecordSize; rest != 0 {
		return out, fmt.Errorf("%w: %d trailing octets", ErrBadUtmp, rest)
	}
	return out, nil
}

// ReadUtmp reads and parses the utmp file at path, at most MaxRecords.
func ReadUtmp(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("terminal: utmp: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, (MaxRecords+1)*RecordSize))
	if err != nil {
		return nil, fmt.Errorf("terminal: utmp %s: %w", path, err)
	}
	rs, err := ParseUtmp(b)
	if err != nil {
		err = fmt.Errorf("%s: %w", path, err)
	}
	return rs, err
}

// AppendRecord appends r in the glibc layout. The node never writes utmp;
// this is for tests and tools that need a utmp file. Strings longer than
// their field are cut; times outside ut_tv's 32-bit range are stored as 0.
func AppendRecord(b []byte, r Record) []byte {
	raw := rawRecord{Type: r.Type, PID: r.PID, Session: r.Session, Addr: r.Addr}
	copy(raw.Line[:], r.Line)
	copy(raw.ID[:], r.ID)
	copy(raw.User[:], r.User)
	copy(raw.Host[:], r.Host)
	if !r.Time.IsZero() {
		if s := r.Time.Unix(); s >= 0 && s <= 1<<31-1 {
			raw.Sec, raw.Usec = int32(s), int32(r.Time.Nanosecond()/1000)
		}
	}
	b, err := binary.Append(b, binary.LittleEndian, &raw)
	if err != nil {
		panic(err) // fixed-size struct: cannot fail
	}
	return b
}

// WriteUtmp writes rs to path as a utmp file (for tests and tools), through
// a temporary file and a rename so that a reader never sees half of it.
func WriteUtmp(path string, rs []Record) error {
	var b []byte
	for _, r := range rs {
		b = AppendRecord(b, r)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("terminal: write utmp: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("terminal: write utmp: %w", err)
	}
	return nil
}
