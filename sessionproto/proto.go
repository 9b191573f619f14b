// Package sessionproto is the wire grammar of the msprelay session protocol
// (docs/SESSION.md), shared by the server (package session) and the client
// (package sessionclient): framing and its size limits, command and error
// codes, token and header escaping, the MSG payload as a client sees it
// ([Message]), WHO and list payloads, conversation payload headers and the
// secret challenge. It is a leaf: it links no server code.
package sessionproto

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
)

// ProtocolVersion is the protocol name a client offers in VER.
const ProtocolVersion = "MSPS1"

// ProtocolVersionAcks is MSPS1 plus end-to-end acknowledgements: a client
// that offers it in VER (before USR) acknowledges every MSG with
// `ACK TrID id` once it has the message safe (shown, written out). The node
// then counts a message as delivered only when acknowledged, and puts one
// whose session ends, or that is not acknowledged in time, back in the
// recipient's mailbox.
const ProtocolVersionAcks = "MSPS2"

// NoTerminal is the terminal name that signs in without a terminal: the
// session can look up presence, watch and send, but is not present and
// receives no messages. ValidTerm refuses "*", so it cannot clash.
const NoTerminal = "*"

// Size limits. Client lines and payloads are small because a client only
// ever sends commands and MSP-sized texts; server payloads are larger so that
// WHO and list replies fit.
const (
	// MaxLine bounds a client command line, CR LF included.
	MaxLine = 1024
	// MaxPayload bounds a client payload (the text of SND).
	MaxPayload = 4096
	// MaxServerLine bounds a server line, CR LF included.
	MaxServerLine = 4096
	// MaxServerPayload bounds a server payload (MSG, WHO, LST, NAM LST).
	MaxServerPayload = 64 << 10
	// maxTokens bounds the space-separated tokens of one line.
	maxTokens = 16
	// maxLenDigits bounds a payload length token, far above any limit.
	maxLenDigits = 9
)

// Error codes. They follow MSN's numbering where MSN had an equivalent.
const (
	CodeSyntax          = 200 // malformed line, bad TrID, wrong number of arguments
	CodeBadParam        = 201 // an argument has a bad value (state, list, escape)
	CodeUnknownCommand  = 202 // no such command
	CodeTooLarge        = 203 // line or payload over the limit
	CodeBadText         = 204 // SND text or addressing breaks the MSP rules
	CodeBadUser         = 205 // invalid user or alias name
	CodeBadTerm         = 206 // invalid terminal name
	CodeAlreadySignedIn = 207 // USR on a signed-in session
	CodeNameReserved    = 208 // alias is a reserved name (root, postmaster, ...)
	CodeNameTaken       = 209 // alias is a known user's name or another user's alias
	CodeListFull        = 210 // watch, block or alias list at its cap
	CodeInList          = 215 // already in the list
	CodeNotInList       = 216 // not in the list
	CodeNotAllowed      = 280 // not allowed for this session (no terminal)
	CodeNameUnchecked   = 282 // NAM ADD: the known-users store did not answer; try again
	CodeInternal        = 500 // server fault
	CodeServerBusy      = 600 // too many sessions, or the server is stopping
	CodeUnexpected      = 715 // command out of order (QRY without CHL, ...)
	CodeBadVersion      = 720 // no protocol version in common
	CodeAuthFailed      = 911 // authentication failed
	CodeNotSignedIn     = 913 // command needs a signed-in session
	CodeTermReserved    = 914 // USR at terminal console by a user not allowed it
)

// Error is a numeric error reply from the server.
type Error struct {
	Code int
	Text string
}

// Error returns "session: <code> <text>".
func (e *Error) Error() string {
	if e.Text == "" {
		return fmt.Sprintf("session: %d", e.Code)
	}
	return fmt.Sprintf("session: %d %s", e.Code, e.Text)
}

// IsCode reports whether err is (or wraps) an *Error with the given code.
func IsCode(err error, code int) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}

// Fault is a reading or command error the server answers with a
// numeric line. Fatal errors leave the byte stream out of step (or the peer
// is plainly not speaking the protocol), so the connection is closed.
type Fault struct {
	Code  int
	TrID  uint32
	Text  string
	Fatal bool
	Quiet bool // already counted in a rate-limited log: do not log again
}

