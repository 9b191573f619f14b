package sockowner

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// lookupTimeout bounds one question to the kernel, which answers in
// microseconds; it only guards the caller (the MSP accept loop or UDP read
// loop) against a wedged netlink socket.
const lookupTimeout = time.Second

// Netlink framing (include/uapi/linux/netlink.h).
const (
	sizeofNlmsghdr = 16
	// recvBuf is the receive buffer: the kernel sizes a dump's messages
	// to what the reader offers, at most 32 KiB, and a datagram that
	// fills the buffer is refused as perhaps truncated.
	recvBuf = 64 << 10
)

// errTruncated is a netlink datagram as long as the buffer.
var errTruncated = errors.New("sockowner: netlink reply truncated")

// diagSock is a NETLINK_SOCK_DIAG socket driven by plain system calls on a
// non-blocking descriptor, with its request and receive buffers kept, so
// that a question costs a write and a read or two and allocates nothing.
// The kernel answers a sock_diag question while the request is being
// written (a dump's later parts while the previous part is being read), so
// a reply is normally there when read; a read that finds nothing waits in
// poll(2) for at most lookupTimeout. The socket is opened on first use and
// again after any failure (a reply may be late, or half read). The
// diagClient's mutex guards every field.
type diagSock struct {
	fd   int // valid when open
	open bool
	seq  uint32
	req  [sizeofNlmsghdr + maxReq]byte
	buf  []byte // recvBuf octets, made when first opened
	pfd  [1]unix.PollFd
}

func (s *diagSock) close() error {
	if !s.open {
		return nil
	}
	s.open = false
	return unix.Close(s.fd)
}

// query sends one SOCK_DIAG_BY_FAMILY request and appends the decoded
// replies to msgs. An exact lookup that finds nothing is ErrNotFound.
func (s *diagSock) query(r diagReq, dump bool, msgs []diagMsg) ([]diagMsg, error) {
	if !s.open {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_SOCK_DIAG)
		if err != nil {
			return msgs, fmt.Errorf("sockowner: open NETLINK_SOCK_DIAG: %w: %w", ErrUnsupported, err)
		}
		s.fd, s.open = fd, true
		if s.buf == nil {
			s.buf = make([]byte, recvBuf)
		}
	}
	out, err := s.exchange(r, dump, msgs)
	if err != nil && !errors.Is(err, ErrNotFound) {
		s.close()
		return msgs, err
	}
	return out, err
}

// exchange is one question and its answers on the open socket.
func (s *diagSock) exchange(r diagReq, dump bool, msgs []diagMsg) ([]diagMsg, error) {
	s.seq++
	n := sizeofNlmsghdr + r.put(s.req[sizeofNlmsghdr:])
	flags := uint16(unix.NLM_F_REQUEST)
	if dump {
		flags |= unix.NLM_F_DUMP
	}
	h := s.req[:sizeofNlmsghdr]
	binary.NativeEndian.PutUint32(h[0:], uint32(n))
	binary.NativeEndian.PutUint16(h[4:], unix.SOCK_DIAG_BY_FAMILY)
	binary.NativeEndian.PutUint16(h[6:], flags)
	binary.NativeEndian.PutUint32(h[8:], s.seq)
	binary.NativeEndian.PutUint32(h[12:], 0) // the kernel fills in our port
	if _, err := unix.Write(s.fd, s.req[:n]); err != nil {
		return msgs, fmt.Errorf("sockowner: sock_diag request: %w", err)
	}
	var deadline time.Time
	for {
		got, err := unix.Read(s.fd, s.buf)
		if err == unix.EAGAIN || err == unix.EINTR {
			if deadline.IsZero() {
				deadline = time.Now().Add(lookupTimeout)
			}
			if err := s.wait(deadline); err != nil {
				return msgs, err
			}
			continue
		}
		if err != nil {
			return msgs, fmt.Errorf("sockowner: sock_diag reply: %w", err)
		}
		if got >= len(s.buf) {
			return msgs, errTruncated
		}
		var done bool
		msgs, done, err = s.parse(s.buf[:got], dump, msgs)
		if err != nil || done {
			return msgs, err
		}
	}
}

// wait polls for a reply until deadline.
func (s *diagSock) wait(deadline time.Time) error {
	left := time.Until(deadline)
	if left <= 0 {
		return fmt.Errorf("sockowner: sock_diag: no reply within %v", lookupTimeout)
	}
	s.pfd[0] = unix.PollFd{Fd: int32(s.fd), Events: unix.POLLIN}
	_, err := unix.Poll(s.pfd[:], int(left/time.Millisecond)+1)
	if err != nil && err != unix.EINTR {
		return fmt.Errorf("sockowner: sock_diag poll: %w", err)
	}
	return nil
}

// parse decodes one netlink datagram of replies and reports whether the
// answer is complete: a dump ends with NLMSG_DONE, an exact lookup with
// its one reply. Replies to an earlier question (another sequence number,
// after a failure) are skipped. Like parseDiagMsg it treats the input as
// hostile: any malformed frame is an error, never a panic.
func (s *diagSock) parse(b []byte, dump bool, msgs []diagMsg) ([]diagMsg, bool, error) {
	for len(b) > 0 {
		if len(b) < sizeofNlmsghdr {
			return msgs, false, fmt.Errorf("sockowner: netlink frame of %d octets", len(b))
		}
		l := int(binary.NativeEndian.Uint32(b[0:]))
		if l < sizeofNlmsghdr || l > len(b) {
			return msgs, false, fmt.Errorf("sockowner: netlink frame length %d of %d", l, len(b))
		}
		typ := binary.NativeEndian.Uint16(b[4:])
		seq := binary.NativeEndian.Uint32(b[8:])
		data := b[sizeofNlmsghdr:l]
		b = b[min((l+3)&^3, len(b)):]
		if seq != s.seq {
			continue
		}
		switch typ {
		case unix.NLMSG_DONE:
			return msgs, true, nil
		case unix.NLMSG_ERROR:
			if len(data) < 4 {
				return msgs, false, fmt.Errorf("sockowner: short netlink error")
			}
			errno := -int32(binary.NativeEndian.Uint32(data))
			switch {
			case errno == 0:
				return msgs, true, nil
			case unix.Errno(errno) == unix.ENOENT:
				return msgs, true, ErrNotFound
			}
			return msgs, false, fmt.Errorf("sockowner: sock_diag: %w", unix.Errno(errno))
		case unix.SOCK_DIAG_BY_FAMILY:
			m, err := parseDiagMsg(data)
			if err != nil {
				return msgs, false, err
			}
			msgs = append(msgs, m)
			if !dump {
				return msgs, true, nil
			}
		}
	}
	return msgs, false, nil
}
