//go:build !linux

package msp

import "net"

// newMmsgConn has no recvmmsg to use here: a *net.UDPConn is served one
// datagram at a time, with ReadMsgUDPAddrPort and WriteToUDPAddrPort.
func newMmsgConn(uc *net.UDPConn, size int) batchConn { return nil }
