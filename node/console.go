package node

import (
	"fmt"
	"os/user"
	"slices"
)

// consoleAllowed is the switchboard's rule for who may sign in at terminal
// "console" (switchboard.Config.ConsoleAllowed): root, and with a
// ConsoleGroup the members of that host group (primary or supplementary).
// The group is looked up when the node starts; membership at each sign-in,
// so that adding a user to the group needs no restart.
func consoleAllowed(group string) (func(string) bool, error) {
	if group == "" {
		return nil, nil // the switchboard's default: root only
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return nil, fmt.Errorf("console group %q: %w", group, err)
	}
	return func(name string) bool {
		if name == "root" {
			return true
		}
		u, err := user.Lookup(name)
		if err != nil {
			return false
		}
		if u.Gid == g.Gid {
			return true
		}
		ids, err := u.GroupIds()
		return err == nil && slices.Contains(ids, g.Gid)
	}, nil
}