// Error returns "session: <code> <trid> <text>".
func (e *Fault) Error() string {
	return fmt.Sprintf("session: %d %d %s", e.Code, e.TrID, e.Text)
}

// Fatalf makes a fatal Fault: the connection is closed after its line.
func Fatalf(code int, format string, args ...any) *Fault {
	return &Fault{Code: code, Text: fmt.Sprintf(format, args...), Fatal: true}
}

// Errf makes a Fault answered on the command's TrID.
func Errf(code int, trid uint32, format string, args ...any) *Fault {
	return &Fault{Code: code, TrID: trid, Text: fmt.Sprintf(format, args...)}
}

// Frame is one parsed line plus its payload.
type Frame struct {
	Cmd     string // three upper-case letters, or three digits for an error line
	Code    int    // the number of an error line, 0 otherwise
	TrID    uint32
	HasTrID bool
	Args    []string // tokens after the TrID, still escaped; no payload length
	Text    string   // free text of error lines and textual replies
	Payload []byte   // nil when the command has none
}

// grammar says how one direction of the protocol is framed.
type grammar struct {
	maxLine, maxPayload int
	numeric             bool                                 // error lines ("911 3 text") may appear
	noTrID              func(cmd string) bool                // commands without a TrID
	textual             func(cmd string) bool                // rest of line after TrID is free text
	hasPayload          func(cmd string, args []string) bool // last token is a payload length
}

// clientGrammar frames what clients send.
var clientGrammar = grammar{
	maxLine:    MaxLine,
	maxPayload: MaxPayload,
	noTrID:     func(cmd string) bool { return cmd == "PNG" || cmd == "OUT" },
	textual:    func(string) bool { return false },
	hasPayload: func(cmd string, _ []string) bool { return cmd == "SND" || cmd == "MSG" || cmd == "WAL" },
}

// serverGrammar frames what servers send.
var serverGrammar = grammar{
	maxLine:    MaxServerLine,
	maxPayload: MaxServerPayload,
	numeric:    true,
	noTrID: func(cmd string) bool {
		switch cmd {
		case "NLN", "FLN", "MSG", "OUT", "QNG", "JOI", "BYE", "RNG":
			return true
		}
		return false
	},
	textual: func(cmd string) bool { return cmd == "ACK" || cmd == "NAK" },
	hasPayload: func(cmd string, args []string) bool {
		switch cmd {
		case "MSG", "WHO", "LST":
			return true
		case "NAM":
			return len(args) > 0 && args[0] == "LST"
		}
		return false
	},
}

// FrameReader reads frames of one grammar from a byte stream. It is not safe
// for concurrent use; its owner is the one goroutine that reads the stream.
//
// With a pool, the read buffer is borrowed only while a frame is arriving:
// Read waits for the first octet of the next frame in a one-octet array of
// its own, then borrows a *bufio.Reader (of the grammar's line limit) from
// the pool and returns it once it has read a frame and nothing more is
// buffered. An idle connection then holds no buffer. Without a pool, br
// is its own.
type FrameReader struct {
	br   *bufio.Reader // nil while borrowed and returned
	g    *grammar
	src  io.Reader
	pool *sync.Pool // nil: br is made once and kept
	pre  firstOctet
}

// firstOctet is the octet a pooled FrameReader read while waiting, served
// before the rest of src.
type firstOctet struct {
	b   [1]byte
	has bool
	src io.Reader
}

func (f *firstOctet) Read(p []byte) (int, error) {
	if f.has && len(p) > 0 {
		p[0] = f.b[0]
		f.has = false
		return 1, nil
	}
	return f.src.Read(p)
}

// NewClientReader reads what clients send (the server's side of a
// connection).
func NewClientReader(r io.Reader) *FrameReader { return newFrameReader(r, &clientGrammar) }

// NewPooledClientReader is NewClientReader borrowing its buffer from pool
// while a frame arrives; pool's New must be nil or make *bufio.Reader of
// MaxLine octets. A server with many idle sessions shares one pool.
func NewPooledClientReader(r io.Reader, pool *sync.Pool) *FrameReader {
	return &FrameReader{g: &clientGrammar, src: r, pool: pool, pre: firstOctet{src: r}}
}

