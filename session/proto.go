package session

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

// protoError is a reading or command error the server answers with a
// numeric line. Fatal errors leave the byte stream out of step (or the peer
// is plainly not speaking the protocol), so the connection is closed.
type protoError struct {
	code  int
	trid  uint32
	text  string
	fatal bool
	quiet bool // already counted in a rate-limited log: do not log again
}

func (e *protoError) Error() string {
	return fmt.Sprintf("session: %d %d %s", e.code, e.trid, e.text)
}

func fatalf(code int, format string, args ...any) *protoError {
	return &protoError{code: code, text: fmt.Sprintf(format, args...), fatal: true}
}

func errf(code int, trid uint32, format string, args ...any) *protoError {
	return &protoError{code: code, trid: trid, text: fmt.Sprintf(format, args...)}
}

// frame is one parsed line plus its payload.
type frame struct {
	cmd     string // three upper-case letters, or three digits for an error line
	code    int    // the number of an error line, 0 otherwise
	trid    uint32
	hasTrID bool
	args    []string // tokens after the TrID, still escaped; no payload length
	text    string   // free text of error lines and textual replies
	payload []byte   // nil when the command has none
}

// grammar says how one direction of the protocol is framed.
type grammar struct {
	maxLine, maxPayload int
	numeric             bool                                 // error lines ("911 3 text") may appear
	noTrID              func(cmd string) bool                // commands without a TrID
	textual             func(cmd string) bool                // rest of line after TrID is free text
	payload             func(cmd string, args []string) bool // last token is a payload length
}

// clientGrammar frames what clients send.
var clientGrammar = grammar{
	maxLine:    MaxLine,
	maxPayload: MaxPayload,
	noTrID:     func(cmd string) bool { return cmd == "PNG" || cmd == "OUT" },
	textual:    func(string) bool { return false },
	payload:    func(cmd string, _ []string) bool { return cmd == "SND" || cmd == "MSG" || cmd == "WAL" },
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
	payload: func(cmd string, args []string) bool {
		switch cmd {
		case "MSG", "WHO", "LST":
			return true
		case "NAM":
			return len(args) > 0 && args[0] == "LST"
		}
		return false
	},
}

// frameReader reads frames of one grammar from a byte stream. It is not safe
// for concurrent use; its owner is the one goroutine that reads the stream.
//
// With a pool, the read buffer is borrowed only while a frame is arriving:
// read waits for the first octet of the next frame in a one-octet array of
// its own, then borrows a *bufio.Reader (of g.maxLine octets) from the pool
// and returns it once it has read a frame and nothing more is buffered. An
// idle connection then holds no buffer. Without a pool, br is its own.
type frameReader struct {
	br   *bufio.Reader // nil while borrowed and returned
	g    *grammar
	src  io.Reader
	pool *sync.Pool // nil: br is made once and kept
	pre  firstOctet
}

// firstOctet is the octet a pooled frameReader read while waiting, served
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

func newFrameReader(r io.Reader, g *grammar) *frameReader {
	return &frameReader{br: bufio.NewReaderSize(r, g.maxLine), g: g, src: r}
}

// newPooledFrameReader is a frameReader that borrows its buffer from pool,
// whose New must be nil or make *bufio.Reader of g.maxLine octets.
func newPooledFrameReader(r io.Reader, g *grammar, pool *sync.Pool) *frameReader {
	return &frameReader{g: g, src: r, pool: pool, pre: firstOctet{src: r}}
}

// borrow waits for the next octet, then takes a buffer from the pool.
func (r *frameReader) borrow() error {
	for {
		n, err := r.src.Read(r.pre.b[:])
		if n == 1 {
			break
		}
		if err != nil {
			return err
		}
	}
	r.pre.has = true
	br, ok := r.pool.Get().(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(&r.pre, r.g.maxLine)
	}
	br.Reset(&r.pre)
	r.br = br
	return nil
}

// release gives the buffer back when it holds nothing unread.
func (r *frameReader) release() {
	if r.pool == nil || r.br == nil || r.br.Buffered() > 0 || r.pre.has {
		return
	}
	r.br.Reset(nil)
	r.pool.Put(r.br)
	r.br = nil
}

// rest is what is left of the stream after the frames read so far.
func (r *frameReader) rest() io.Reader {
	if r.br != nil {
		return r.br
	}
	return r.src
}

