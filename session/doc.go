// Package session implements the msprelay session protocol: the long-lived,
// line-based connection over which clients such as `msp listen`, `msp who`
// and bots sign in to a node, receive messages and presence pushes, watch and
// block users, claim alias names and send messages. It is modelled on the MSN
// notification server protocol; docs/SESSION.md is the specification.
//
// This package is the server: [Server] (server.go, conn.go, watch.go) with
// [Authenticator] implementations for Unix peer credentials ([PeerCred]),
// per-user shared secrets ([SecretAuth], reading a [SecretSource] such as
// the node's secrets.Store) and trusted networks ([Trust]). The parts a
// client shares with it are leaf packages, so that a client links no
// server code (no NATS, memberlist or Prometheus):
//
//   - sessionproto, the wire grammar: frames are `CMD TrID args` lines
//     ending in CR LF, numeric error lines, and commands whose last
//     argument is the length of a payload that follows the line; the
//     error codes, and the MSG, WHO and list payloads;
//   - sessionsock, where the session socket lives, who may own its
//     directory and who may serve it;
//   - sessionclient, the Go client library used by the msp CLI and the
//     tests.
//
// Every signed-in session is a [switchboard.Line] and implements
// [switchboard.Terminal] and [switchboard.AckTerminal] (a client that
// negotiated MSPS2 acknowledges each message with ACK; see ack.go):
// deliveries are queued, never waited for by the session itself, and a
// session whose client stops reading is refused further messages
// ([switchboard.ErrTerminalSlow]) and, if even presence pushes cannot be
// queued, closed. A session that ends for any reason signs its line out, so
// a dropped connection ends its presence.
package session
