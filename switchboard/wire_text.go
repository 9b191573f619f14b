package switchboard

import (
	"encoding/json"
	"fmt"

	"github.com/msprelay/msprelay/principal"
)

// FrameJSON renders the body of a deliver request or reply, as seen with
// `nats sub 'msp.node.>'`, as JSON for people: a binary frame becomes an
// object with its kind and version and, per delivery, the fields a mailbox
// entry has (text as code points 0-255, the sender identity, the budget).
// It is a debug printer of this version's frames only; nodes do not speak
// JSON to each other. An undecodable frame, or one of another version,
// gives an error wrapping ErrWireFormat.
func FrameJSON(frame []byte) ([]byte, error) {
	if len(frame) >= 3 && frame[0] == wireMagic && frame[2] == kindReply {
		return replyJSON(frame)
	}
	items, err := decodeRequest(frame)
	if err != nil {
		return nil, err
	}
	out := struct {
		Version    int               `json:"version"`
		Kind       string            `json:"kind"`
		Deliveries []json.RawMessage `json:"deliveries"`
	}{Version: wireVersion, Kind: "request"}
	for _, it := range items {
		es := make([]principal.Entry, len(it.targets))
		for i, t := range it.targets {
			es[i] = principal.Entry{User: t.user, Term: t.term}
		}
		b, err := encodeEntry(&it.d, es, it.budget)
		if err != nil {
			return nil, err
		}
		out.Deliveries = append(out.Deliveries, b)
	}
	return json.Marshal(&out)
}

// replyJSON renders a reply frame; results have no user or terminal (the
// frame does not repeat them), only their position.
func replyJSON(frame []byte) ([]byte, error) {
	r := wireReader{b: frame}
	node, fault, n := replyHeader(&r)
	type result struct {
		Status string `json:"status"`
		Code   string `json:"code,omitempty"`
		Reason string `json:"reason,omitempty"`
		Acked  bool   `json:"acked,omitempty"`
	}
	out := struct {
		Version int        `json:"version"`
		Kind    string     `json:"kind"`
		Node    string     `json:"node"`
		Error   string     `json:"error,omitempty"`
		Results [][]result `json:"results"`
	}{Version: wireVersion, Kind: "reply", Node: node, Error: fault}
	codes := wireCodes()
	for range n {
		m := r.count("results", 0, maxTargetsPerRequest, minResultLen)
		rs := make([]result, 0, m)
		for range m {
			st, flags, code, reason := Status(r.byte()), r.byte(), r.uvarint(), r.str()
			res := result{Status: st.String(), Reason: reason, Acked: flags&flagAcked != 0}
			switch {
			case code >= 1 && code <= uint64(len(codes)):
				res.Code = codes[code-1].code
			case code != 0:
				res.Code = fmt.Sprint(code)
			}
			rs = append(rs, res)
		}
		out.Results = append(out.Results, rs)
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d octets after the last result", len(r.b))
	}
	if r.err != nil {
		return nil, r.err
	}
	return json.Marshal(&out)
}
