// Package sdnotify tells systemd (or any service manager speaking the same
// protocol) how a daemon is doing: READY=1 once it serves, STOPPING=1 when it
// begins to shut down, STATUS=... for `systemctl status`. It is what makes a
// Type=notify unit wait until the node really accepts messages.
//
// The protocol is one datagram of newline-separated KEY=VALUE lines sent to
// the AF_UNIX SOCK_DGRAM socket named in $NOTIFY_SOCKET; a name starting with
// '@' is in Linux's abstract namespace. That is a dozen lines, so it is written
// here rather than imported from github.com/coreos/go-systemd: that module
// brings D-Bus, journal and activation code (and their dependencies) into
// every binary for one sendto, and this package stays easy to audit.
//
// A Notifier holds no connection and starts no goroutine: each Send dials,
// writes one datagram and closes, as sd_notify(3) itself does.
package sdnotify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
)

// Standard states (sd_notify(3)).
const (
	Ready     = "READY=1"
	Stopping  = "STOPPING=1"
	Reloading = "RELOADING=1"
)

// ErrUnsupported marks a $NOTIFY_SOCKET this package cannot reach (such as
// systemd's vsock: addresses, used only inside virtual machines).
var ErrUnsupported = errors.New("sdnotify: unsupported NOTIFY_SOCKET")

// Notifier sends state changes to the service manager. The nil *Notifier,
// returned when no manager listens, accepts every call and sends nothing, so
// callers need no "am I under systemd" branches.
type Notifier struct {
	addr *net.UnixAddr
}

// New returns a Notifier for the socket named by notifySocket (the value of
// $NOTIFY_SOCKET), or nil when it is empty: not started by a service manager
// that wants notifications.
func New(notifySocket string) (*Notifier, error) {
	switch {
	case notifySocket == "":
		return nil, nil
	case strings.HasPrefix(notifySocket, "/"), strings.HasPrefix(notifySocket, "@"):
		// Go spells the abstract namespace with a leading '@' too and turns
		// it into the leading NUL the kernel expects.
		return &Notifier{addr: &net.UnixAddr{Name: notifySocket, Net: "unixgram"}}, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrUnsupported, notifySocket)
}

// Send sends one datagram holding the given KEY=VALUE states.
func (n *Notifier) Send(states ...string) error {
	if n == nil {
		return nil
	}
	for _, s := range states {
		if !strings.Contains(s, "=") || strings.Contains(s, "\n") {
			return fmt.Errorf("sdnotify: state %q is not one KEY=VALUE line", s)
		}
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sdnotify: dial %s: %w", n.addr.Name, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(strings.Join(states, "\n") + "\n")); err != nil {
		return fmt.Errorf("sdnotify: send to %s: %w", n.addr.Name, err)
	}
	return nil
}

// Status formats a STATUS= line for Send; line breaks become spaces so a
// status can never smuggle in another state.
func Status(text string) string {
	return "STATUS=" + strings.NewReplacer("\r", " ", "\n", " ").Replace(text)
}

// Run runs a daemon under the manager's eye: start brings it up and returns
// once it serves (its result is the STATUS= text), then READY=1 is sent and
// serve blocks until ctx ends or the daemon fails. STOPPING=1 is sent the
// moment ctx is cancelled, before serve's shutdown work, so that systemd shows
// "deactivating" while sessions are told goodbye. A notification that cannot
// be sent is logged, never fatal: the daemon works without a manager.
func (n *Notifier) Run(ctx context.Context, log *slog.Logger, start func(context.Context) (string, error), serve func(context.Context) error) error {
	status, err := start(ctx)
	if err != nil {
		return err
	}
	n.sendLogged(log, Ready, Status(status))
	stop := context.AfterFunc(ctx, func() { n.sendLogged(log, Stopping, Status("stopping")) })
	defer stop()
	return serve(ctx)
}

func (n *Notifier) sendLogged(log *slog.Logger, states ...string) {
	if err := n.Send(states...); err != nil {
		log.Warn("cannot notify the service manager", "err", err)
	}
}
