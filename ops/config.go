package ops

// DefaultMaxStreams caps concurrent /api/v1/events streams when
// Config.MaxStreams is zero.
const DefaultMaxStreams = 64

// DefaultConfig returns the defaults of a Server's settings; the caller
// adds Addr, Registry, Checks and Source. A zero field of a Config passed
// to New means the same default.
func DefaultConfig() Config {
	return Config{MaxStreams: DefaultMaxStreams}
}
