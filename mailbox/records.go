package mailbox

import (
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/switchboard"
	"github.com/nats-io/nats.go/jetstream"
)

// record queues a sign-in or sign-out record for the writer. Records are
// coalesced per user (the newest wins), so the backlog is bounded by the
// number of users this node has seen while the store was away.
func (m *Mailbox) record(s switchboard.Seen) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	m.pending[s.User] = s
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// maxRecordBatch bounds how many records one round of recordLoop writes.
const maxRecordBatch = 256

// maxRecordBackoff caps the pause between attempts while the store is away.
// Until her record is written, a user who signed in during an outage and
// has signed out again is unknown to the cluster (mail to her is refused,
// not lost), so the record should land soon after the store is back; one
// small write every few seconds per node costs little.
const maxRecordBackoff = 4 * time.Second

// recordLoop writes sign-in records to the known-users bucket. A record
// that cannot be written stays pending (unless a newer one replaced it) and
// is retried after a pause.
func (m *Mailbox) recordLoop() {
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	backoff := time.Duration(0) // zero while writes succeed
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-m.wake:
		case <-retry.C:
		}
		m.mu.Lock()
		batch := make([]switchboard.Seen, 0, min(len(m.pending), maxRecordBatch))
		for _, s := range m.pending {
			if len(batch) == maxRecordBatch {
				break
			}
			batch = append(batch, s)
		}
		m.mu.Unlock()
		failed := false
		for _, s := range batch {
			if err := m.writeRecord(s); err != nil {
				lvl := slog.LevelDebug
				if backoff == 0 {
					lvl = slog.LevelWarn // once per outage
				}
				m.log.Log(m.ctx, lvl, "known-users record not written; will retry", "user", s.User, "err", err)
				failed = true
				break
			}
			if backoff != 0 {
				m.log.Info("known-users records written again")
				backoff = 0
			}
			m.mu.Lock()
			if cur, ok := m.pending[s.User]; ok && cur == s {
				delete(m.pending, s.User)
			}
			m.mu.Unlock()
		}
		m.mu.Lock()
		more, closed := len(m.pending) > 0, m.closed
		if !more {
			// A map keeps the room its largest burst needed (a wave of
			// sign-ins): make it anew once it is empty.
			m.pending = map[string]switchboard.Seen{}
		}
		m.mu.Unlock()
		switch {
		case closed && (failed || !more):
			return // closing: what could be written is written
		case failed:
			backoff = min(max(2*backoff, time.Second), maxRecordBackoff)
			retry.Reset(backoff)
		case more:
			select {
			case m.wake <- struct{}{}:
			default:
			}
		}
	}
}

func (m *Mailbox) writeRecord(s switchboard.Seen) error {
	ctx, cancel := m.storeCtx()
	defer cancel()
	_, kv, err := m.handles(ctx)
	if err != nil {
		return err
	}
	if s.Hidden {
		// A hidden line makes her known (mail for her queues) but says
		// nothing of when: a record with no time, written only if she
		// has none, so a hidden sign-in or sign-out moves nothing that
		// "last seen" shows.
		b, err := json.Marshal(wireSeen{User: msp.Latin1ToUTF8(s.User), State: "offline"})
		if err != nil {
			return err
		}
		if _, err = kv.Create(ctx, UserToken(s.User), b); errors.Is(err, jetstream.ErrKeyExists) {
			return nil
		}
		return err
	}
	b, err := json.Marshal(wireSeen{User: msp.Latin1ToUTF8(s.User), Time: s.Time.UTC(), Node: s.Node,
		Term: msp.Latin1ToUTF8(s.Term), State: s.State})
	if err != nil {
		return err
	}
	_, err = kv.Put(ctx, UserToken(s.User), b)
	return err
}
