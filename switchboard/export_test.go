package switchboard

import (
	"time"

	"github.com/msprelay/msprelay/principal"
)

// RequestFrame is the request frame a node of this version sends for one
// delivery to targets; tests in package switchboard_test forge requests
// with it, as any holder of node credentials could.
func RequestFrame(d *Delivery, targets []principal.Entry) []byte {
	return appendRequest(nil, []*call{{d: d, targets: targets}}, time.Now())
}

// ReplyFrame decodes the reply to a RequestFrame: the answering node, its
// error text, and one result per target.
func ReplyFrame(data []byte, targets []principal.Entry) (node, fault string, res []Result, err error) {
	r := wireReader{b: data}
	node, fault, n := replyHeader(&r)
	if r.err != nil || n == 0 {
		return node, fault, nil, r.err
	}
	res = make([]Result, len(targets))
	decodeResults(&r, node, targets, res)
	return node, fault, res, r.err
}
