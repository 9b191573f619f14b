package session

import "fmt"

// DefaultConfig returns the defaults of every setting of a Server; the
// caller adds the Switchboard, Directory and Logger. A zero field of a
// Config passed to New means the same default.
func DefaultConfig() Config {
	return Config{
		IdleTimeout:       DefaultIdleTimeout,
		LoginTimeout:      DefaultLoginTimeout,
		WriteTimeout:      DefaultWriteTimeout,
		SendTimeout:       DefaultSendTimeout,
		MaxSessions:       DefaultMaxSessions,
		MaxPending:        DefaultMaxPending,
		FailedSignInRate:  DefaultFailedSignInRate,
		FailedSignInBurst: DefaultFailedSignInBurst,
		MaxList:           DefaultMaxList,
		MaxNames:          DefaultMaxNames,
		OutQueue:          DefaultOutQueue,
		AckWindow:         DefaultAckWindow,
		QueueWait:         DefaultQueueWait,
		ParkAfter:         DefaultParkAfter,
	}
}

// checkNumbers refuses a negative number where the field's doc gives a
// negative value no meaning: zero means the default, and nothing is
// rewritten silently.
func (c Config) checkNumbers() error {
	for _, f := range []struct {
		name string
		neg  bool
	}{
		{"IdleTimeout", c.IdleTimeout < 0}, {"LoginTimeout", c.LoginTimeout < 0},
		{"WriteTimeout", c.WriteTimeout < 0}, {"SendTimeout", c.SendTimeout < 0},
		{"MaxSessions", c.MaxSessions < 0}, {"MaxPending", c.MaxPending < 0},
		{"FailedSignInBurst", c.FailedSignInBurst < 0}, {"MaxList", c.MaxList < 0},
		{"MaxNames", c.MaxNames < 0}, {"OutQueue", c.OutQueue < 0},
		{"AckWindow", c.AckWindow < 0},
	} {
		if f.neg {
			return fmt.Errorf("session: Config.%s is negative: want above 0, or 0 for the default", f.name)
		}
	}
	return nil
}
