package session

import (
	"github.com/msprelay/msprelay/sessionproto"
	"github.com/msprelay/msprelay/switchboard"
)

// messageFromDelivery turns a switchboard delivery into a pushed message.
func messageFromDelivery(d *switchboard.Delivery) sessionproto.Message {
	return sessionproto.Message{
		ID: d.ID, Sender: d.Sender, SenderTerm: d.SenderTerm,
		Recipient: d.Recipient, RecipTerm: d.RecipTerm,
		OriginNode: d.Origin.Node, OriginAddr: d.Origin.Addr, Transport: d.Origin.Transport,
		Verified: d.Origin.Sender.Verified(), SenderMethod: d.Origin.Sender.Method.String(),
		SenderUser: d.Origin.Sender.User, Time: d.Time, Cookie: d.Cookie, Signature: d.Signature,
		Text: d.Text, Queued: d.Queued,
	}
}
