package switchboard

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Rooms takes the messages addressed to a room: a RECIPIENT "#name" is a
// conversation (package conversation, docs/SESSION.md §6), not a user, and
// Send hands such a delivery to Config.Rooms instead of the directory. The
// node implements it over its conversation manager; it decides who may
// post (verified members, or anyone where the operator opened the room's
// bridge) from d.Origin.Sender, never from d.Sender.
type Rooms interface {
	// Post delivers d to the members of the room d.Recipient names (with
	// its '#') and says what happened. It must return within ctx.
	Post(ctx context.Context, d *Delivery) RoomResult
}

// RoomResult is what a room did with a message.
type RoomResult struct {
	// Name is the room's canonical name, without '#'.
	Name string
	// Members is how many members the room has (the message is stored for
	// all of them); Reached how many of them are on live nodes.
	Members, Reached int
	// Err is why the room did not take the message (wraps ErrNoRoom,
	// ErrMembersOnly, ErrRoomEmpty or ErrRoomDown); nil when it did.
	Err error
}

// Room refusals and failures; Summary words the MSP reply from them.
var (
	ErrNoRoom      = errors.New("no such conversation")
	ErrMembersOnly = errors.New("members only")
	ErrRoomEmpty   = errors.New("no members")
	ErrRoomDown    = errors.New("not delivered: conversation store unavailable")
)

// IsRoom reports whether recipient addresses a room ("#name").
func IsRoom(recipient string) bool { return strings.HasPrefix(recipient, "#") }

// sendRoom is Send for a room address: it asks Config.Rooms. Room posts
// are not observed (the Observer's classes and paths are terminals').
func (s *Switchboard) sendRoom(ctx context.Context, d *Delivery) *Outcome {
	r := s.cfg.Rooms.Post(ctx, d)
	if r.Name == "" {
		r.Name = strings.TrimPrefix(d.Recipient, "#")
	}
	return &Outcome{Recipient: d.Recipient, RecipTerm: d.RecipTerm, Room: &r}
}

// summary is the MSP reply explanation for a room post: "delivered to
// #ops (2 of 3 members)" or "#ops: members only".
func (r *RoomResult) summary() string {
	if r.Err != nil {
		return "#" + r.Name + ": " + r.Err.Error()
	}
	return fmt.Sprintf("delivered to #%s (%d of %d members)", r.Name, r.Reached, r.Members)
}
