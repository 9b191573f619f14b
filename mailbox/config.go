package mailbox

import "github.com/msprelay/msprelay/switchboard"

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
		StoreTimeout:    switchboard.DefaultStoreTimeout,
	}
}
