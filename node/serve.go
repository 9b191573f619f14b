package node

import (
	"context"
	"errors"
)

// Serve blocks after a successful Start until ctx ends or a component fails,
// then closes the node. It lets a caller act between Start and serving (a
// main telling systemd it is ready); Run is Start followed by Serve.
func (n *Node) Serve(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return n.Close()
	case err := <-n.fatal:
		return errors.Join(err, n.Close())
	}
}
