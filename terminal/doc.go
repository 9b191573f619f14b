// Package terminal delivers messages to the terminals of users logged in on
// the host, the way write(1) does, and publishes those logins as tty
// terminals in the cluster presence directory.
//
// The package is named terminal rather than tty because it covers a whole
// login's terminal: the utmp record that says who is logged in where, the
// device's idle time and mesg state, the rendering that keeps every octet
// of a hostile message harmless on the screen, and the switchboard
// Terminal that writes it.
//
// File by file: utmp.go reads (and, for tests and tools, writes) glibc
// utmp files; render.go turns ISO 8859-1 text into bytes safe for the
// terminal's charset and formats the write(1) block, whose banner names the
// sender only when the ingress node verified her (UNVERIFIED, the claim
// and its source otherwise) and whose text cannot forge a banner or EOF; watch.go polls utmp and the devices; tty.go opens and
// checks a device and writes one message to it; service.go signs logins in
// to the switchboard as lines and keeps their state current.
package terminal
