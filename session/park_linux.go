//go:build linux

package session

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// parker watches the sockets of idle sessions with one epoll instance, so
// that an idle signed-in session has no goroutine at all: its reader parks
// the socket here and returns, and the poller starts a new reader when the
// client sends something (see session.park). The socket stays in Go's own
// netpoller too; this second epoll set only watches it, non-destructively
// (EPOLLONESHOT, and reads are left to the reader).
//
// Ownership: the server makes the parker on the first park and starts run
// (counted in the server's wg); stop ends run and closes both descriptors.
// mu guards next, parked, closed and the descriptors (every epoll_ctl runs
// under it, so none runs on a closed, possibly reused, number); it is taken
// after a session's mu, never before it.
type parker struct {
	epfd int // epoll instance; closed by run on its way out
	wake int // eventfd registered with token 0; stop writes it
	log  *slog.Logger

	mu     sync.Mutex
	next   uint64              // last token handed out; 0 is the wake fd
	parked map[uint64]*session // token -> parked session
	closed bool                // stop was called: park refuses
}

// parkEvents is what the poller waits for: data, or the peer gone.
const parkEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

// errParkerClosed is returned by add after stop.
var errParkerClosed = errors.New("session: parker closed")

func newParker(log *slog.Logger) (*parker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("session: parking idle sessions: epoll_create1: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("session: parking idle sessions: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(wake)
		unix.Close(epfd)
		return nil, fmt.Errorf("session: parking idle sessions: epoll_ctl: %w", err)
	}
	return &parker{epfd: epfd, wake: wake, log: log, parked: map[uint64]*session{}}, nil
}

// setToken and token carry a 64-bit token in the event's data (Fd and Pad
// are its two halves on every Linux architecture x/sys/unix supports).
func setToken(ev *unix.EpollEvent, t uint64) {
	ev.Fd = int32(uint32(t))
	ev.Pad = int32(uint32(t >> 32))
}

func token(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

// add watches rc's socket for s and returns the token naming this park.
// The caller holds s.mu; the poller's wake-up (unparkToken) takes s.mu, so
// it cannot act before the caller has recorded the park.
func (p *parker) add(s *session, rc syscall.RawConn) (uint64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, errParkerClosed
	}
	p.next++
	t := p.next
	var cerr error
	err := rc.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: parkEvents}
		setToken(&ev, t)
		cerr = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	p.parked[t] = s
	return t, nil
}

// remove stops watching the socket of the park t. It runs before the
// connection is closed (abort calls it under s.mu first), so the descriptor
// number cannot have been reused by another connection; Control holds the
// descriptor open while epoll_ctl runs. A connection closed already has left
// the epoll set with its descriptor, and after run has closed the epoll
// instance there is nothing to remove.
func (p *parker) remove(t uint64, rc syscall.RawConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.parked, t)
	if p.epfd < 0 {
		return
	}
	rc.Control(func(fd uintptr) {
		unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
	})
}

// run waits for parked sockets to become readable and wakes their sessions
// until stop. It closes the epoll and wake descriptors when it returns.
func (p *parker) run() {
	defer p.closeFDs()
	events := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			p.log.Error("session: parking idle sessions: epoll_wait failed; parked sessions are woken", "err", err)
			p.shut()
			return
		}
		for i := range events[:n] {
			t := token(&events[i])
			if t == 0 {
				p.shut()
				return
			}
			p.mu.Lock()
			s := p.parked[t]
			p.mu.Unlock()
			if s != nil {
				s.unparkToken(t)
			}
		}
	}
}

// shut refuses further parks and wakes every parked session, whose readers
// then read as usual (or end).
func (p *parker) shut() {
	p.mu.Lock()
	p.closed = true
	ss := make(map[uint64]*session, len(p.parked))
	for t, s := range p.parked {
		ss[t] = s
	}
	p.mu.Unlock()
	for t, s := range ss {
		s.unparkToken(t)
	}
}

// closeFDs closes the epoll instance and the wake fd, under mu so that no
// add, remove or stop uses their numbers afterwards (they may be reused).
func (p *parker) closeFDs() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	unix.Close(p.epfd)
	unix.Close(p.wake)
	p.epfd, p.wake = -1, -1
}

// stop tells run to return; it does not wait (the server's wg does).
func (p *parker) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.wake >= 0 {
		one := [8]byte{1} // any non-zero count
		unix.Write(p.wake, one[:])
	}
}

// len is the number of parked sessions.
func (p *parker) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.parked)
}
