package node

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadKeyRawOrBase64(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key32 := bytes.Repeat([]byte{0xA7}, 32)
	key16 := []byte("0123456789abcdef")
	cases := []struct {
		name    string
		content []byte
		want    []byte
		wantErr string
	}{
		{"raw 32 bytes", key32, key32, ""},
		{"raw 16 bytes", key16, key16, ""},
		{"base64 of 32 bytes with a newline", []byte(base64.StdEncoding.EncodeToString(key32) + "\n"), key32, ""},
		{"base64 of 16 bytes", []byte(base64.StdEncoding.EncodeToString(key16)), key16, ""},
		{"wrong length", []byte("short"), nil, "want 16, 24 or 32 bytes"},
		{"base64 of a wrong length", []byte(base64.StdEncoding.EncodeToString([]byte("tenbytes!!")) + "\n"), nil, "want 16, 24 or 32 bytes"},
	}
	for i, tc := range cases {
		p := filepath.Join(dir, string(rune('a'+i)))
		if err := os.WriteFile(p, tc.content, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := readKey(p)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err = %v, want %q", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("%s: got %x, %v", tc.name, got, err)
		}
	}
	if _, err := readKey(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing key file: no error")
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	base := func() Config {
		c := DefaultConfig()
		c.Name = "n1"
		c.DataDir = t.TempDir()
		return c
	}
	cases := []struct {
		name   string
		modify func(*Config)
		want   string // the Config field refused; "" = valid
	}{
		{"defaults are valid", func(*Config) {}, ""},
		{"node names go into NATS subjects: no dots", func(c *Config) { c.Name = "host.example" }, "Name"},
		{"join needs a gossip address", func(c *Config) { c.Join = []string{"127.0.0.1:7946"} }, "Join"},
		{"exposing the embedded server conflicts with relays", func(c *Config) {
			c.NATSURLs = []string{"nats://127.0.0.1:4222"}
			c.NATSListen = ":4222"
		}, "NATSListen"},
		{"embedded NATS needs a data dir", func(c *Config) { c.DataDir = "" }, "DataDir"},
		{"relays need no data dir", func(c *Config) { c.DataDir = ""; c.NATSURLs = []string{"nats://127.0.0.1:4222"} }, ""},
		{"secret auth needs secrets", func(c *Config) { c.SessionAddr = ":0"; c.SessionAuth = AuthSecret }, "SessionSecrets"},
		{"unknown gossip profile", func(c *Config) { c.GossipProfile = "mars" }, "GossipProfile"},
		{"bad address", func(c *Config) { c.MSPAddr = "18" }, "MSPAddr"},
		{"unknown offline policy", func(c *Config) { c.Offline = "maybe" }, "Offline"},
		{"acknowledgements wait inside a delivery", func(c *Config) { c.AckTimeout = c.DeliverTimeout }, "AckTimeout"},
	}
	for _, tc := range cases {
		c := base()
		tc.modify(&c)
		c.setDefaults()
		err := c.validate()
		var fe *FieldError
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: unexpected error %v", tc.name, err)
		case tc.want != "" && (!errors.Is(err, ErrConfig) || !errors.As(err, &fe) || fe.Field != tc.want):
			t.Errorf("%s: err = %v, want ErrConfig naming field %s", tc.name, err, tc.want)
		case err != nil && strings.Contains(err.Error(), "--"):
			// Issue 14: "no CLI flag names inside library errors".
			t.Errorf("%s: err = %v names a command-line flag", tc.name, err)
		}
	}
}
