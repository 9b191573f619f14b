package session

import (
	"context"
	"strconv"
)

// Ring invites user into conversation name (CAL) like Invite, and returns
// how many of her terminals were rung; 0 when the server is older and
// does not say.
func (c *Client) Ring(ctx context.Context, name, user string) (int, error) {
	f, _, err := c.expect(ctx, "CAL", nil, encodeToken(name), encodeToken(user))
	if err != nil {
		return 0, err
	}
	if len(f.args) >= 4 {
		n, _ := strconv.Atoi(f.args[3])
		return n, nil
	}
	return 0, nil
}
