package msp

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
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
			if st, ok := SignatureTime(sig); !ok || sig != SignAt(&m, []byte("k"), st) {
				t.Fatalf("Verify accepted %q, which neither Sign nor SignAt makes", sig)
			}
		}
		m.Signature = Sign(&m, []byte("k"))
		if err := Verify(&m, []byte("k")); err != nil {
			t.Fatalf("Verify of Sign's own output: %v", err)
		}
	})
}

// The worked example of docs/MSP.md ("Signature"): an independent client
// that follows the text must arrive at these octets. The test also checks
// that the document still shows them.
func TestTimedSignatureWorkedExample(t *testing.T) {
	t.Parallel()
	const (
		secret = "s3cret"
		at     = 1796577600 // 2026-12-06 17:20:00 UTC
		want   = "hm2:1796577600:eqWojp5y-NDLBdaRA6lSQwWEPHlL57eBibcHWpMjdzY"
		input  = `msprelay-msp-sig-2\01796577600\0bob\0\0Lunch at noon?\r\nBring a coat.\0alice\0pts/1\0261206172000\0`
	)
	m := Message{Recipient: "bob", Text: "Lunch at noon?\nBring a coat.", Sender: "alice", SenderTerm: "pts/1", Cookie: "261206172000"}
	if got := SignAt(&m, []byte(secret), time.Unix(at, 0)); got != want {
		t.Fatalf("SignAt = %q, want %q", got, want)
	}
	m.Signature = want
	if err := VerifyAt(&m, []byte(secret), time.Unix(at+60, 0), 5*time.Minute, 30*time.Second); err != nil {
		t.Fatalf("VerifyAt a minute later: %v", err)
	}
	doc, err := os.ReadFile("../docs/MSP.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{want, input, "`" + secret + "`"} {
		if !strings.Contains(string(doc), s) {
			t.Errorf("docs/MSP.md does not show %q", s)
		}
	}
}

// Issue 18, item 6: "a signature scheme with a time in it lets a node
// refuse a capture older than the window (keep hm1: accepted as
// documented, add the new form)".
func TestTimedSignatureIsJudgedByItsTime(t *testing.T) {
	t.Parallel()
	secret := []byte("s3cret")
	now := time.Unix(1796577600, 0)
	const maxAge, skew = 270 * time.Second, 30 * time.Second
	base := Message{Recipient: "bob", RecipTerm: "pts/1", Text: "hello", Sender: "alice", SenderTerm: "tty1", Cookie: "c1"}
	for _, tc := range []struct {
		name string
		at   time.Time
		want error
	}{
		{"made now", now, nil},
		{"made at the edge of the window", now.Add(-maxAge), nil},
		{"made a second before the window", now.Add(-maxAge - time.Second), ErrSignatureTooOld},
		{"made a day ago", now.Add(-24 * time.Hour), ErrSignatureTooOld},
		{"made at 0", time.Unix(0, 0), ErrSignatureTooOld},
		{"ahead within the skew", now.Add(skew), nil},
		{"ahead past the skew", now.Add(skew + time.Second), ErrSignatureTooNew},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := base
			m.Signature = SignAt(&m, secret, tc.at)
			if err := Verify(&m, secret); err != nil {
				t.Fatalf("Verify (no time judged) = %v", err)
			}
			if err := VerifyAt(&m, secret, now, maxAge, skew); !errors.Is(err, tc.want) {
				t.Fatalf("VerifyAt = %v, want %v", err, tc.want)
			}
			if got, ok := SignatureTime(m.Signature); !ok || !got.Equal(time.Unix(max(tc.at.Unix(), 0), 0)) {
				t.Fatalf("SignatureTime = %v %v", got, ok)
			}
		})
	}
	// A stale time on a signature that does not match is no proof of
	// anything: it is a bad signature, not an old one.
	m := base
	m.Signature = SignAt(&m, []byte("guess"), now.Add(-time.Hour))
	if err := VerifyAt(&m, secret, now, maxAge, skew); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("VerifyAt of a stale signature by another secret = %v, want ErrBadSignature", err)
	}
	// hm1 carries no time: VerifyAt judges it by its MAC alone, as documented.
	m.Signature = Sign(&m, secret)
	if err := VerifyAt(&m, secret, now, maxAge, skew); err != nil {
		t.Fatalf("VerifyAt of hm1 = %v", err)
	}
}

// The time is part of the MAC: moving it, or giving it a second
// spelling, breaks the signature.
func TestTimedSignatureCoversItsTime(t *testing.T) {
	t.Parallel()
	secret := []byte("s3cret")
	m := Message{Recipient: "bob", Text: "hello", Sender: "alice", Cookie: "c1"}
	sig := SignAt(&m, secret, time.Unix(1796577600, 0))
	mac := strings.TrimPrefix(sig, "hm2:1796577600:")
	for _, tc := range []struct {
		sig  string
		want error
	}{
		{"hm2:1796577601:" + mac, ErrBadSignature},
		{"hm2:01796577600:" + mac, ErrBadSignature},
		{"hm2:+1796577600:" + mac, ErrBadSignature},
		{"hm2:1796577600" + mac, ErrBadSignature},
		{"hm2::" + mac, ErrBadSignature},
		{"hm2:99999999999999999999:" + mac, ErrBadSignature},
		{"hm1:" + mac, ErrBadSignature},
		{"HM2:1796577600:" + mac, ErrSignatureScheme},
	} {
		m.Signature = tc.sig
		if err := Verify(&m, secret); !errors.Is(err, tc.want) {
			t.Errorf("Verify(%q) = %v, want %v", tc.sig, err, tc.want)
		}
	}
	m.Signature = Sign(&m, secret)
	hm1mac := strings.TrimPrefix(m.Signature, "hm1:")
	m.Signature = "hm2:1796577600:" + hm1mac
	if err := Verify(&m, secret); !errors.Is(err, ErrBadSignature) {
		t.Errorf("an hm1 MAC under an hm2 prefix verified: %v", err)
	}
}

// FuzzVerifyTimed: an hm2 signature verifies only in the one spelling
// SignAt makes, and SignAt's output always verifies and states its time.
func FuzzVerifyTimed(f *testing.F) {
	f.Add("bob", "hello", "alice", "1", int64(1796577600), "hm2:1796577600:AAAA")
	f.Fuzz(func(t *testing.T, recip, text, sender, cookie string, at int64, sig string) {
		k := []byte("k")
		m := Message{Recipient: recip, Text: text, Sender: sender, Cookie: cookie, Signature: sig}
		if Verify(&m, k) == nil && sig != Sign(&m, k) {
			st, ok := SignatureTime(sig)
			if !ok || sig != SignAt(&m, k, st) {
				t.Fatalf("Verify accepted %q, which neither Sign nor SignAt makes", sig)
			}
		}
		if _, ok := SignatureTime(sig); ok && !strings.HasPrefix(sig, SignaturePrefixTimed) {
			t.Fatalf("SignatureTime(%q) ok for another scheme", sig)
		}
		tm := time.Unix(at, 0)
		m.Signature = SignAt(&m, k, tm)
		if err := Verify(&m, k); err != nil {
			t.Fatalf("Verify of SignAt's own output %q: %v", m.Signature, err)
		}
		if got, ok := SignatureTime(m.Signature); !ok || got.Unix() != max(at, 0) {
			t.Fatalf("SignatureTime(%q) = %v %v, want %d", m.Signature, got, ok, at)
		}
	})
}
