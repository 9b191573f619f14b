package msp

import (
	"errors"
	"strings"
	"testing"
)

// Issue 12, item 9: "define a verifiable signature (e.g. an HMAC over the
// other parts with the sender's session secret), verify it when present".
func TestSignatureCoversEveryOtherPart(t *testing.T) {
	t.Parallel()
	secret := []byte("s3cret")
	base := Message{Recipient: "bob", RecipTerm: "pts/1", Text: "hello\r\nthere", Sender: "alice", SenderTerm: "tty1", Cookie: "910806121325"}
	signed := base
	signed.Signature = Sign(&base, secret)
	if !strings.HasPrefix(signed.Signature, SignaturePrefix) || len(signed.Signature) != 47 {
		t.Fatalf("signature %q: want %q and 47 octets", signed.Signature, SignaturePrefix)
	}
	if err := Verify(&signed, secret); err != nil {
		t.Fatalf("Verify of a fresh signature: %v", err)
	}
	// The wire form round-trips and still verifies.
	b, err := signed.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(parsed, secret); err != nil {
		t.Fatalf("Verify after a round trip: %v", err)
	}
	for _, tc := range []struct {
		name   string
		change func(m *Message)
	}{
		{"RECIPIENT", func(m *Message) { m.Recipient = "carol" }},
		{"RECIP-TERM", func(m *Message) { m.RecipTerm = "pts/2" }},
		{"MESSAGE", func(m *Message) { m.Text = "hello\r\nthere!" }},
		{"SENDER", func(m *Message) { m.Sender = "mallory" }},
		{"SENDER-TERM", func(m *Message) { m.SenderTerm = "tty2" }},
		{"COOKIE", func(m *Message) { m.Cookie = "910806121326" }},
		{"part boundary moved", func(m *Message) { m.Recipient, m.RecipTerm = "bo", "bpts/1" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := signed
			tc.change(&m)
			if err := Verify(&m, secret); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("Verify after changing %s = %v, want ErrBadSignature", tc.name, err)
			}
		})
	}
	if err := Verify(&signed, []byte("other")); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("Verify with another secret = %v", err)
	}
}

// The server turns LF line ends into CR LF before handlers see the text;
// a signature made over LF still verifies.
func TestSignatureSurvivesLineEndNormalisation(t *testing.T) {
	t.Parallel()
	m := Message{Recipient: "bob", Text: "a\nb", Sender: "alice", Cookie: "1"}
	m.Signature = Sign(&m, []byte("k"))
	m.Text = NormalizeNewlines(m.Text)
	if err := Verify(&m, []byte("k")); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyRefusesUnknownAndMalformed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		sig  string
		want error
	}{
		{"", ErrNoSignature},
		{"pgp:abc", ErrSignatureScheme},
		{"opaque token", ErrSignatureScheme},
		{"hm1:", ErrBadSignature},
		{"hm1:!!!!", ErrBadSignature},
		{"hm1:" + strings.Repeat("A", 42), ErrBadSignature},
		{"hm1:" + strings.Repeat("A", 43), ErrBadSignature},
	} {
		m := Message{Recipient: "bob", Sender: "alice", Signature: tc.sig}
		if err := Verify(&m, []byte("k")); !errors.Is(err, tc.want) {
			t.Errorf("Verify(%q) = %v, want %v", tc.sig, err, tc.want)
		}
	}
}

func FuzzVerify(f *testing.F) {
	f.Add("bob", "hello", "alice", "1", "hm1:AAAA")
	f.Fuzz(func(t *testing.T, recip, text, sender, cookie, sig string) {
		m := Message{Recipient: recip, Text: text, Sender: sender, Cookie: cookie, Signature: sig}
		if Verify(&m, []byte("k")) == nil && sig != Sign(&m, []byte("k")) {
			t.Fatalf("Verify accepted %q, which Sign does not make", sig)
		}
		m.Signature = Sign(&m, []byte("k"))
		if err := Verify(&m, []byte("k")); err != nil {
			t.Fatalf("Verify of Sign's own output: %v", err)
		}
	})
}
