// Package identity is the sender identity a message carries from the place
// it entered the cluster to every place that shows it: who sent it (a user
// name, or nobody), how that was established, which node vouches for it and
// where the message came from.
//
// An Identity is made once, at ingress, by the node that accepted the
// message, and never re-derived from the message's own SENDER part: the
// SENDER is a claim (Claimed), the identity is what the node proved (User,
// Method). It travels unchanged in the federation frame, the mailbox entry
// and the room history; a receiving node believes it only when the node
// that vouches for it (Node) is the node bound to the subject or credential
// it arrived on.
//
// This package is a leaf: value types only, no I/O, importable by clients.
package identity

import "strings"

// Method says how a sender's identity was established.
type Method uint8

// The ways a node learns who sent a message. The zero value, None, is the
// honest default for anything that arrives without proof.
const (
	// None: nothing was proved; the SENDER part is only a claim.
	None Method = iota
	// PeerCred: a local session, identified by the Unix socket's peer
	// credentials (SO_PEERCRED).
	PeerCred
	// Kernel: MSP from an address of this host, whose sending socket's
	// owner the kernel named (NETLINK_SOCK_DIAG, as identd does).
	Kernel
	// Signature: an MSP SIGNATURE checked against the sender's secret.
	Signature
	// Secret: a network session that proved a per-user secret
	// (challenge-response).
	Secret
	// Trust: a session on a network the operator declared trusted; the name
	// was believed, not proved, so it does not count as verified.
	Trust
)

var methodNames = [...]string{None: "none", PeerCred: "peercred", Kernel: "kernel", Signature: "signature", Secret: "secret", Trust: "trust"}

// String is the method's name as the wire formats, logs and docs spell it.
func (m Method) String() string {
	if int(m) < len(methodNames) {
		return methodNames[m]
	}
	return "unknown"
}

// ParseMethod is the inverse of String; an unknown name is None and false.
func ParseMethod(s string) (Method, bool) {
	for i, n := range methodNames {
		if n == s {
			return Method(i), true
		}
	}
	return None, false
}

// Proves reports whether the method establishes a user name (every method
// except None and Trust).
func (m Method) Proves() bool {
	switch m {
	case PeerCred, Kernel, Signature, Secret:
		return true
	}
	return false
}

// Identity is who sent a message, as established at ingress.
type Identity struct {
	// User is the proved user name ("" when Method proves nothing). For
	// Kernel it is the local account that owns the sending socket, which
	// may differ from Claimed.
	User string
	// Claimed is the SENDER part as the message carried it; shown as a
	// claim whenever it is not User.
	Claimed string
	// Method is how User was established.
	Method Method
	// Node is the node that established the identity and vouches for it.
	Node string
	// Source is where the message entered: "192.0.2.1:1234" for MSP,
	// "session" for a session's send.
	Source string
}

// Verified reports whether the name a reader is shown (Claimed, or User
// when nothing was claimed) is the proved one: the method proves a user
// and the claim, if any, is that user (case-insensitively, as MSP compares
// names).
func (id Identity) Verified() bool {
	if !id.Method.Proves() || id.User == "" {
		return false
	}
	return id.Claimed == "" || strings.EqualFold(id.Claimed, id.User)
}

// Name is the sender's name to show: the proved user when the claim is
// empty, otherwise the claim (which Verified says whether to believe).
func (id Identity) Name() string {
	if id.Claimed == "" {
		return id.User
	}
	return id.Claimed
}

// Impersonation reports whether a proved local user claimed someone else's
// name: the message is shown as the claim plus who really sent it.
func (id Identity) Impersonation() bool {
	return id.Method.Proves() && id.User != "" && id.Claimed != "" && !strings.EqualFold(id.Claimed, id.User)
}
