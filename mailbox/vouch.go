package mailbox

import (
	"github.com/msprelay/msprelay/identity"
	"github.com/msprelay/msprelay/switchboard"
)

// vouch is the copy of d this node stores: the node vouches for the sender
// identity it stores (it stores only deliveries its switchboard accepted,
// with the identity as this node believes it), so the stored
// identity names this node, the one its subject names too (NodeSubject).
// An identity this node does not believe is stored as proving nothing.
func (m *Mailbox) vouch(d *switchboard.Delivery) *switchboard.Delivery {
	q := *d
	if !q.Origin.Sender.Method.Proves() {
		q.Origin.Sender.Method = identity.None
	}
	q.Origin.Sender.Node = m.cfg.Node
	return &q
}

// bindOrigin checks a drained message's sender identity against the
// subject it was stored on, as federation checks a delivery against its
// deliver subject (issue 18: "a receiving node believes verified only when
// the node that vouches for it is the node bound to the subject or
// credential it arrived on; a stored entry likewise"). The identity stays
// verified only when the node vouching for it (Sender.Node, or the origin
// node of entries that carry none) is the node the subject names, and that
// node is this one or NATS binds subjects to nodes (PeersAuthenticated).
// Anything else (another node's name, a subject of an earlier version that
// names no node) drains unverified: its sender is shown as a claim.
func (m *Mailbox) bindOrigin(d *switchboard.Delivery, subject string) {
	node := storingNode(subject)
	voucher := d.Origin.Sender.Node
	if voucher == "" {
		voucher = d.Origin.Node
	}
	if node != "" && voucher == node && (node == m.cfg.Node || m.cfg.PeersAuthenticated) {
		return
	}
	if d.Origin.Sender.Method != identity.None {
		m.log.Debug("queued message's sender shown unverified: not vouched for by the node that stored it",
			"subject", subject, "vouching_node", voucher, "id", d.ID)
	}
	d.Origin.Sender.Method = identity.None
}
