// Package cliflags holds what the msprelay daemons' mains share: flags that
// can also come from the environment, comma-separated list flags, and the
// slog logger selected by --log-level and --log-format.
package cliflags

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"strings"
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

// NewLogger builds the logger for --log-level (trace, debug, info, warn,
// error) and --log-format (text, json), writing to w.
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if level == "trace" {
		lv = LevelTrace
	} else if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want trace, debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// RunUntilSignal runs run with a context that SIGINT or SIGTERM cancels and
// maps the outcome to an exit code: 0 for a clean stop, 1 (logged) for a
// failure. The component logs its own stop.
func RunUntilSignal(log *slog.Logger, what string, run func(context.Context) error) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		log.Error(what+" failed", "err", err)
		return 1
	}
	return 0
}
