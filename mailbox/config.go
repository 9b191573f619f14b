package mailbox

import (
	"fmt"

	"github.com/msprelay/msprelay/switchboard"
)

// DefaultConfig returns the defaults of every setting of a Mailbox; the
// caller adds the NATS connection and Logger. A zero field of a Config
// passed to New means the same default.
func DefaultConfig() Config {
	return Config{
		MaxPerUser:      DefaultMaxPerUser,
		MaxPerSender:    DefaultMaxPerSender,
		MaxBytes:        DefaultMaxBytes,
		MaxAge:          DefaultMaxAge,
		Replicas:        DefaultReplicas,
		DuplicateWindow: DefaultDuplicateWindow,
		AckWait:         DefaultAckWait,
		PollEvery:       DefaultPollEvery,
		SweepEvery:      DefaultSweepEvery,
		StoreTimeout:    switchboard.DefaultStoreTimeout,
	}
}

// checkNumbers refuses a negative number where the field's doc gives a
// negative value no meaning (MaxPerSender's and MaxBytes' turn them off):
// zero means the default, and nothing is rewritten silently.
func (c Config) checkNumbers() error {
	for _, f := range []struct {
		name string
		neg  bool
	}{
		{"MaxPerUser", c.MaxPerUser < 0}, {"MaxAge", c.MaxAge < 0},
		{"DuplicateWindow", c.DuplicateWindow < 0}, {"AckWait", c.AckWait < 0},
		{"PollEvery", c.PollEvery < 0}, {"StoreTimeout", c.StoreTimeout < 0},
	} {
		if f.neg {
			return fmt.Errorf("%w: %s is negative: want above 0, or 0 for the default", ErrConfig, f.name)
		}
	}
	return nil
}
