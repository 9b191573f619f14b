package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/msprelay/msprelay/conversation"
	"github.com/msprelay/msprelay/switchboard"
)

// conversationStartTimeout bounds creating the bucket and stream and loading
// the rosters.
const conversationStartTimeout = 15 * time.Second

// startConversations starts the node's conversation manager. Without
// JetStream (a relay that has none) the node runs without conversations and
// says so, as the rest of the node still works.
func (n *Node) startConversations(ctx context.Context) error {
	if n.cfg.ConversationHistory < 0 || n.cfg.ConversationIdle < 0 || n.cfg.ConversationsPerUser < 0 || n.cfg.ConversationSlotsPerUser < 0 {
		return fmt.Errorf("%w: --conversation-history, --conversation-idle, --conversations-per-user and --conversation-slots-per-user must not be negative", ErrConfig)
	}
	m, err := conversation.New(conversation.Config{
		Node:            n.cfg.Name,
		NATS:            n.nc,
		Logger:          n.log.With("component", "conversation"),
		History:         n.cfg.ConversationHistory,
		Idle:            n.cfg.ConversationIdle,
		MaxOpenPerUser:  n.cfg.ConversationsPerUser,
		MaxSlotsPerUser: n.cfg.ConversationSlotsPerUser,
		OpenBridge:      n.cfg.RoomOpenBridge,
		// One replication factor for all of the node's JetStream state:
		// with relays in three sites (relay --site) rooms survive the
		// loss of one site as the mailbox does.
		Replicas:  n.cfg.MailboxReplicas,
		LiveNodes: n.liveNodes,
		Locate:    n.locate,
	})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, conversationStartTimeout)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		n.log.Warn("conversations disabled: JetStream unavailable", "err", err)
		m.Close()
		return nil
	}
	n.conv = m
	return nil
}

// closeConversations stops the manager; sessions have left already.
func (n *Node) closeConversations() {
	if n.conv != nil {
		n.conv.Close()
	}
}

// liveNodes names the nodes gossip lists as alive; without gossip, just
// this node.
func (n *Node) liveNodes() []string {
	ms := n.dir.Members()
	if ms == nil {
		return []string{n.cfg.Name}
	}
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Name
	}
	return out
}

// locate names the nodes where user is signed in.
func (n *Node) locate(user string) []string {
	var out []string
	for _, e := range n.dir.Lookup(user) {
		if !slices.Contains(out, e.Node) {
			out = append(out, e.Node)
		}
	}
	return out
}

// rooms is the node's switchboard.Rooms: an MSP message (or a session
// SND) whose RECIPIENT is "#name" goes to every member of conversation
// name, if its sender may post there (conversation.Manager.Post: verified
// members, or anyone where --room-open-bridge opened the room). The
// switchboard sends the reply; over UDP the MSP rules hold (no "-").
type rooms struct{ n *Node }

// Post implements switchboard.Rooms.
func (r rooms) Post(ctx context.Context, d *switchboard.Delivery) switchboard.RoomResult {
	n := r.n
	name := strings.TrimPrefix(d.Recipient, "#")
	res := switchboard.RoomResult{Name: conversation.CanonicalName(name)}
	if n.conv == nil {
		res.Err = switchboard.ErrRoomDown
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.DeliverTimeout)
	defer cancel()
	// d.ID is the message's key (sender, terminal, cookie, source,
	// recipient, text): a retransmission keeps it, so JetStream drops it.
	from := conversation.Member{User: d.Sender, Node: n.cfg.Name, Term: d.SenderTerm}
	count, err := n.conv.Post(ctx, name, from, d.Origin.Sender, d.ID, d.Text)
	switch {
	case errors.Is(err, conversation.ErrNoConversation), errors.Is(err, conversation.ErrBadName):
		res.Err = switchboard.ErrNoRoom
	case errors.Is(err, conversation.ErrMembersOnly):
		res.Err = switchboard.ErrMembersOnly
	case err != nil:
		n.log.Warn("conversation message not stored", "conversation", name, "err", err)
		res.Err = switchboard.ErrRoomDown
	case count == 0:
		res.Err = switchboard.ErrRoomEmpty
	default:
		res.Members, res.Reached = count, n.reachable(ctx, name, count)
	}
	return res
}

// reachable counts the members of name on nodes gossip lists as alive: the
// message is stored for all, and those are the ones it reaches now.
func (n *Node) reachable(ctx context.Context, name string, count int) int {
	members, err := n.conv.Roster(ctx, name)
	if err != nil {
		return count
	}
	live := n.liveNodes()
	k := 0
	for _, mb := range members {
		if slices.Contains(live, mb.Node) {
			k++
		}
	}
	return k
}
