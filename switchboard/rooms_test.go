package switchboard_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/msprelay/msprelay/identity"
	"github.com/msprelay/msprelay/presence"
	"github.com/msprelay/msprelay/principal"
	"github.com/msprelay/msprelay/switchboard"
)

// roomDesk is a switchboard.Rooms that records what it is handed and
// answers as told. It stands in for the node's conversation bridge at
// the interface boundary; node and conversation tests cover the real one.
type roomDesk struct {
	answer switchboard.RoomResult
	mu     sync.Mutex
	got    []switchboard.Delivery
}

func (r *roomDesk) Post(_ context.Context, d *switchboard.Delivery) switchboard.RoomResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, *d)
	return r.answer
}

// Rule (issue 19): "#room addresses routed by the switchboard": a
// RECIPIENT starting with '#' goes to Config.Rooms with the delivery as
// the ingress made it (its sender identity included), and the reply is
// worded from the room's answer; any other recipient never reaches it.
func TestSendRoutesRoomAddressesToRooms(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		answer    switchboard.RoomResult
		delivered bool
		summary   string
	}{
		{"taken", switchboard.RoomResult{Name: "ops", Members: 3, Reached: 2}, true, "delivered to #ops (2 of 3 members)"},
		{"members only", switchboard.RoomResult{Name: "ops", Err: switchboard.ErrMembersOnly}, false, "#ops: members only"},
		{"no such room", switchboard.RoomResult{Err: switchboard.ErrNoRoom}, false, "#OPS: no such conversation"},
		{"store down", switchboard.RoomResult{Name: "ops", Err: switchboard.ErrRoomDown}, false, "#ops: not delivered: conversation store unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir, err := presence.New(presence.Config{Name: "n1"})
			if err != nil {
				t.Fatal(err)
			}
			desk := &roomDesk{answer: tt.answer}
			sb, err := switchboard.New(switchboard.Config{Directory: dir, Rooms: desk})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { sb.Close() })
			alice := &inbox{name: "alice"}
			if _, err := sb.SignIn("alice", "pts/1", principal.Online, alice); err != nil {
				t.Fatal(err)
			}
			who := identity.Identity{Claimed: "alice", Node: "n1", Source: "192.0.2.7:4000"}
			d := &switchboard.Delivery{ID: "m1", Recipient: "#OPS", Sender: "alice", SenderTerm: "pts/7", Text: "x",
				Origin: switchboard.Origin{Node: "n1", Addr: "192.0.2.7:4000", Transport: "tcp", Sender: who}, Time: time.Now()}
			o := sb.Send(context.Background(), d)
			if o.Delivered() != tt.delivered || o.Summary() != tt.summary {
				t.Fatalf("Send to #OPS: delivered %v %q, want %v %q", o.Delivered(), o.Summary(), tt.delivered, tt.summary)
			}
			if len(desk.got) != 1 || desk.got[0].Recipient != "#OPS" || desk.got[0].Origin.Sender != who || desk.got[0].ID == "" {
				t.Fatalf("rooms got %+v", desk.got)
			}
			o = sb.Send(context.Background(), &switchboard.Delivery{ID: "m2", Recipient: "alice", Text: "direct", Time: time.Now()})
			if !o.Delivered() || len(desk.got) != 1 || len(alice.texts()) != 1 {
				t.Fatalf("a user address: %q, rooms got %d, alice %v", o.Summary(), len(desk.got), alice.texts())
			}
		})
	}
}
