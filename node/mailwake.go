package node

import (
	"context"
	"time"

	"github.com/msprelay/msprelay/mailbox"
	"github.com/msprelay/msprelay/presence"
)

// memberWatchEvery is how often the node compares the gossip members with
// the last ones it saw. Members is a copy of a table of one entry per node
// under the directory's lock: cheap at any cluster size.
const memberWatchEvery = time.Second

// watchMembers asks the mailbox for a sweep whenever a gossip member
// appears that was not there at the last look: a node that came back
// after it was declared dead, most often because the link to its site was
// cut. Mail may have been queued for this node's signed-in users
// meanwhile, on the far side of the cut, and its notice (core NATS) never
// reached this node; the sweep (mailbox.Sweep, coalesced and rate-limited
// by the mailbox) finds it. The first look only records the members.
// The node owns the goroutine that runs it; it returns when ctx ends.
func watchMembers(ctx context.Context, dir *presence.Directory, mb *mailbox.Mailbox, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	var seen map[string]struct{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := make(map[string]struct{}, len(seen))
		back := ""
		for _, m := range dir.Members() {
			now[m.Name] = struct{}{}
			if _, ok := seen[m.Name]; !ok && seen != nil && m.Name != dir.Name() {
				back = m.Name
			}
		}
		if back != "" {
			mb.Sweep("gossip member appeared: " + back)
		}
		seen = now
	}
}
