package sessionclient

import (
	"context"
	"fmt"
	"strconv"

	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/sessionproto"
)

// Ring invites user into conversation name (CAL) like Invite, and returns
// how many of her terminals were rung; 0 when the server is older and
// does not say.
func (c *Client) Ring(ctx context.Context, name, user string) (int, error) {
	f, _, err := c.expect(ctx, "CAL", nil, sessionproto.EncodeToken(name), sessionproto.EncodeToken(user))
	if err != nil {
		return 0, err
	}
	if len(f.Args) >= 4 {
		n, _ := strconv.Atoi(f.Args[3])
		return n, nil
	}
	return 0, nil
}

// Wall broadcasts text to every terminal of the cluster, or of node when
// it is not "", (WAL) and returns how many terminals on how many nodes took
// it.
func (c *Client) Wall(ctx context.Context, node, text string) (terminals, nodes int, err error) {
	var args []string
	if node != "" {
		args = []string{node}
	}
	f, _, err := c.call(ctx, "WAL", []byte(text), args...)
	if err != nil {
		return 0, 0, err
	}
	if f.Cmd != "WAL" || len(f.Args) != 2 {
		return 0, 0, fmt.Errorf("%w: unexpected WAL reply %s %v", sessionproto.ErrBadPayload, f.Cmd, f.Args)
	}
	terminals, _ = strconv.Atoi(f.Args[0])
	nodes, _ = strconv.Atoi(f.Args[1])
	return terminals, nodes, nil
}

// SetUserState sets the state of every session of the signed-in user on
// this node (STA) and returns how many took it.
func (c *Client) SetUserState(ctx context.Context, st principal.State) (int, error) {
	f, _, err := c.expect(ctx, "STA", nil, st.Code())
	if err != nil {
		return 0, err
	}
	if len(f.Args) != 2 {
		return 0, fmt.Errorf("%w: STA reply with %d arguments", sessionproto.ErrBadPayload, len(f.Args))
	}
	n, _ := strconv.Atoi(f.Args[1])
	return n, nil
}

// BlockList returns the user's lasting block list (BLK LST).
func (c *Client) BlockList(ctx context.Context) ([]string, error) {
	f, _, err := c.expect(ctx, "BLK", nil, "LST")
	if err != nil {
		return nil, err
	}
	return lstNames("BLK", f.Args)
}

// BlockUser adds (block true) or removes name from the user's lasting block
// list (BLK).
func (c *Client) BlockUser(ctx context.Context, name string, block bool) error {
	op := "DEL"
	if block {
		op = "ADD"
	}
	_, _, err := c.expect(ctx, "BLK", nil, op, sessionproto.EncodeToken(name))
	return err
}

// Alias adds (add true) or removes an alias on every session terminal of
// the signed-in user on this node (ALS) and returns how many changed.
func (c *Client) Alias(ctx context.Context, name string, add bool) (int, error) {
	op := "DEL"
	if add {
		op = "ADD"
	}
	f, _, err := c.expect(ctx, "ALS", nil, op, sessionproto.EncodeToken(name))
	if err != nil {
		return 0, err
	}
	if len(f.Args) != 3 {
		return 0, fmt.Errorf("%w: ALS reply with %d arguments", sessionproto.ErrBadPayload, len(f.Args))
	}
	n, _ := strconv.Atoi(f.Args[2])
	return n, nil
}

// Aliases lists the aliases the signed-in user's session terminals on this
// node hold (ALS LST).
func (c *Client) Aliases(ctx context.Context) ([]string, error) {
	f, _, err := c.expect(ctx, "ALS", nil, "LST")
	if err != nil {
		return nil, err
	}
	return lstNames("ALS", f.Args)
}

// lstNames decodes the names of a "CMD TrID LST name..." reply.
func lstNames(cmd string, args []string) ([]string, error) {
	if len(args) < 1 || args[0] != "LST" {
		return nil, fmt.Errorf("%w: %s LST reply %v", sessionproto.ErrBadPayload, cmd, args)
	}
	out := make([]string, 0, len(args)-1)
	for _, a := range args[1:] {
		n, err := sessionproto.DecodeToken(a)
		if err != nil {
			return nil, fmt.Errorf("%w: %s LST: %v", sessionproto.ErrBadPayload, cmd, err)
		}
		out = append(out, n)
	}
	return out, nil
}
