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

// Field offsets in a record.
const (
	offType    = 0
	offPID     = 4
	offLine    = 8
	offID      = 40
	offUser    = 44
	offHost    = 76
	offSession = 336
	offSec     = 340
	offUsec    = 344
	offAddr    = 348
	lenLine    = 32
	lenID      = 4
	lenUser    = 32
	lenHost    = 256
)

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
	le := binary.LittleEndian
	for i := range n {
		rec := b[i*RecordSize : (i+1)*RecordSize]
		r := Record{
			Type:    int16(le.Uint16(rec[offType:])),
			PID:     int32(le.Uint32(rec[offPID:])),
			Line:    cstr(rec[offLine : offLine+lenLine]),
			ID:      cstr(rec[offID : offID+lenID]),
			User:    cstr(rec[offUser : offUser+lenUser]),
			Host:    cstr(rec[offHost : offHost+lenHost]),
			Session: int32(le.Uint32(rec[offSession:])),
		}
		copy(r.Addr[:], rec[offAddr:])
		sec, usec := int32(le.Uint32(rec[offSec:])), int32(le.Uint32(rec[offUsec:]))
		if usec < 0 || usec > 999_999 {
			usec = 0 // not a microsecond count; keep the second
		}
		if sec != 0 || usec != 0 {
			r.Time = time.Unix(int64(sec), int64(usec)*1000)
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
	le := binary.LittleEndian
	rec := make([]byte, RecordSize)
	le.PutUint16(rec[offType:], uint16(r.Type))
	le.PutUint32(rec[offPID:], uint32(r.PID))
	copy(rec[offLine:offLine+lenLine], r.Line)
	copy(rec[offID:offID+lenID], r.ID)
	copy(rec[offUser:offUser+lenUser], r.User)
	copy(rec[offHost:offHost+lenHost], r.Host)
	le.PutUint32(rec[offSession:], uint32(r.Session))
	if !r.Time.IsZero() {
		if sec := r.Time.Unix(); sec >= 0 && sec <= 1<<31-1 {
			le.PutUint32(rec[offSec:], uint32(sec))
			le.PutUint32(rec[offUsec:], uint32(r.Time.Nanosecond()/1000))
		}
	}
	copy(rec[offAddr:], r.Addr[:])
	return append(b, rec...)
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
