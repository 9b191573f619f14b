package main

import (
	"bufio"
	"io"
	"sync"
	"unicode/utf8"
)

// lineEditor is the input line of `msp chat` on a terminal in raw mode:
// it echoes what is typed itself, so that a line arriving from the others
// is printed above the input (the input line is erased, the line written,
// the prompt and what was typed so far redrawn) instead of through it.
//
// run, on the goroutine that owns stdin, reads keys; Write, from the
// printing goroutine, prints output lines; mu guards buf and serialises
// everything written to out.
type lineEditor struct {
	out    io.Writer
	prompt string

	mu  sync.Mutex
	buf []rune
}

// maxEditLine bounds the input line in runes.
const maxEditLine = 4096

// Keys the editor acts on; others below 0x20 are ignored.
const (
	keyCtrlC     = 0x03
	keyCtrlD     = 0x04
	keyBackspace = 0x08
	keyEnter     = '\r'
	keyNewline   = '\n'
	keyCtrlU     = 0x15
	keyCtrlW     = 0x17
	keyDelete    = 0x7f
	keyEscape    = 0x1b
)

// Write prints p (whole lines) above the input line.
func (ed *lineEditor) Write(p []byte) (int, error) {
	ed.mu.Lock()
	defer ed.mu.Unlock()
	if _, err := io.WriteString(ed.out, "\r\x1b[K"); err != nil {
		return 0, err
	}
	if _, err := ed.out.Write(p); err != nil {
		return 0, err
	}
	return len(p), ed.redrawLocked()
}

func (ed *lineEditor) redrawLocked() error {
	_, err := io.WriteString(ed.out, "\r\x1b[K"+ed.prompt+string(ed.buf))
	return err
}

// run reads keys from in until EOF, Ctrl-D on an empty line, Ctrl-C or
// stop, and sends each finished line on lines (then closes it). It returns
// the read error, if any.
func (ed *lineEditor) run(in io.Reader, lines chan<- string, stop <-chan struct{}) error {
	defer close(lines)
	br := bufio.NewReader(in)
	ed.mu.Lock()
	ed.redrawLocked()
	ed.mu.Unlock()
	var pending []byte // an incomplete UTF-8 sequence
	for {
		c, err := br.ReadByte()
		if err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		ed.mu.Lock()
		line, done, send := ed.keyLocked(c, &pending)
		ed.mu.Unlock()
		if done {
			return nil
		}
		if send {
			select {
			case lines <- line:
			case <-stop:
				return nil
			}
		}
		if c == keyEscape {
			skipEscape(br)
		}
	}
}

// keyLocked applies one input octet. It reports a finished line (send), or
// the end of input (done).
func (ed *lineEditor) keyLocked(c byte, pending *[]byte) (line string, done, send bool) {
	switch c {
	case keyCtrlC:
		return "", true, false
	case keyCtrlD:
		if len(ed.buf) == 0 {
			io.WriteString(ed.out, "\r\x1b[K")
			return "", true, false
		}
	case keyEnter, keyNewline:
		line = string(ed.buf)
		ed.buf = ed.buf[:0]
		ed.redrawLocked()
		return line, false, true
	case keyBackspace, keyDelete:
		if len(ed.buf) > 0 {
			ed.buf = ed.buf[:len(ed.buf)-1]
		}
	case keyCtrlU:
		ed.buf = ed.buf[:0]
	case keyCtrlW:
		i := len(ed.buf)
		for i > 0 && ed.buf[i-1] == ' ' {
			i--
		}
		for i > 0 && ed.buf[i-1] != ' ' {
			i--
		}
		ed.buf = ed.buf[:i]
	default:
		if c < 0x20 {
			return "", false, false
		}
		*pending = append(*pending, c)
		if !utf8.FullRune(*pending) {
			if len(*pending) >= utf8.UTFMax {
				*pending = (*pending)[:0]
			}
			return "", false, false
		}
		r, _ := utf8.DecodeRune(*pending)
		*pending = (*pending)[:0]
		if r != utf8.RuneError && len(ed.buf) < maxEditLine {
			ed.buf = append(ed.buf, r)
		}
	}
	ed.redrawLocked()
	return "", false, false
}

// skipEscape drops the rest of an escape sequence (arrow keys and the like,
// "ESC [ ... final"), which the editor does not use.
func skipEscape(br *bufio.Reader) {
	if br.Buffered() == 0 {
		return
	}
	if c, _ := br.ReadByte(); c != '[' && c != 'O' {
		return
	}
	for i := 0; i < 16 && br.Buffered() > 0; i++ {
		if c, _ := br.ReadByte(); c >= 0x40 && c <= 0x7e {
			return
		}
	}
}
