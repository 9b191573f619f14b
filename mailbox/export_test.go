package mailbox

// DeafenForTest unsubscribes m's wake-up subscription: from then on m
// hears no notice of stored messages, as a node cut off from the site that
// stores them does not.
func DeafenForTest(m *Mailbox) {
	m.mu.Lock()
	sub := m.wakeSub
	m.mu.Unlock()
	if sub != nil {
		_ = sub.Unsubscribe()
	}
}

// DrainerIdleForTest reports whether user is signed in on m and her
// drainer has gone to sleep (its goroutine ended): only a wake-up makes
// it look into her mailbox again.
func DrainerIdleForTest(m *Mailbox, user string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.drains[user]
	return d != nil && !d.running && !d.queued
}
