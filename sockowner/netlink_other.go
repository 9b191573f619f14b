//go:build !linux

package sockowner

import "fmt"

// diagClient stands for the netlink client only Linux has: elsewhere every
// question is [ErrUnsupported] and every local sender is unidentified.
type diagClient struct{}

func (d *diagClient) close() error { return nil }

func (d *diagClient) query(r diagReq, dump bool) ([]diagMsg, error) {
	return nil, fmt.Errorf("sockowner: sock_diag: %w", ErrUnsupported)
}
