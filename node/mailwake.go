package node

import (
	"context"
	"time"

	"github.com/msprelay/msprelay/presence"
)

// memberWatchEvery is how often the node compares the gossip members with
// the last ones it saw. Members is a copy of a table of one entry per node
// under the directory's lock: cheap at any cluster size.
const memberWatchEvery = time.Second

// watchMembers calls sweep (mailbox.Sweep, coalesced and rate-limited by
// the mailbox) whenever a gossip member appears that was not there at the
// last look: a node that came back after it was declared dead, most often
// because the link to its site was cut. Mail may have been queued for this
// node's signed-in users meanwhile, on the far side of the cut, and its
// notice (core NATS) never reached this node; the sweep finds it. The node
// owns the goroutine that runs it; it returns when ctx ends.
func watchMembers(ctx context.Context, dir *presence.Directory, sweep func(why string), every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	w := memberWatch{dir: dir}
	w.look() // the members at start are no news
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if back := w.look(); back != "" {
			sweep("gossip member appeared: " + back)
		}
	}
}

// memberWatch remembers the gossip members of the last look. It belongs
// to one goroutine.
type memberWatch struct {
	dir  *presence.Directory
	seen map[string]struct{} // nil before the first look
}

// look returns the name of a member (not this node) that is listed now
// and was not at the last look, or "". The first look only records.
func (w *memberWatch) look() string {
	now := make(map[string]struct{}, len(w.seen))
	back := ""
	for _, m := range w.dir.Members() {
		now[m.Name] = struct{}{}
		if _, ok := w.seen[m.Name]; !ok && w.seen != nil && m.Name != w.dir.Name() {
			back = m.Name
		}
	}
	w.seen = now
	return back
}
