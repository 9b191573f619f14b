package session

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
		QueueWait:         DefaultQueueWait,
	}
}
