package sockowner

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// lookupTimeout bounds one question to the kernel, which answers in
// microseconds; it only guards the caller (the MSP accept loop or UDP read
// loop) against a wedged netlink socket.
const lookupTimeout = time.Second

// diagClient asks the kernel over one netlink socket, dialled on first use
// and again after any failure (a socket that timed out may still hold a
// late answer). mu guards c and closed and serializes the questions.
type diagClient struct {
	mu     sync.Mutex
	c      *netlink.Conn
	closed bool
}

// close closes the netlink socket; later questions fail.
func (d *diagClient) close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	if d.c == nil {
		return nil
	}
	err := d.c.Close()
	d.c = nil
	return err
}

// query sends one SOCK_DIAG_BY_FAMILY request and decodes the replies. An
// exact lookup that finds nothing is ErrNotFound.
func (d *diagClient) query(r diagReq, dump bool) ([]diagMsg, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, errClosed
	}
	if d.c == nil {
		c, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, nil)
		if err != nil {
			return nil, fmt.Errorf("sockowner: dial NETLINK_SOCK_DIAG: %w: %w", ErrUnsupported, err)
		}
		d.c = c
	}
	msgs, err := d.exchange(r, dump)
	if err != nil && !errors.Is(err, ErrNotFound) {
		d.c.Close()
		d.c = nil
	}
	return msgs, err
}

// exchange is one question and its answers on d.c; the caller holds d.mu.
func (d *diagClient) exchange(r diagReq, dump bool) ([]diagMsg, error) {
	c := d.c
	if err := c.SetDeadline(time.Now().Add(lookupTimeout)); err != nil {
		return nil, fmt.Errorf("sockowner: netlink deadline: %w", err)
	}
	flags := netlink.Request
	if dump {
		flags |= netlink.Dump
	}
	replies, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.SOCK_DIAG_BY_FAMILY, Flags: flags},
		Data:   r.marshal(),
	})
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("sockowner: sock_diag: %w", err)
	}
	msgs := make([]diagMsg, 0, len(replies))
	for _, rep := range replies {
		if rep.Header.Type != unix.SOCK_DIAG_BY_FAMILY {
			continue
		}
		m, err := parseDiagMsg(rep.Data)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}
