//go:build !linux

package session

import (
	"errors"
	"log/slog"
	"syscall"
)

// parker is Linux-only (epoll); elsewhere every session keeps its reader
// goroutine while idle.
type parker struct{}

func newParker(*slog.Logger) (*parker, error) {
	return nil, errors.New("session: parking idle sessions needs Linux")
}

func (*parker) add(*session, syscall.RawConn) (uint64, error) {
	return 0, errors.New("session: parking idle sessions needs Linux")
}
func (*parker) remove(uint64, syscall.RawConn) {}
func (*parker) run()                           {}
func (*parker) stop()                          {}
func (*parker) len() int                       { return 0 }
