package presence

// DefaultSubscriberBuffer is the event backlog of a subscriber when
// Config.SubscriberBuffer is zero.
const DefaultSubscriberBuffer = 4096

// DefaultConfig returns the defaults of a Directory's settings; the caller
// adds Name (and for gossip the addresses, seeds and key). A zero field of
// a Config passed to New means the same default.
func DefaultConfig() Config {
	return Config{
		SubscriberBuffer: DefaultSubscriberBuffer,
		Gossip:           GossipConfig{Profile: DefaultProfile, RejoinEvery: DefaultRejoinEvery},
	}
}
