package conversation

// DefaultReplicas is the JetStream replica count when Config.Replicas is zero.
const DefaultReplicas = 1

// DefaultConfig returns the defaults of every setting of a Manager; the
// caller adds Node, NATS and the hooks. A zero field of a Config passed to
// New means the same default.
func DefaultConfig() Config {
	return Config{
		History:          DefaultHistory,
		Idle:             DefaultIdle,
		MaxMembers:       DefaultMaxMembers,
		MaxConversations: DefaultMaxConversations,
		MaxText:          DefaultMaxText,
		MaxOpenPerUser:   DefaultMaxOpenPerUser,
		MaxSlotsPerUser:  DefaultMaxSlotsPerUser,
		Replicas:         DefaultReplicas,
		PublishTimeout:   DefaultPublishTimeout,
		SweepInterval:    DefaultSweepInterval,
		DeadGrace:        DefaultDeadGrace,
	}
}
