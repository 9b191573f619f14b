package node

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// Issue 20: "one encoding for names in logs". A Latin-1 name from the wire
// reads as its UTF-8 text in every line, whether it came as a record's
// attribute, a logger's With, or inside a group; control characters stay
// escaped by the handler below.
func TestLogNamesInOneEncoding(t *testing.T) {
	t.Parallel()
	const raw = "jos\xe9" // ISO 8859-1 octets, as MSP carries them
	cases := []struct {
		name string
		log  func(l *slog.Logger)
		want string
	}{
		{"record attribute", func(l *slog.Logger) { l.Info("m", "user", raw) }, `user=josé`},
		{"With attribute", func(l *slog.Logger) { l.With("sender", raw).Info("m") }, `sender=josé`},
		{"group", func(l *slog.Logger) { l.Info("m", slog.Group("to", "user", raw)) }, `to.user=josé`},
		{"UTF-8 text is left alone", func(l *slog.Logger) { l.Info("m", "user", "josé") }, `user=josé`},
		{"controls stay escaped", func(l *slog.Logger) { l.Info("m", "user", "a\x1b[2Jb\xe9") }, `user="a\x1b[2Jbé"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var b bytes.Buffer
			tc.log(withNames(slog.New(slog.NewTextHandler(&b, nil))))
			if !strings.Contains(b.String(), tc.want) {
				t.Fatalf("logged %q, want it to contain %q", b.String(), tc.want)
			}
		})
	}
}