// NewServerReader reads what servers send (the client's side of a
// connection).
func NewServerReader(r io.Reader) *FrameReader { return newFrameReader(r, &serverGrammar) }

func newFrameReader(r io.Reader, g *grammar) *FrameReader {
	return &FrameReader{br: bufio.NewReaderSize(r, g.maxLine), g: g, src: r}
}

// Idle reports whether a pooled reader holds nothing unread: no buffer and
// no octet read ahead. Only then may its owner stop reading (and park the
// connection) without losing input.
func (r *FrameReader) Idle() bool { return r.pool != nil && r.br == nil && !r.pre.has }

// Await waits for the first octet of the next frame without taking a
// buffer, so that a caller can wait with a short deadline and, on a
// timeout, hand the idle connection to a poller (session's parking).
// The octet is kept for the next Read. It is a no-op unless Idle.
func (r *FrameReader) Await() error {
	if !r.Idle() {
		return nil
	}
	for {
		n, err := r.src.Read(r.pre.b[:])
		if n == 1 {
			r.pre.has = true
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// borrow waits for the next octet, unless Await has it already, then
// takes a buffer from the pool.
func (r *FrameReader) borrow() error {
	if err := r.Await(); err != nil {
		return err
	}
	br, ok := r.pool.Get().(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(&r.pre, r.g.maxLine)
	}
	br.Reset(&r.pre)
	r.br = br
	return nil
}

// release gives the buffer back when it holds nothing unread.
func (r *FrameReader) release() {
	if r.pool == nil || r.br == nil || r.br.Buffered() > 0 || r.pre.has {
		return
	}
	r.br.Reset(nil)
	r.pool.Put(r.br)
	r.br = nil
}

// Rest is the stream after the last frame Read returned: what is buffered
// first, then the rest of the underlying reader. A server drains it before
// closing so that the client reads its last line instead of a reset.
func (r *FrameReader) Rest() io.Reader {
	if r.br != nil {
		return r.br
	}
	return r.src
}

// Read returns the next frame. I/O errors are returned as they are (io.EOF
// at a frame boundary); protocol errors are *Fault.
func (r *FrameReader) Read() (*Frame, error) {
	if r.br == nil {
		if err := r.borrow(); err != nil {
			return nil, err
		}
	}
	// No defer here: the reader parks in this frame while idle, and a
	// frame with a deferred call kept the runtime from shrinking the
	// idle reader's stack from 8 to 4 KiB (measured with mspbench).
	f, err := r.readFrame()
	r.release()
	return f, err
}

// readFrame is Read with a buffer in hand.
func (r *FrameReader) readFrame() (*Frame, error) {
	line, err := r.br.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return nil, Fatalf(CodeTooLarge, "line longer than %d octets", r.g.maxLine)
	case err == io.EOF && len(line) > 0:
		return nil, Fatalf(CodeSyntax, "connection closed inside a line")
	case err != nil:
		return nil, err
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, Fatalf(CodeSyntax, "line must end with CR LF")
	}
	f, perr := r.g.parseLine(line[:len(line)-2])
	if perr != nil {
		return nil, perr
	}
	if f.Payload == nil {
		return f, nil
	}
	// parseLine left the length in payload's capacity; read that many octets.
	n := cap(f.Payload)
	if n > r.g.maxPayload {
		return nil, Fatalf(CodeTooLarge, "payload of %d octets, limit %d", n, r.g.maxPayload)
	}
	f.Payload = make([]byte, n)
	if _, err := io.ReadFull(r.br, f.Payload); err != nil {
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			return nil, Fatalf(CodeSyntax, "connection closed inside a payload")
		}
		return nil, err
	}
	return f, nil
}

// parseLine parses one line without its CR LF. For a payload command it
// returns a frame whose payload is an empty slice with capacity = length.
func (g *grammar) parseLine(line []byte) (*Frame, *Fault) {
	for i, c := range line {
		if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) {
			return nil, Fatalf(CodeSyntax, "octet 0x%02X at offset %d is not allowed in a line", c, i)
		}
	}
	s := string(line)
	cmd, rest, _ := strings.Cut(s, " ")
	f := &Frame{Cmd: cmd}
	switch {
	case isCommand(cmd):
	case g.numeric && isNumeric(cmd):
		f.Code, _ = strconv.Atoi(cmd)
		return f, g.parseTrIDText(f, rest, s)
	default:
		return nil, Fatalf(CodeSyntax, "%q is not a command", Truncate(cmd, 16))
	}
	if g.textual(cmd) {
		return f, g.parseTrIDText(f, rest, s)
	}
	var toks []string
	if rest != "" || len(s) > len(cmd) {
		toks = strings.Split(rest, " ")
	}
	limit := maxTokens
	if cmd == "ACK" {
		limit = MaxAckIDs + 1 // a TrID and MaxAckIDs ids (MSPS3)
	}
	if len(toks) > limit {
		return nil, Fatalf(CodeSyntax, "more than %d arguments", limit)
	}
	for _, t := range toks {
		if t == "" {
			// Without a clean token list we cannot find a payload length.
			return nil, Fatalf(CodeSyntax, "empty argument (double or trailing space)")
		}
	}
	if !g.noTrID(cmd) {
		if len(toks) == 0 {
			return nil, g.tokenError(cmd, toks, Errf(CodeSyntax, 0, "%s needs a transaction id", cmd))
		}
		id, ok := ParseTrID(toks[0])
		if !ok {
			return nil, g.tokenError(cmd, toks, Errf(CodeSyntax, 0, "bad transaction id %q", Truncate(toks[0], 16)))
		}
		f.TrID, f.HasTrID = id, true
		toks = toks[1:]
	}
	if g.hasPayload(cmd, toks) {
		if len(toks) == 0 {
			return nil, Fatalf(CodeSyntax, "%s needs a payload length", cmd)
		}
		n, ok := parseLength(toks[len(toks)-1])
		if !ok {
			return nil, Fatalf(CodeSyntax, "bad payload length %q", Truncate(toks[len(toks)-1], 16))
		}
		toks = toks[:len(toks)-1]
		f.Payload = make([]byte, 0, min(n, g.maxPayload+1))
		if n > g.maxPayload {
			return nil, Fatalf(CodeTooLarge, "payload of %d octets, limit %d", n, g.maxPayload)
		}
	}
	f.Args = toks
	return f, nil
}

