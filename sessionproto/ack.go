package sessionproto

import (
	"errors"
	"fmt"
	"strconv"
)

// ProtocolVersionBatch is MSPS2 plus acknowledgements in batches: a client
// that offers it in VER (before USR) may acknowledge up to MaxAckIDs
// messages in one line, `ACK TrID id id ...`. A server that answers MSPS2
// instead takes one id per ACK line; the client then sends one line per id
// (still in one write, see AppendAcks).
const ProtocolVersionBatch = "MSPS3"

// MaxAckIDs bounds the ids of one ACK line under MSPS3. Message ids are 24
// octets, so a full line (about 820 octets) fits MaxLine.
const MaxAckIDs = 32

// ErrAckIDs is the error of an ACK line whose ids cannot be read.
var ErrAckIDs = errors.New("sessionproto: bad ACK ids")

// ParseAckIDs decodes the ids of an ACK line (its Args): one to max of
// them, each a token. It returns them in the order given; a client may
// acknowledge in any order and repeat an id.
func ParseAckIDs(args []string, max int) ([]string, error) {
	if len(args) == 0 || len(args) > max {
		return nil, fmt.Errorf("%w: %d ids, want 1 to %d", ErrAckIDs, len(args), max)
	}
	ids := make([]string, len(args))
	for i, a := range args {
		id, err := DecodeToken(a)
		if err != nil {
			return nil, fmt.Errorf("%w: id %d: %v", ErrAckIDs, i+1, err)
		}
		ids[i] = id
	}
	return ids, nil
}

// AppendAcks appends the ACK lines that acknowledge ids: at most perLine
// ids per line (1 for an MSPS2 server, MaxAckIDs for MSPS3), and no line
// over MaxLine unless a single id alone is that long. next gives each
// line's TrID. The lines go to the server in one write, so a batch of
// messages costs one write whatever the server speaks.
func AppendAcks(dst []byte, ids []string, perLine int, next func() uint32) []byte {
	perLine = min(max(perLine, 1), MaxAckIDs)
	for len(ids) > 0 {
		start := len(dst)
		dst = append(dst, "ACK "...)
		dst = strconv.AppendUint(dst, uint64(next()), 10)
		n := 0
		for n < len(ids) && n < perLine {
			tok := EncodeToken(ids[n])
			if n > 0 && len(dst)-start+1+len(tok)+2 > MaxLine {
				break
			}
			dst = append(dst, ' ')
			dst = append(dst, tok...)
			n++
		}
		dst = append(dst, '\r', '\n')
		ids = ids[n:]
	}
	return dst
}