// read returns the next frame. I/O errors are returned as they are (io.EOF
// at a frame boundary); protocol errors are *protoError.
func (r *frameReader) read() (*frame, error) {
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

// readFrame is read with a buffer in hand.
func (r *frameReader) readFrame() (*frame, error) {
	line, err := r.br.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return nil, fatalf(CodeTooLarge, "line longer than %d octets", r.g.maxLine)
	case err == io.EOF && len(line) > 0:
		return nil, fatalf(CodeSyntax, "connection closed inside a line")
	case err != nil:
		return nil, err
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, fatalf(CodeSyntax, "line must end with CR LF")
	}
	f, perr := r.g.parseLine(line[:len(line)-2])
	if perr != nil {
		return nil, perr
	}
	if f.payload == nil {
		return f, nil
	}
	// parseLine left the length in payload's capacity; read that many octets.
	n := cap(f.payload)
	if n > r.g.maxPayload {
		return nil, fatalf(CodeTooLarge, "payload of %d octets, limit %d", n, r.g.maxPayload)
	}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(r.br, f.payload); err != nil {
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			return nil, fatalf(CodeSyntax, "connection closed inside a payload")
		}
		return nil, err
	}
	return f, nil
}

// parseLine parses one line without its CR LF. For a payload command it
// returns a frame whose payload is an empty slice with capacity = length.
func (g *grammar) parseLine(line []byte) (*frame, *protoError) {
	for i, c := range line {
		if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) {
			return nil, fatalf(CodeSyntax, "octet 0x%02X at offset %d is not allowed in a line", c, i)
		}
	}
	s := string(line)
	cmd, rest, _ := strings.Cut(s, " ")
	f := &frame{cmd: cmd}
	switch {
	case isCommand(cmd):
	case g.numeric && isNumeric(cmd):
		f.code, _ = strconv.Atoi(cmd)
		return f, g.parseTrIDText(f, rest, s)
	default:
		return nil, fatalf(CodeSyntax, "%q is not a command", truncate(cmd, 16))
	}
	if g.textual(cmd) {
		return f, g.parseTrIDText(f, rest, s)
	}
	var toks []string
	if rest != "" || len(s) > len(cmd) {
		toks = strings.Split(rest, " ")
	}
	if len(toks) > maxTokens {
		return nil, fatalf(CodeSyntax, "more than %d arguments", maxTokens)
	}
	for _, t := range toks {
		if t == "" {
			// Without a clean token list we cannot find a payload length.
			return nil, fatalf(CodeSyntax, "empty argument (double or trailing space)")
		}
	}
	if !g.noTrID(cmd) {
		if len(toks) == 0 {
			return nil, g.tokenError(cmd, toks, errf(CodeSyntax, 0, "%s needs a transaction id", cmd))
		}
		id, ok := parseTrID(toks[0])
		if !ok {
			return nil, g.tokenError(cmd, toks, errf(CodeSyntax, 0, "bad transaction id %q", truncate(toks[0], 16)))
		}
		f.trid, f.hasTrID = id, true
		toks = toks[1:]
	}
	if g.payload(cmd, toks) {
		if len(toks) == 0 {
			return nil, fatalf(CodeSyntax, "%s needs a payload length", cmd)
		}
		n, ok := parseLength(toks[len(toks)-1])
		if !ok {
			return nil, fatalf(CodeSyntax, "bad payload length %q", truncate(toks[len(toks)-1], 16))
		}
		toks = toks[:len(toks)-1]
		f.payload = make([]byte, 0, min(n, g.maxPayload+1))
		if n > g.maxPayload {
			return nil, fatalf(CodeTooLarge, "payload of %d octets, limit %d", n, g.maxPayload)
		}
	}
	f.args = toks
	return f, nil
}

// tokenError makes a TrID error fatal when the command would carry a
// payload: its length cannot be trusted, so the stream is out of step.
func (g *grammar) tokenError(cmd string, toks []string, e *protoError) *protoError {
	if g.payload(cmd, toks) || g.payload(cmd, nil) {
		e.fatal = true
	}
	return e
}

