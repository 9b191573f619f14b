package msp

import "testing"

func BenchmarkParse(b *testing.B) {
	in := []byte(rfcExample)
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, err := Parse(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnmarshalBinary(b *testing.B) {
	in := []byte(rfcExample)
	var m Message
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if err := m.UnmarshalBinary(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendBinary(b *testing.B) {
	m := &Message{Version: 'B', Recipient: "chris", Text: "Hi\r\nHow about lunch?", Sender: "sandy", SenderTerm: "console", Cookie: "910806121325"}
	buf := make([]byte, 0, MaxLen)
	b.ReportAllocs()
	b.SetBytes(int64(m.EncodedLen()))
	for b.Loop() {
		var err error
		if buf, err = m.AppendBinary(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}
