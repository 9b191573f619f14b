package node

import (
	"errors"
	"io"
	"net"
	"runtime"
	"syscall"

	"github.com/msprelay/msprelay/broker"
)

// LockFile is the file inside the data directory that a node holds an
// exclusive lock on for as long as it runs (broker.LockDir), naming its
// pid; it is taken before the embedded store is opened.
const LockFile = broker.LockFile

// ErrDataDirInUse marks a data directory another running node holds.
var ErrDataDirInUse = broker.ErrDirInUse

// nameClaim is this node's claim on its name among the nodes of this host:
// an abstract Unix socket named after it (Linux; elsewhere nothing), held
// for the node's life and dropped by the kernel when the process ends.
// Two nodes on one host both default to the host name (issue 20); when
// they ever meet in a cluster one is refused, so the second hears of it
// at start. A claim is only a warning: any local user can bind the name.
type nameClaim struct{ c io.Closer }

// claimName claims name on this host; taken reports that another process
// holds it already.
func claimName(name string) (claim *nameClaim, taken bool) {
	if runtime.GOOS != "linux" {
		return nil, false
	}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: "@msprelay-node/" + name, Net: "unixgram"})
	if err != nil {
		return nil, errors.Is(err, syscall.EADDRINUSE)
	}
	return &nameClaim{c: c}, false
}

// release drops the claim.
func (c *nameClaim) release() {
	if c != nil && c.c != nil {
		_ = c.c.Close()
		c.c = nil
	}
}
