package main

import (
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// translitTable spells the characters people type most often outside ISO
// 8859-1 (typographic quotes, dashes, the ellipsis, the euro sign) the way a
// Latin-1 writer would, and the letters Unicode does not decompose (ł, đ,
// œ): Unicode's compatibility decomposition has no answer for them.
var translitTable = map[rune]string{
	'‘': "'", '’': "'", '‚': "'", '‛': "'", '′': "'", '‹': "<", '›': ">",
	'“': `"`, '”': `"`, '„': `"`, '‟': `"`, '″': `"`,
	'‐': "-", '‑': "-", '‒': "-", '–': "-", '—': "--", '―': "--", '−': "-",
	'…': "...", '€': "EUR", '•': "*", '→': "->", '←': "<-", '⇒': "=>",
	'™': "(TM)", '≤': "<=", '≥': ">=", '≠': "!=", '\u2009': " ", '\u202f': " ", '\u2007': " ",
	'Ł': "L", 'ł': "l", 'Đ': "D", 'đ': "d", 'Œ': "OE", 'œ': "oe", 'ı': "i", 'Ħ': "H", 'ħ': "h",
	'\u200b': "", '\u200d': "", '\u200c': "", '\u2060': "", '\ufeff': "",
}

// transliterate turns text (UTF-8) into text every character of which ISO
// 8859-1 can hold, for `msp send --translit`:
//
//  1. the text is composed (NFC), so that "e" + COMBINING ACUTE becomes
//     the Latin-1 "é" rather than losing its accent;
//  2. each character above U+00FF is looked up in translitTable (quotes,
//     dashes, ellipsis, "€" -> "EUR", ...);
//  3. otherwise it is decomposed by Unicode compatibility decomposition
//     (NFKD: "ő" -> "o" + double acute, "ﬁ" -> "fi", "²" stays) and its
//     marks are put back one by one while the result stays in Latin-1
//     ("ǘ" -> "ü", "ő" -> "o", "ł" has no decomposition);
//  4. what is left is replaced by "?".
//
// It reports how many characters it changed. Invalid UTF-8 is returned as
// it is (taken to be Latin-1 octets already, as toLatin1 does).
func transliterate(s string) (string, int) {
	if !utf8.ValidString(s) {
		return s, 0
	}
	s = norm.NFC.String(s)
	var b strings.Builder
	b.Grow(len(s))
	changed := 0
	for _, r := range s {
		if r <= 0xff {
			b.WriteRune(r)
			continue
		}
		changed++
		if t, ok := translitTable[r]; ok {
			b.WriteString(t)
			continue
		}
		b.WriteString(nearestLatin1(r))
	}
	return b.String(), changed
}

// nearestLatin1 is step 3 and 4 of transliterate for one character.
func nearestLatin1(r rune) string {
	d := norm.NFKD.String(string(r))
	var out strings.Builder
	for _, x := range d {
		if x <= 0xff {
			out.WriteRune(x)
			continue
		}
		if t, ok := translitTable[x]; ok {
			out.WriteString(t)
			continue
		}
		// A combining mark: keep it if it composes with the letter
		// before it into a Latin-1 character.
		cur := out.String()
		if cur == "" {
			continue
		}
		last, n := utf8.DecodeLastRuneInString(cur)
		comp := norm.NFC.String(string(last) + string(x))
		if c, m := utf8.DecodeRuneInString(comp); m == len(comp) && c <= 0xff {
			out.Reset()
			out.WriteString(cur[:len(cur)-n])
			out.WriteRune(c)
		}
	}
	if out.Len() == 0 {
		return "?"
	}
	return out.String()
}
