package sessionclient

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/msprelay/msprelay/sessionproto"
)

// ConvBuffer is the size of the channel conversation events arrive on.
const ConvBuffer = 256

// Ack modes of SendConv, as in MSN's MSG.
const (
	AckNone     = "U" // no reply
	AckNegative = "N" // NAK on failure only
	AckAlways   = "A" // ACK or NAK
)

// ConvMember is a conversation member listed on joining (IRO).
type ConvMember struct {
	User, Node, Term string
}

// convClient is the Client's conversation state. ch is owned by the read
// loop, which closes it; on says whether anyone reads it (until then events
// that do not fit are dropped rather than stalling the read loop); iro
// collects roster lines per TrID, guarded by Client.mu.
type convClient struct {
	ch     chan sessionproto.ConvEvent
	on     atomic.Bool
	iro    map[uint32][]ConvMember
	silent map[uint32]bool // TrIDs of replyless MSG U commands, whose errors are not fatal
}

// maxSilent bounds convClient.silent: errors for typing notices older than
// the last maxSilent are then treated like any unexpected error.
const maxSilent = 256

func newConvClient() convClient {
	return convClient{ch: make(chan sessionproto.ConvEvent, ConvBuffer), iro: map[uint32][]ConvMember{}, silent: map[uint32]bool{}}
}

// Conversations returns the channel of conversation events (including
// invitations); it is closed when the connection ends. Once called, the read
// loop waits for room in it, so the caller must keep draining it.
func (c *Client) Conversations() <-chan sessionproto.ConvEvent {
	c.conv.on.Store(true)
	return c.conv.ch
}

// Join creates conversation name, or joins it if it exists (XFR SB); an
// empty name creates an unnamed one. It returns the name and the other
// members; the stored history arrives on Conversations first, marked
// History.
func (c *Client) Join(ctx context.Context, name string) (string, []ConvMember, error) {
	args := []string{"SB"}
	if name != "" {
		args = append(args, sessionproto.EncodeToken(name))
	}
	return c.joinCall(ctx, "XFR", args, 1)
}

// JoinPrivate is Join that creates name invite-only (XFR SB name
// PRIVATE) when it does not exist: the caller owns it, only she invites
// (Invite), and only those invited join. One that exists is joined by its
// own rules.
func (c *Client) JoinPrivate(ctx context.Context, name string) (string, []ConvMember, error) {
	return c.joinCall(ctx, "XFR", []string{"SB", sessionproto.EncodeToken(name), "PRIVATE"}, 1)
}

// Answer joins an existing conversation (ANS), after an invitation or by
// name.
func (c *Client) Answer(ctx context.Context, name string) (string, []ConvMember, error) {
	return c.joinCall(ctx, "ANS", []string{sessionproto.EncodeToken(name)}, 1)
}

func (c *Client) joinCall(ctx context.Context, cmd string, args []string, nameArg int) (string, []ConvMember, error) {
	f, _, err := c.expect(ctx, cmd, nil, args...)
	c.mu.Lock()
	roster := c.conv.iro[c.lastTrID(f)]
	delete(c.conv.iro, c.lastTrID(f))
	c.mu.Unlock()
	if err != nil {
		return "", nil, err
	}
	if len(f.Args) != 2 {
		return "", nil, fmt.Errorf("%w: %s reply %v", sessionproto.ErrBadPayload, cmd, f.Args)
	}
	return f.Args[nameArg], roster, nil
}

func (c *Client) lastTrID(f *sessionproto.Frame) uint32 {
	if f == nil {
		return 0
	}
	return f.TrID
}

// Invite rings user's sessions to join conversation name (CAL).
func (c *Client) Invite(ctx context.Context, name, user string) error {
	_, _, err := c.expect(ctx, "CAL", nil, sessionproto.EncodeToken(name), sessionproto.EncodeToken(user))
	return err
}

// SendConv sends text into conversation name with ack mode AckAlways and
// returns the message id once it is stored.
func (c *Client) SendConv(ctx context.Context, name, text string) (string, error) {
	f, _, err := c.call(ctx, "MSG", []byte(text), sessionproto.EncodeToken(name), AckAlways)
	if err != nil {
		return "", err
	}
	if f.Cmd != "ACK" {
		return "", fmt.Errorf("session: message to %s not sent: %s", name, f.Text)
	}
	return f.Text, nil
}

