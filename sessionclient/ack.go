package sessionclient

import (
	"context"

	"github.com/msprelay/msprelay/sessionproto"
)

// WithAcks makes SignIn offer ProtocolVersionBatch and ProtocolVersionAcks:
// the session then must acknowledge every message it receives with Ack or
// AckAll (SignedIn.Acks says whether the server agreed). Messages not
// acknowledged within the node's bound go back to the mailbox and come
// again, with the same id.
func WithAcks() SignInOption {
	return func(o *signInOptions) { o.acks = true }
}

// Ack acknowledges message id (ACK) on a session signed in WithAcks. Call it
// once the message is safe — shown, written out — and for repeats too. It
// waits for no reply: the server sends none.
func (c *Client) Ack(ctx context.Context, id string) error {
	return c.AckAll(ctx, []string{id})
}

// AckAll acknowledges the messages ids, in one write: in one ACK line per
// sessionproto.MaxAckIDs ids when the server speaks MSPS3
// (SignedIn.BatchAcks), one line per id otherwise. Like Ack, it waits for
// no reply. Nothing is sent for no ids.
func (c *Client) AckAll(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	c.mu.Lock()
	if err := c.errLocked(); err != nil {
		c.mu.Unlock()
		return err
	}
	next := func() uint32 {
		c.next++
		if c.next == 0 {
			c.next = 1
		}
		return c.next
	}
	b := sessionproto.AppendAcks(nil, ids, c.perAck, next)
	c.mu.Unlock()
	return c.write(ctx, b)
}
