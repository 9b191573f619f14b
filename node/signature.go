package node

import (
	"log/slog"
	"sync"

	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/session"
)

// signatures verifies the SIGNATURE part of MSP messages (msp.Verify) with
// the senders' secrets from the session secrets file. Its zero value is
// ready; the file is read on first use. once guards secrets.
type signatures struct {
	once    sync.Once
	secrets *session.Secrets // nil: no file, or it could not be read
}

// verified reports whether m carries a signature that proves its SENDER:
// false when m is unsigned, no secrets file is configured, the sender has
// no secret, or the signature does not match. Only then may a message from
// the network be shown as verified.
func (s *signatures) verified(path string, m *msp.Message, log *slog.Logger) bool {
	if m.Signature == "" || path == "" || m.Sender == "" {
		return false
	}
	s.once.Do(func() {
		sec, err := session.LoadSecrets(path)
		if err != nil {
			log.Error("msp: cannot verify signatures", "err", err)
			return
		}
		s.secrets = sec
	})
	if s.secrets == nil {
		return false
	}
	secret, ok := s.secrets.Secret(m.Sender)
	if !ok {
		return false
	}
	err := msp.Verify(m, []byte(secret))
	if err != nil {
		log.Debug("msp: signature not verified", "sender", m.Sender, "err", err)
	}
	return err == nil
}
