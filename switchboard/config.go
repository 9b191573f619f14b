package switchboard

// DefaultConfig returns the defaults of every setting of a Switchboard;
// the caller adds the Directory, NATS, Mailbox and the hooks. A zero field
// of a Config passed to New means the same default (AckTimeout: half of
// ForwardTimeout).
func DefaultConfig() Config {
	return Config{
		ActivityEvery:  DefaultActivityEvery,
		ForwardTimeout: DefaultForwardTimeout,
		DedupWindow:    DefaultDedupWindow,
		MaxServing:     DefaultMaxServing,
		Offline:        OfflineQueue,
		StoreTimeout:   DefaultStoreTimeout,
		InboundRate:    DefaultInboundRate,
		InboundBurst:   DefaultInboundBurst,
	}
}
