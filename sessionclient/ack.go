package sessionclient

import (
	"context"

	"github.com/msprelay/msprelay/sessionproto"
)

// WithAcks makes SignIn offer ProtocolVersionAcks: the session then must
// acknowledge every message it receives with Ack (SignedIn.Acks says
// whether the server agreed). Messages not acknowledged within the node's
// bound go back to the mailbox and come again, with the same id.
func WithAcks() SignInOption {
	return func(o *signInOptions) { o.acks = true }
}

// Ack acknowledges message id (ACK) on a session signed in WithAcks. Call it
// once the message is safe — shown, written out — and for repeats too. It
// waits for no reply: the server sends none.
func (c *Client) Ack(ctx context.Context, id string) error {
	c.mu.Lock()
	if err := c.errLocked(); err != nil {
		c.mu.Unlock()
		return err
	}
	c.next++
	if c.next == 0 {
		c.next = 1
	}
	trid := c.next
	c.mu.Unlock()
	return c.write(ctx, sessionproto.Line("ACK", trid, true, sessionproto.EncodeToken(id)))
}
