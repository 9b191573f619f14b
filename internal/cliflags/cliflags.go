// Package cliflags holds what the msprelay daemons' mains share: flag
// tables (table.go: one row per flag, from which the parser, the
// environment variables and the docs are made, doc.go), flags that can also
// come from the environment, comma-separated list flags, the slog logger
// selected by --log-level and --log-format, and the run-until-signal loop
// in which SIGHUP reloads instead of killing.
package cliflags

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
)

// LevelTrace is the level below debug at which protocol traces are logged.
const LevelTrace = slog.LevelDebug - 4

// FromEnv sets every flag of fs that has a PREFIX<FLAG> variable (dashes
// become underscores, letters upper-case). Call it before fs.Parse so that
// the command line wins over the environment.
func FromEnv(fs *flag.FlagSet, prefix string, lookup func(string) (string, bool)) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		key := prefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := lookup(key); ok && err == nil {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", key, v, e)
			}
		}
	})
	return err
}

// SplitList splits a comma-separated flag value, dropping empty items.
func SplitList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// ParseLevel parses a --log-level word: trace, debug, info, warn or error.
func ParseLevel(level string) (slog.Level, error) {
	var lv slog.Level
	level = strings.TrimSpace(level)
	if strings.EqualFold(level, "trace") {
		return LevelTrace, nil
	}
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return 0, fmt.Errorf("log level %q: want trace, debug, info, warn or error", level)
	}
	return lv, nil
}

// NewLogger builds the logger for --log-level (trace, debug, info, warn,
// error) and --log-format (text, json), writing to w.
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	l, err := NewLogging(w, level, format, "")
	if err != nil {
		return nil, err
	}
	return l.Logger, nil
}

// Logging is a daemon's logger with the level SIGHUP can change: Reload
// re-reads LevelFile (one level word) when it is set.
type Logging struct {
	Logger    *slog.Logger
	Level     *slog.LevelVar
	LevelFile string
}

// NewLogging builds the logger for --log-level, --log-format and
// --log-level-file; a level file, when given, wins over --log-level.
// Records go straight to slog's text or JSON handler: every logger names
// its node, component and part once, under keys of their own, so no line
// repeats a key (docs/ARCHITECTURE.md, Logging).
func NewLogging(w io.Writer, level, format, levelFile string) (*Logging, error) {
	lv, err := ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level %q: want trace, debug, info, warn or error", level)
	}
	l := &Logging{Level: new(slog.LevelVar), LevelFile: levelFile}
	l.Level.Set(lv)
	if levelFile != "" {
		if _, err := l.Reload(); err != nil {
			return nil, err
		}
	}
	opts := &slog.HandlerOptions{Level: l.Level}
	var h slog.Handler
	switch format {
	case "text":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", format)
	}
	l.Logger = slog.New(h)
	return l, nil
}

// maxLevelFile bounds what is read of a level file.
const maxLevelFile = 64

// Reload re-reads LevelFile and sets the level from it. It reports the
// level in force and whether it changed; without a file it does nothing.
// A bad file keeps the old level.
func (l *Logging) Reload() (changed bool, err error) {
	if l.LevelFile == "" {
		return false, nil
	}
	f, err := os.Open(l.LevelFile)
	if err != nil {
		return false, fmt.Errorf("--log-level-file: %w", err)
	}
	defer f.Close()
	buf := make([]byte, maxLevelFile)
	n, _ := io.ReadFull(f, buf)
	lv, err := ParseLevel(string(buf[:n]))
	if err != nil {
		return false, fmt.Errorf("--log-level-file %s: %w", l.LevelFile, err)
	}
	changed = l.Level.Level() != lv
	l.Level.Set(lv)
	return changed, nil
}

// ReloadAndLog is Reload for a SIGHUP handler: it logs the outcome.
func (l *Logging) ReloadAndLog() {
	if l.LevelFile == "" {
		return
	}
	changed, err := l.Reload()
	if err != nil {
		l.Logger.Error("log level not reloaded; keeping the old one", "err", err, "log_level", l.Level.Level())
		return
	}
	l.Logger.Info("reloaded log level", "file", l.LevelFile, "log_level", l.Level.Level(), "changed", changed)
}

// RunUntilSignal runs run with a context that SIGINT or SIGTERM cancels and
// maps the outcome to an exit code: 0 for a clean stop, 1 (logged) for a
// failure. The component logs its own stop. SIGHUP never stops the
// daemon: it calls each reload function in turn (they log what they
// reloaded), one SIGHUP at a time.
func RunUntilSignal(log *slog.Logger, what string, run func(context.Context) error, reload ...func()) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	done := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(done)
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			case <-hup:
				log.Info("SIGHUP: reloading")
				if len(reload) == 0 {
					log.Info("SIGHUP: nothing to reload")
				}
				for _, f := range reload {
					f()
				}
			}
		}
	})
	if err := run(ctx); err != nil {
		log.Error(what+" failed", "err", err)
		return 1
	}
	return 0
}