// tokenError makes a TrID error fatal when the command would carry a
// payload: its length cannot be trusted, so the stream is out of step.
func (g *grammar) tokenError(cmd string, toks []string, e *Fault) *Fault {
	if g.hasPayload(cmd, toks) || g.hasPayload(cmd, nil) {
		e.Fatal = true
	}
	return e
}

// parseTrIDText parses "TrID[ text]" after an error code or textual command.
func (g *grammar) parseTrIDText(f *Frame, rest, line string) *Fault {
	id, text, _ := strings.Cut(rest, " ")
	n, ok := ParseTrID(id)
	if !ok {
		return Fatalf(CodeSyntax, "bad transaction id in %q", Truncate(line, 32))
	}
	f.TrID, f.HasTrID, f.Text = n, true, text
	return nil
}

func isCommand(s string) bool {
	return len(s) == 3 && isUpper(s[0]) && isUpper(s[1]) && isUpper(s[2])
}

func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }

func isNumeric(s string) bool {
	return len(s) == 3 && isDigit(s[0]) && s[0] != '0' && isDigit(s[1]) && isDigit(s[2])
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// ParseTrID accepts 1 to 10 decimal digits with a value that fits 32 bits.
func ParseTrID(s string) (uint32, bool) {
	if s == "" || len(s) > 10 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err == nil
}

// parseLength accepts 1 to maxLenDigits decimal digits.
func parseLength(s string) (int, bool) {
	if s == "" || len(s) > maxLenDigits {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}

// AppendFrame encodes f; the inverse of FrameReader.Read for well-formed
// frames. Arguments must already be escaped tokens and text must be clean
// (see cleanText).
func AppendFrame(dst []byte, f *Frame) []byte {
	dst = append(dst, f.Cmd...)
	if f.HasTrID {
		dst = append(dst, ' ')
		dst = strconv.AppendUint(dst, uint64(f.TrID), 10)
	}
	if f.Code != 0 || f.Text != "" {
		if f.Text != "" {
			dst = append(dst, ' ')
			dst = append(dst, f.Text...)
		}
		return append(dst, '\r', '\n')
	}
	for _, a := range f.Args {
		dst = append(dst, ' ')
		dst = append(dst, a...)
	}
	if f.Payload != nil {
		dst = append(dst, ' ')
		dst = strconv.AppendInt(dst, int64(len(f.Payload)), 10)
		dst = append(dst, '\r', '\n')
		return append(dst, f.Payload...)
	}
	return append(dst, '\r', '\n')
}

// Line builds a frame without payload from a command, optional TrID and
// escaped arguments.
func Line(cmd string, trid uint32, hasTrID bool, args ...string) []byte {
	return AppendFrame(nil, &Frame{Cmd: cmd, TrID: trid, HasTrID: hasTrID, Args: args})
}

// WithPayload builds a frame whose payload length follows args.
func WithPayload(cmd string, trid uint32, hasTrID bool, payload []byte, args ...string) []byte {
	if payload == nil {
		payload = []byte{}
	}
	return AppendFrame(nil, &Frame{Cmd: cmd, TrID: trid, HasTrID: hasTrID, Args: args, Payload: payload})
}

// TextLine builds an error line or ACK/NAK reply with free text, cleaned
// and cut to fit a server line.
func TextLine(cmd string, code int, trid uint32, text string) []byte {
	room := MaxServerLine - len(cmd) - 11 - 4
	return AppendFrame(nil, &Frame{Cmd: cmd, Code: code, TrID: trid, HasTrID: true, Text: CleanText(text, room)})
}

// ErrorLine builds "<code> <trid> <text>".
func ErrorLine(code int, trid uint32, text string) []byte {
	return TextLine(strconv.Itoa(code), code, trid, text)
}

// CleanText makes s safe for the free-text end of a line: octets a line may
// not hold become '?', and it is cut to at most max octets.
func CleanText(s string, max int) string {
	b := []byte(Truncate(s, max))
	for i, c := range b {
		if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) {
			b[i] = '?'
		}
	}
	return strings.TrimRight(string(b), " ")
}

// Truncate cuts s to at most n octets.
func Truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// TokenSpecial reports whether an octet must be %-escaped inside a token:
// the escape itself, the list separator, space and everything a line may not
// hold.
func TokenSpecial(c byte) bool {
	return c == '%' || c == ',' || c <= 0x20 || c == 0x7f || (c >= 0x80 && c <= 0xa0)
}

// HeaderSpecial reports whether an octet must be %-escaped in a MSG header
// value: the escape and control octets; spaces are fine there.
func HeaderSpecial(c byte) bool {
	return c == '%' || c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0)
}

