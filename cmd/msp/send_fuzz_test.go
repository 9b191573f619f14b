package main

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/msprelay/msprelay/msp"
)

// FuzzTranslitSplit: whatever a user types, --translit yields text Latin-1
// holds, and --split yields parts that each fit the usable maximum, carry
// their numbers, and together hold every non-space octet of the text in
// order.
func FuzzTranslitSplit(f *testing.F) {
	for _, s := range []string{"price €5 – “ok” …", "Łódź Erdős ﬁne ǘ", strings.Repeat("word ", 200), strings.Repeat("x", 1200), "a\r\nb\r\n" + strings.Repeat("long line ", 90), "中文 テキスト"} {
		f.Add(s, 200)
	}
	f.Fuzz(func(t *testing.T, s string, max int) {
		if !utf8.ValidString(s) || len(s) > 8192 {
			return
		}
		lt, _ := transliterate(s)
		if _, err := msp.UTF8ToLatin1(lt); err != nil {
			t.Fatalf("transliterate(%q) = %q: %v", s, lt, err)
		}
		max = 20 + abs(max)%500
		text := msp.NormalizeNewlines(lt)
		parts, err := splitText(text, max)
		if err != nil {
			return // too few octets to split into, or too long: said so
		}
		var got strings.Builder
		for i, p := range parts {
			if len(p) > max {
				t.Fatalf("part %d is %d octets, over %d", i+1, len(p), max)
			}
			_, body, ok := strings.Cut(p, ") ")
			if !ok || !strings.HasPrefix(p, "(") {
				t.Fatalf("part %d %q is not numbered", i+1, p)
			}
			got.WriteString(body)
		}
		if strip(got.String()) != strip(text) {
			t.Fatalf("parts %q do not make up %q", parts, text)
		}
	})
}

func abs(n int) int {
	if n < 0 {
		if n == -n { // the smallest int
			return 0
		}
		return -n
	}
	return n
}

// strip drops spaces, where splitText may cut.
func strip(s string) string { return strings.ReplaceAll(s, " ", "") }
