// Package e2e holds the multi-process, multi-host tests of msprelay. It has
// no code of its own: the tests build cmd/node, cmd/relay and cmd/msp,
// give every node and relay its own host in a Linux network namespace
// (veth pairs on one bridge, a private /24 per test), run each as a real
// process with `ip netns exec`, and check delivery, presence, graceful
// leave, crash detection and relay topologies from the outside, through the
// msp CLI and the session protocol.
//
// The tests need root and iproute2; elsewhere they skip. Every process a
// test starts and every namespace, veth and bridge it creates is removed by
// the test's cleanup, also when it fails; a run also sweeps what crashed
// earlier runs left behind (names mr<pid>-..., see sweepStale).
package e2e