// escape writes s with the octets special reports as %XX.
// appendEscaped appends s to dst escaped as escape does.
func AppendEscaped(dst []byte, s string, special func(byte) bool) []byte {
	const hexdig = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		if c := s[i]; special(c) {
			dst = append(dst, '%', hexdig[c>>4], hexdig[c&15])
		} else {
			dst = append(dst, c)
		}
	}
	return dst
}

// Escape returns s with the octets special reports as %XX.
func Escape(s string, special func(byte) bool) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if special(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	return string(AppendEscaped(make([]byte, 0, len(s)+2*n), s, special))
}

// ErrBadEscape is returned for a '%' not followed by two hex digits.
var ErrBadEscape = errors.New("bad %-escape")

// Unescape reverses escape.
func Unescape(s string) (string, error) {
	i := strings.IndexByte(s, '%')
	if i < 0 {
		return s, nil
	}
	b := make([]byte, 0, len(s))
	b = append(b, s[:i]...)
	for ; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			b = append(b, c)
			continue
		}
		if i+2 >= len(s) {
			return "", fmt.Errorf("%w at offset %d", ErrBadEscape, i)
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return "", fmt.Errorf("%w at offset %d", ErrBadEscape, i)
		}
		b = append(b, hi<<4|lo)
		i += 2
	}
	return string(b), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// EncodeToken escapes a name for use as a line argument. The empty string is
// written "-", and a literal "-" as "%2D", so that every argument is a
// non-empty token.
func EncodeToken(s string) string {
	switch s {
	case "":
		return "-"
	case "-":
		return "%2D"
	}
	return Escape(s, TokenSpecial)
}

// DecodeToken reverses encodeToken.
func DecodeToken(t string) (string, error) {
	if t == "-" {
		return "", nil
	}
	return Unescape(t)
}
