package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/msprelay/msprelay/conversation"
	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/switchboard"
)

// conversationStartTimeout bounds creating the bucket and stream and loading
// the rosters.
const conversationStartTimeout = 15 * time.Second

// startConversations starts the node's conversation manager. Without
// JetStream (a relay that has none) the node runs without conversations and
// says so, as the rest of the node still works.
func (n *Node) startConversations(ctx context.Context) error {
	if n.cfg.ConversationHistory < 0 || n.cfg.ConversationIdle < 0 {
		return fmt.Errorf("%w: --conversation-history and --conversation-idle must not be negative", ErrConfig)
	}
	m, err := conversation.New(conversation.Config{
		Node:      n.cfg.Name,
		NATS:      n.nc,
		Logger:    n.log.With("component", "conversation"),
		History:   n.cfg.ConversationHistory,
		Idle:      n.cfg.ConversationIdle,
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

// bridgeConversation delivers an MSP message whose RECIPIENT is "#name" to
// every member of conversation name. It reports false for any other
// recipient. Replies follow the MSP rules (the writer sends no "-" over
// UDP).
func (n *Node) bridgeConversation(w msp.ResponseWriter, m *msp.Message) bool {
	name, ok := strings.CutPrefix(m.Recipient, "#")
	if !ok || n.conv == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(w.Context(), n.cfg.DeliverTimeout)
	defer cancel()
	// As serveMSP, then the conversation and the text, so that one cookie
	// given to two messages does not make one a repeat.
	id := switchboard.MessageKey(switchboard.MessageID(m.Sender, m.SenderTerm, m.Cookie, idAddr(w.Network(), w.RemoteAddrString())), m.Recipient, "", m.Text)
	from := conversation.Member{User: m.Sender, Node: n.cfg.Name, Term: m.SenderTerm}
	count, err := n.conv.Post(ctx, name, from, id, m.Text)
	switch {
	case errors.Is(err, conversation.ErrNoConversation), errors.Is(err, conversation.ErrBadName):
		_ = w.Nack(fmt.Sprintf("#%s: no such conversation", name))
	case err != nil:
		n.log.Warn("conversation message not stored", "conversation", name, "err", err)
		_ = w.Nack(fmt.Sprintf("#%s: not delivered: conversation store unavailable", name))
	case count == 0:
		_ = w.Nack(fmt.Sprintf("#%s: no members", name))
	default:
		_ = w.Ack(fmt.Sprintf("delivered to #%s (%d of %d members)", conversation.CanonicalName(name), n.reachable(ctx, name, count), count))
	}
	return true
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
