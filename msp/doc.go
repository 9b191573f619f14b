// Package msp implements the Message Send Protocol: revision 'A' (RFC 1159)
// and revision 'B' (RFC 1312), over TCP and UDP, normally on port 18.
//
// The package has three parts, shaped after net/http and miekg/dns:
//
//   - the wire format: [Message], [Parse], [Message.MarshalBinary] and
//     [Message.AppendBinary], with one exported sentinel error per rule
//     a message can break;
//   - [Server]: one server for TCP and UDP that hands each valid message to a
//     [Handler] and turns the handler's [ResponseWriter.Ack] or
//     [ResponseWriter.Nack] into the reply each revision and transport owes;
//   - [Client] and [Conn]: a sender with UDP retransmission and a pipelined
//     revision 'B' TCP connection.
//
// The package knows nothing of users, terminals or clusters; deciding what an
// acknowledgement means is the handler's job.
//
// The per-message path is kept free of avoidable garbage: the message and
// its writer share one allocation that is never reused, so a handler may
// keep the *Message, whose strings are its own (they never alias a read
// buffer). Replies are appended into pooled buffers, which go back to the
// pool once written (the duplicate filter keeps its own copy). On Linux a
// *net.UDPConn is read with recvmmsg, up to [Server.PacketBatch] datagrams
// a call, and answers that pile up while one is being written go out
// together with sendmmsg; any other net.PacketConn is served one datagram
// at a time.
//
// Strings in [Message] hold raw ISO 8859-1 octets, not UTF-8: RFC 1159 says
// "Do not strip the eighth bit of the characters". [Latin1ToUTF8] and
// [UTF8ToLatin1] convert at the edges, and [EqualFold] compares parts the way
// RFC 1312 asks: "All comparisons of parts (e.g., recipient, cookie, etc.) are
// case-insensitive."
package msp