// parseTrIDText parses "TrID[ text]" after an error code or textual command.
func (g *grammar) parseTrIDText(f *frame, rest, line string) *protoError {
	id, text, _ := strings.Cut(rest, " ")
	n, ok := parseTrID(id)
	if !ok {
		return fatalf(CodeSyntax, "bad transaction id in %q", truncate(line, 32))
	}
	f.trid, f.hasTrID, f.text = n, true, text
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

// parseTrID accepts 1 to 10 decimal digits with a value that fits 32 bits.
func parseTrID(s string) (uint32, bool) {
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

// appendFrame encodes f; the inverse of frameReader.read for well-formed
// frames. Arguments must already be escaped tokens and text must be clean
// (see cleanText).
func appendFrame(dst []byte, f *frame) []byte {
	dst = append(dst, f.cmd...)
	if f.hasTrID {
		dst = append(dst, ' ')
		dst = strconv.AppendUint(dst, uint64(f.trid), 10)
	}
	if f.code != 0 || f.text != "" {
		if f.text != "" {
			dst = append(dst, ' ')
			dst = append(dst, f.text...)
		}
		return append(dst, '\r', '\n')
	}
	for _, a := range f.args {
		dst = append(dst, ' ')
		dst = append(dst, a...)
	}
	if f.payload != nil {
		dst = append(dst, ' ')
		dst = strconv.AppendInt(dst, int64(len(f.payload)), 10)
		dst = append(dst, '\r', '\n')
		return append(dst, f.payload...)
	}
	return append(dst, '\r', '\n')
}

// line builds a frame without payload from a command, optional TrID and
// escaped arguments.
func line(cmd string, trid uint32, hasTrID bool, args ...string) []byte {
	return appendFrame(nil, &frame{cmd: cmd, trid: trid, hasTrID: hasTrID, args: args})
}

// withPayload builds a frame whose payload length follows args.
func withPayload(cmd string, trid uint32, hasTrID bool, payload []byte, args ...string) []byte {
	if payload == nil {
		payload = []byte{}
	}
	return appendFrame(nil, &frame{cmd: cmd, trid: trid, hasTrID: hasTrID, args: args, payload: payload})
}

// textLine builds an error line or ACK/NAK reply with free text, cleaned
// and cut to fit a server line.
func textLine(cmd string, code int, trid uint32, text string) []byte {
	room := MaxServerLine - len(cmd) - 11 - 4
	return appendFrame(nil, &frame{cmd: cmd, code: code, trid: trid, hasTrID: true, text: cleanText(text, room)})
}

// errorLine builds "<code> <trid> <text>".
func errorLine(code int, trid uint32, text string) []byte {
	return textLine(strconv.Itoa(code), code, trid, text)
}

// cleanText makes s safe for the free-text end of a line: octets a line may
// not hold become '?', and it is cut to at most max octets.
func cleanText(s string, max int) string {
	b := []byte(truncate(s, max))
	for i, c := range b {
		if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) {
			b[i] = '?'
		}
	}
	return strings.TrimRight(string(b), " ")
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// tokenSpecial reports whether an octet must be %-escaped inside a token:
// the escape itself, the list separator, space and everything a line may not
// hold.
func tokenSpecial(c byte) bool {
	return c == '%' || c == ',' || c <= 0x20 || c == 0x7f || (c >= 0x80 && c <= 0xa0)
}

// headerSpecial reports whether an octet must be %-escaped in a MSG header
// value: the escape and control octets; spaces are fine there.
func headerSpecial(c byte) bool {
	return c == '%' || c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0)
}

// escape writes s with the octets special reports as %XX.
// appendEscaped appends s to dst escaped as escape does.
func appendEscaped(dst []byte, s string, special func(byte) bool) []byte {
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

func escape(s string, special func(byte) bool) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if special(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	return string(appendEscaped(make([]byte, 0, len(s)+2*n), s, special))
}

// errBadEscape is returned for a '%' not followed by two hex digits.
var errBadEscape = errors.New("bad %-escape")

// unescape reverses escape.
func unescape(s string) (string, error) {
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
			return "", fmt.Errorf("%w at offset %d", errBadEscape, i)
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return "", fmt.Errorf("%w at offset %d", errBadEscape, i)
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

// encodeToken escapes a name for use as a line argument. The empty string is
// written "-", and a literal "-" as "%2D", so that every argument is a
// non-empty token.
func encodeToken(s string) string {
	switch s {
	case "":
		return "-"
	case "-":
		return "%2D"
	}
	return escape(s, tokenSpecial)
}

// decodeToken reverses encodeToken.
func decodeToken(t string) (string, error) {
	if t == "-" {
		return "", nil
	}
	return unescape(t)
}
