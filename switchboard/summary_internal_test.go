package switchboard

import (
	"fmt"
	"testing"
)

// docs/ARCHITECTURE.md: "A '+' means the message reached a delivery service (a live
// terminal session, a tty, or the durable mailbox); the explanation says
// which (+delivered ..., +queued ...)".
func TestSummaryNamesWhatHappened(t *testing.T) {
	t.Parallel()
	acked := Result{User: "alice", Node: "n2", Term: "pts/1", Status: Delivered, Acked: true}
	handed := Result{User: "alice", Node: "n2", Term: "pts/1", Status: Delivered}
	repeat := Result{User: "alice", Node: "n2", Term: "pts/1", Status: Delivered, Err: ErrDuplicate}
	requeued := Result{User: "alice", Node: "n2", Term: "pts/1", Status: Queued, Err: ErrNotAcked}
	down := Result{User: "alice", Node: "n3", Term: "pts/2", Status: Failed, Err: ErrNodeDown}
	busy := Result{User: "alice", Node: "n3", Term: "pts/2", Status: Refused, Err: ErrBusy}
	cases := []struct {
		name   string
		o      Outcome
		wantOK bool
		want   string
	}{
		{"acknowledged by the client", Outcome{Recipient: "alice", Results: []Result{acked}}, true, "delivered to alice at pts/1 on n2 (acknowledged)"},
		{"client that does not acknowledge", Outcome{Recipient: "alice", Results: []Result{handed}}, true, "delivered to alice at pts/1 on n2"},
		{"repeat answered from memory", Outcome{Recipient: "alice", Results: []Result{repeat}}, true, "delivered to alice at pts/1 on n2 (already delivered)"},
		{"not acknowledged, back in the mailbox", Outcome{Recipient: "alice", Results: []Result{requeued}}, true, "queued for alice (pts/1@n2 not acknowledged)"},
		{"fallback after a dead node, acknowledged", Outcome{Recipient: "alice", Results: []Result{acked, down}, fallback: true}, true,
			"delivered to alice at pts/1 on n2 (acknowledged; after pts/2@n3 node unreachable)"},
		{"offline: queued", Outcome{Recipient: "alice", Err: ErrNoSuchUser, Mailbox: &MailboxResult{User: "alice", Stored: true}}, true, "queued for alice"},
		{"every target failed: queued", Outcome{Recipient: "alice", Results: []Result{down}, Mailbox: &MailboxResult{User: "alice", Stored: true}}, true,
			"queued for alice (pts/2@n3 node unreachable)"},
		{"queued twice", Outcome{Recipient: "Alice", Err: ErrNoSuchUser, Mailbox: &MailboxResult{User: "alice", Stored: true, Duplicate: true}}, true, "queued for alice (already queued)"},
		{"store down", Outcome{Recipient: "alice", Err: ErrNoSuchUser, Mailbox: &MailboxResult{User: "alice", Err: fmt.Errorf("%w: timeout", ErrMailboxDown)}}, false,
			"alice: not signed in; mailbox unavailable: timeout"},
		{"node down and store down", Outcome{Recipient: "alice", Results: []Result{down}, Mailbox: &MailboxResult{User: "alice", Err: ErrMailboxFull}}, false,
			"alice at pts/2 on n3: node unreachable; mailbox full"},
		{"unknown user", Outcome{Recipient: "carol", Err: ErrUnknownUser}, false, "carol: unknown user"},
		{"refusal stays a refusal", Outcome{Recipient: "alice", Results: []Result{busy}}, false, "alice at pts/2 on n3: busy, not accepting messages"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.o.Delivered(); got != tc.wantOK {
				t.Errorf("Delivered() = %v, want %v", got, tc.wantOK)
			}
			if got := tc.o.Summary(); got != tc.want {
				t.Errorf("Summary() = %q, want %q", got, tc.want)
			}
		})
	}
}