// Typing tells the other members that this user is typing (a control
// payload, ack mode U: no reply).
func (c *Client) Typing(ctx context.Context, name string) error {
	c.mu.Lock()
	c.next++
	trid := c.next
	if len(c.conv.silent) >= maxSilent {
		clear(c.conv.silent)
	}
	c.conv.silent[trid] = true
	c.mu.Unlock()
	return c.write(ctx, sessionproto.WithPayload("MSG", trid, true, []byte("Content-Type: "+sessionproto.ContentTyping+"\r\n\r\n"), sessionproto.EncodeToken(name), AckNone))
}

// Leave leaves conversation name (BYE).
func (c *Client) Leave(ctx context.Context, name string) error {
	_, _, err := c.expect(ctx, "BYE", nil, sessionproto.EncodeToken(name))
	return err
}

// handleConv routes the conversation frames: IRO roster lines, JOI, BYE,
// RNG and MSG pushes, and the BYE reply. It reports whether f was one.
func (c *Client) handleConv(f *sessionproto.Frame) (bool, error) {
	a := f.Args
	var ev sessionproto.ConvEvent
	if f.Code != 0 {
		// An error for a typing notice (not in the conversation any more,
		// say) answers nothing we wait for and does not end the session.
		c.mu.Lock()
		silent := c.conv.silent[f.TrID]
		delete(c.conv.silent, f.TrID)
		c.mu.Unlock()
		return silent, nil
	}
	switch {
	case f.Cmd == "IRO":
		if len(a) != 6 {
			return true, fmt.Errorf("%w: IRO with %d arguments", sessionproto.ErrBadPayload, len(a))
		}
		u, n, t, err := sessionproto.Decode3(a[3], a[4], a[5])
		if err != nil {
			return true, fmt.Errorf("%w: IRO: %v", sessionproto.ErrBadPayload, err)
		}
		c.mu.Lock()
		if c.pending[f.TrID] != nil && len(c.conv.iro[f.TrID]) < 1024 {
			c.conv.iro[f.TrID] = append(c.conv.iro[f.TrID], ConvMember{u, n, t})
		}
		c.mu.Unlock()
		return true, nil
	case f.Cmd == "BYE" && len(a) == 2:
		// The reply to our BYE: "BYE TrID name".
		trid, ok := sessionproto.ParseTrID(a[0])
		if !ok {
			return true, fmt.Errorf("%w: BYE reply %v", sessionproto.ErrBadPayload, a)
		}
		f.TrID, f.HasTrID, f.Args = trid, true, a[1:]
		return false, nil
	case f.Cmd == "JOI" || f.Cmd == "RNG" || f.Cmd == "BYE" || (f.Cmd == "MSG" && len(a) > 0):
		if len(a) < 4 {
			return true, fmt.Errorf("%w: %s with %d arguments", sessionproto.ErrBadPayload, f.Cmd, len(a))
		}
		u, n, t, err := sessionproto.Decode3(a[1], a[2], a[3])
		if err != nil {
			return true, fmt.Errorf("%w: %s: %v", sessionproto.ErrBadPayload, f.Cmd, err)
		}
		ev = sessionproto.ConvEvent{Conversation: a[0], User: u, Node: n, Term: t, Time: time.Now().UTC()}
		switch f.Cmd {
		case "JOI":
			ev.Type = "join"
		case "RNG":
			ev.Type = "invite"
		case "BYE":
			ev.Type, ev.Reason = "leave", strings.Join(a[4:], " ")
		case "MSG":
			if err := sessionproto.ParseConvMessage(f.Payload, &ev); err != nil {
				return true, err
			}
		}
	default:
		return false, nil
	}
	if c.conv.on.Load() {
		select {
		case c.conv.ch <- ev:
		case <-c.closing:
		}
	} else {
		select {
		case c.conv.ch <- ev:
		default:
		}
	}
	return true, nil
}
