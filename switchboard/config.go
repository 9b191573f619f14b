package switchboard

import "fmt"

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

// checkNumbers refuses a negative number where the field's doc gives a
// negative value no meaning (InboundRate's turns the limit off): zero
// means the default, and nothing is rewritten silently.
func (c Config) checkNumbers() error {
	for _, f := range []struct {
		name string
		neg  bool
	}{
		{"ActivityEvery", c.ActivityEvery < 0}, {"ForwardTimeout", c.ForwardTimeout < 0},
		{"AckTimeout", c.AckTimeout < 0}, {"DedupWindow", c.DedupWindow < 0},
		{"MaxServing", c.MaxServing < 0}, {"StoreTimeout", c.StoreTimeout < 0},
		{"InboundBurst", c.InboundBurst < 0},
	} {
		if f.neg {
			return fmt.Errorf("switchboard: Config.%s is negative: want above 0, or 0 for the default", f.name)
		}
	}
	return nil
}
