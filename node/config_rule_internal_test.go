package node

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// numericFields lists every number of Config with whether its doc says a
// negative value turns it off. It is written out, not derived from
// Config.numbers, so that a field dropped from the rules fails here.
var numericFields = []struct {
	field string
	off   bool // the field's doc says "negative: off"
}{
	{"MSPIdleTimeout", false},
	{"MSPReadTimeout", false},
	{"MSPMaxConns", false},
	{"DedupWindow", false},
	{"DeliverTimeout", false},
	{"MailboxMax", false},
	{"MailboxAge", false},
	{"MailboxReplicas", false},
	{"MailboxAckWait", false},
	{"MailboxSweep", true},
	{"MailboxSenderMax", true},
	{"MailboxMaxBytes", true},
	{"SessionIdleTimeout", false},
	{"MaxSessions", false},
	{"MSPMaxConnsPerIP", true},
	{"MSPRatePerIP", true},
	{"MSPRateBurst", false},
	{"MSPStallGrace", true},
	{"MaxPendingSessions", false},
	{"FailedSignInsPerMinute", true},
	{"FailedSignInBurst", false},
	{"ConversationHistory", false},
	{"ConversationIdle", false},
	{"TTYIdle", false},
	{"TTYPoll", false},
	{"SessionInboundRate", true},
	{"SessionInboundBurst", false},
	{"SessionAckWindow", false},
	{"ConversationsPerUser", false},
	{"ConversationSlotsPerUser", false},
}

// ruleBase is a valid Config for the rule tests.
func ruleBase(t *testing.T) Config {
	c := DefaultConfig()
	c.Name = "n1"
	c.DataDir = t.TempDir()
	return c
}

// setNumber sets a numeric field of c to v (in its own kind).
func setNumber(t *testing.T, c *Config, field string, v int64) {
	t.Helper()
	f := reflect.ValueOf(c).Elem().FieldByName(field)
	switch f.Kind() {
	case reflect.Int, reflect.Int64:
		f.SetInt(v)
	case reflect.Float64:
		f.SetFloat(float64(v))
	default:
		t.Fatalf("%s is a %s, not a number", field, f.Kind())
	}
}

// Issue 19: "zero means default ... everywhere".
func TestZeroMeansDefault(t *testing.T) {
	t.Parallel()
	def := DefaultConfig()
	for _, tc := range numericFields {
		t.Run(tc.field, func(t *testing.T) {
			t.Parallel()
			c := ruleBase(t)
			setNumber(t, &c, tc.field, 0)
			c.setDefaults()
			if err := c.validate(); err != nil {
				t.Fatalf("zero refused: %v", err)
			}
			got := reflect.ValueOf(c).FieldByName(tc.field).Interface()
			want := reflect.ValueOf(def).FieldByName(tc.field).Interface()
			if got != want || reflect.ValueOf(want).IsZero() {
				t.Errorf("zero became %v, want the default %v (non-zero)", got, want)
			}
		})
	}
}

// Issue 19: "negative means off only where the field's doc says so,
// anything out of range is refused with an error naming the flag and the
// valid range, never silently rewritten" (--max-conns -1 became 10000).
func TestNegativeRefusedUnlessDocSaysOff(t *testing.T) {
	t.Parallel()
	for _, tc := range numericFields {
		t.Run(tc.field, func(t *testing.T) {
			t.Parallel()
			c := ruleBase(t)
			setNumber(t, &c, tc.field, -1)
			c.setDefaults()
			err := c.validate()
			if tc.off {
				if err != nil {
					t.Fatalf("-1 refused although the doc says negative is off: %v", err)
				}
				if v := reflect.ValueOf(c).FieldByName(tc.field); !(v.CanInt() && v.Int() < 0 || v.CanFloat() && v.Float() < 0) {
					t.Errorf("-1 was rewritten to %v", v)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrConfig) || fe.Field != tc.field {
				t.Fatalf("err = %v, want ErrConfig naming %s", err, tc.field)
			}
			if !errors.Is(err, ErrOutOfRange) || !strings.Contains(err.Error(), "want ") || !strings.Contains(err.Error(), "0 for the default") {
				t.Errorf("err = %v does not state the valid range", err)
			}
		})
	}
}

func TestConfigRangeLimits(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		modify func(*Config)
		want   string // field refused, "" valid
	}{
		{"replicas above JetStream's 5 are refused", func(c *Config) { c.MailboxReplicas = 6 }, "MailboxReplicas"},
		{"five replicas are valid", func(c *Config) { c.MailboxReplicas = 5 }, ""},
		{"a negative ack timeout is refused, not half the delivery timeout", func(c *Config) { c.AckTimeout = -time.Second }, "AckTimeout"},
		{"a rate of 0.5 a second is valid", func(c *Config) { c.MSPRatePerIP = 0.5 }, ""},
	}
	for _, tc := range cases {
		c := ruleBase(t)
		tc.modify(&c)
		c.setDefaults()
		err := c.validate()
		var fe *FieldError
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (!errors.As(err, &fe) || fe.Field != tc.want):
			t.Errorf("%s: err = %v, want one naming %s", tc.name, err, tc.want)
		}
	}
}

// Every numeric field of Config is under the rule: a new one added to
// Config without a range fails here.
func TestEveryNumberHasARange(t *testing.T) {
	t.Parallel()
	ranges := Ranges()
	listed := map[string]bool{}
	for _, f := range numericFields {
		listed[f.field] = true
	}
	typ := reflect.TypeFor[Config]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		switch f.Type.Kind() {
		case reflect.Int, reflect.Int64, reflect.Float64:
		default:
			continue
		}
		if _, ok := ranges[f.Name]; !ok {
			t.Errorf("Config.%s has no range in Config.numbers", f.Name)
		}
		if !listed[f.Name] && f.Name != "AckTimeout" {
			t.Errorf("Config.%s is missing from numericFields", f.Name)
		}
	}
}
