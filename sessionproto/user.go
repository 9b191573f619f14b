package sessionproto

// Numeric errors of the user commands.
const (
	CodeNotOperator = 290 // WAL: not root or a member of the operator group, or not on the local socket
	CodeRateLimited = 291 // WAL: too many broadcasts from this user; try later
	CodeUnverified  = 292 // STA, BLK: the session's identity is a claim, not verified
	CodeStoreFailed = 293 // BLK: the block store did not answer; try again
)

// DefaultAdminGroup is the operator group whose members may broadcast (WAL)
// besides root; the Debian package creates it. The server checks it and the
// msp CLI names it in its help.
const DefaultAdminGroup = "msprelay-admin"
