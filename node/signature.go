package node

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/secrets"
)

// maxSignatureSkew is how far ahead of this node's clock an hm2 signature's
// time may be (clock skew between sender and node); see signatureBounds.
const maxSignatureSkew = 30 * time.Second

// signatureBounds returns how old and how far ahead an hm2 signature may be
// for a node whose duplicate window is window (<= 0: off, and the default
// is used for the bound). The age bound is window minus the skew allowance,
// so that a signature accepted once is refused by the time the duplicate
// memory of its first delivery runs out (docs/MSP.md, "Signature").
func signatureBounds(window time.Duration) (maxAge, skew time.Duration) {
	if window <= 0 {
		window = msp.DefaultDedupWindow
	}
	skew = min(maxSignatureSkew, window/2)
	return window - skew, skew
}

// signatures checks the SIGNATURE part of MSP messages (msp.VerifyAt)
// against the senders' secrets in the node's secrets store, the same store
// session sign-ins use, so that a reload changes both. It is set up by
// Start before MSP listens and read-only afterwards; the store swaps its
// content atomically.
type signatures struct {
	store        *secrets.Store // nil: no secrets file configured
	maxAge, skew time.Duration  // hm2 time bounds, from signatureBounds
	now          func() time.Time
	log          *slog.Logger
}

// check reports whether m carries a signature that proves its SENDER:
// false when m is unsigned, no secrets file is configured, the sender has
// no secret, or the signature does not match. Only then may a message from
// the network be shown as verified. A genuine hm2 signature whose time is
// out of bounds is an error (msp.ErrSignatureTooOld or ErrSignatureTooNew):
// the caller refuses the message.
func (s *signatures) check(m *msp.Message) (bool, error) {
	if m.Signature == "" || s.store == nil || m.Sender == "" {
		return false, nil
	}
	secret, ok := s.store.Secret(m.Sender)
	if !ok {
		return false, nil
	}
	switch err := msp.VerifyAt(m, []byte(secret), s.now(), s.maxAge, s.skew); {
	case err == nil:
		return true, nil
	case isSignatureTimeErr(err):
		// Debug, like other per-message detail: a flood of replayed
		// captures must not become a flood of log lines.
		s.log.Debug("msp: signed message refused", "sender", m.Sender, "err", err)
		return false, err
	default:
		s.log.Debug("msp: signature not verified", "sender", m.Sender, "err", err)
		return false, nil
	}
}

// isSignatureTimeErr reports whether err refuses a genuine signature for
// its time.
func isSignatureTimeErr(err error) bool {
	return errors.Is(err, msp.ErrSignatureTooOld) || errors.Is(err, msp.ErrSignatureTooNew)
}

// signatureRefusal is the MSP reply text for a signature refused for its
// time: "signature too old" or "signature time is in the future".
func signatureRefusal(err error) string {
	if errors.Is(err, msp.ErrSignatureTooOld) {
		return "signature too old"
	}
	return "signature time is in the future"
}

// idOrigin is the origin part of a message's id (switchboard.FullMessageKey).
// A message whose signature verified is the sender's own words wherever
// they come from, so its id leaves the source out: a capture re-sent from
// another address within the duplicate window is then a repeat (issue 18,
// "Signed messages replay"). Any other message keeps its source (idAddr).
func idOrigin(verified bool, network, src string) string {
	if verified {
		return "signed"
	}
	return idAddr(network, src)
}

// reloadSecrets re-reads the secrets store (session sign-ins and MSP
// signatures) for Reload, adding its failure to errs or its success to
// reloaded. A failed reload keeps the secrets in use.
func (n *Node) reloadSecrets(errs []error, reloaded []string) ([]error, []string) {
	st := n.sigs.store
	if st == nil {
		return errs, reloaded
	}
	if err := st.Reload(); err != nil {
		return append(errs, fmt.Errorf("secrets (sessions and MSP signatures; the old ones stay): %w", err)), reloaded
	}
	return errs, append(reloaded, fmt.Sprintf("session secrets %s (%d users; sign-ins and MSP signatures)", st.Path(), st.Len()))
}

// openSecrets opens the secrets file, if one is configured, into the store
// that session sign-ins and signature checks share.
func (n *Node) openSecrets() error {
	maxAge, skew := signatureBounds(n.cfg.DedupWindow)
	n.sigs = signatures{maxAge: maxAge, skew: skew, now: time.Now, log: n.log.With("component", "msp")}
	if n.cfg.SessionSecrets == "" {
		return nil
	}
	st, err := secrets.Open(n.cfg.SessionSecrets)
	if err != nil {
		return &FieldError{Field: "SessionSecrets", Err: err}
	}
	n.sigs.store = st
	return nil
}
