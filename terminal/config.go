package terminal

import "time"

// Defaults for the zero fields of Config.
const (
	// DefaultIdle is how long a terminal sees no input before it is idle.
	DefaultIdle = 10 * time.Minute
	// DefaultPoll is how often logins are scanned.
	DefaultPoll = time.Second
	// DefaultActivityEvery rate-limits last-active updates, as the
	// switchboard does for sessions.
	DefaultActivityEvery = 10 * time.Second
	// DefaultMaxLogins bounds the logins signed in.
	DefaultMaxLogins = 1024
	// DefaultDevDir is where the devices utmp names live.
	DefaultDevDir = "/dev"
)

// DefaultConfig returns the defaults of every setting of a Service; the
// caller adds the Switchboard and Logger. A zero field of a Config passed
// to New means the same default.
func DefaultConfig() Config {
	return Config{
		Utmp:          DefaultUtmp,
		DevDir:        DefaultDevDir,
		Idle:          DefaultIdle,
		Charset:       UTF8,
		Poll:          DefaultPoll,
		WriteTimeout:  DefaultWriteTimeout,
		ActivityEvery: DefaultActivityEvery,
		MaxLogins:     DefaultMaxLogins,
	}
}
