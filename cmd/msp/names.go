package main

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/msprelay/msprelay/msp"
)

// notLatin1Error says which argument holds a character ISO 8859-1 cannot
// hold. It matches [msp.ErrNotLatin1] with errors.Is but reads as one
// sentence, without the msp package's own prefix.
type notLatin1Error struct {
	what, arg string // the argument's name ("--term") and its text
	r         rune   // the first character that does not fit
}

func (e *notLatin1Error) Error() string {
	return fmt.Sprintf("%s %q: %q is not representable in ISO 8859-1, the character set MSP carries", e.what, e.arg, e.r)
}

func (e *notLatin1Error) Unwrap() error { return msp.ErrNotLatin1 }

// toLatin1 converts one command-line argument (what names it in errors) to
// ISO 8859-1, the octets MSP and the session protocol carry for every name
// and text. Valid UTF-8 (what a terminal produces) is converted and refused
// if Latin-1 cannot hold it; anything else is taken to be Latin-1 octets
// already.
func toLatin1(what, s string) (string, error) {
	if !utf8.ValidString(s) {
		return s, nil
	}
	v, err := msp.UTF8ToLatin1(s)
	if errors.Is(err, msp.ErrNotLatin1) {
		for _, r := range s {
			if r > 0xff {
				return "", &notLatin1Error{what: what, arg: s, r: r}
			}
		}
	}
	if err != nil {
		return "", fmt.Errorf("%s %q: %w", what, s, err)
	}
	return v, nil
}
