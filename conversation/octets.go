package conversation

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/msprelay/msprelay/msp"
)

// octets is a string of ISO 8859-1 octets (names and texts, as MSP carries
// them) that survives JSON: each octet is written as the code point of the
// same value, where a plain string would have its 8-bit octets replaced as
// invalid UTF-8.
type octets string

// MarshalJSON writes the octets as a JSON string of code points 0-255.
func (o octets) MarshalJSON() ([]byte, error) { return json.Marshal(msp.Latin1ToUTF8(string(o))) }

// UnmarshalJSON reads what MarshalJSON wrote; code points above 255 are an
// error.
func (o *octets) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	l, err := msp.UTF8ToLatin1(s)
	if err != nil {
		return fmt.Errorf("conversation: %w", err)
	}
	*o = octets(l)
	return nil
}

// memberJSON is Member as stored in the bucket.
type memberJSON struct {
	ID     string    `json:"id"`
	User   octets    `json:"user"`
	Node   string    `json:"node"`
	Term   octets    `json:"term"`
	Joined time.Time `json:"joined"`
	Blocks []octets  `json:"blocks,omitempty"`
	Gone   string    `json:"gone,omitempty"`
}

// MarshalJSON stores the member with its names as octets.
func (m Member) MarshalJSON() ([]byte, error) {
	j := memberJSON{ID: m.ID, User: octets(m.User), Node: m.Node, Term: octets(m.Term), Joined: m.Joined, Gone: m.Gone}
	for _, b := range m.Blocks {
		j.Blocks = append(j.Blocks, octets(b))
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (m *Member) UnmarshalJSON(b []byte) error {
	var j memberJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*m = Member{ID: j.ID, User: string(j.User), Node: j.Node, Term: string(j.Term), Joined: j.Joined, Gone: j.Gone}
	for _, b := range j.Blocks {
		m.Blocks = append(m.Blocks, string(b))
	}
	return nil
}
