package msp

// DefaultAddr is the MSP port, TCP and UDP (RFC 1312).
const DefaultAddr = ":18"

// DefaultServer returns a Server with every limit and timeout set to its
// default, the settings half of the package's net/http-like Server (it has
// no separate Config); the caller sets Handler and Logger. A zero field
// means the same default.
func DefaultServer() *Server {
	return &Server{
		Addr:          DefaultAddr,
		ReadTimeout:   DefaultReadTimeout,
		IdleTimeout:   DefaultIdleTimeout,
		WriteTimeout:  DefaultWriteTimeout,
		MaxConns:      DefaultMaxConns,
		MaxInflight:   DefaultMaxInflight,
		PacketBatch:   DefaultPacketBatch,
		MaxPipeline:   DefaultMaxPipeline,
		DedupWindow:   DefaultDedupWindow,
		DedupEntries:  DefaultDedupEntries,
		MaxConnsPerIP: DefaultMaxConnsPerIP,
		RatePerIP:     DefaultRatePerIP,
		RateBurst:     DefaultRateBurst,
		MaxSources:    DefaultMaxSources,
		StallGrace:    DefaultStallGrace,
	}
}
