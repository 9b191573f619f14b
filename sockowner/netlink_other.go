//go:build !linux

package sockowner

import "fmt"

// diagSock stands for the netlink socket only Linux has: elsewhere every
// question is [ErrUnsupported] and every local sender is unidentified.
type diagSock struct{}

func (s *diagSock) close() error { return nil }

func (s *diagSock) query(r diagReq, dump bool, msgs []diagMsg) ([]diagMsg, error) {
	return msgs, fmt.Errorf("sockowner: sock_diag: %w", ErrUnsupported)
}
