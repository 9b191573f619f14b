#!/usr/bin/env bash
# A three-host msprelay cluster on one Linux machine, in network namespaces.
#
#   sudo deploy/netns/demo.sh up         build the binaries, create the hosts, start relay and nodes
#   sudo deploy/netns/demo.sh send-demo  sign alice in on h2 and h3, send her messages from h1, use her mailbox
#   sudo deploy/netns/demo.sh status     show processes, addresses and who is signed in
#   sudo deploy/netns/demo.sh down       stop everything and remove the hosts (safe to repeat)
#
# Layout: a bridge "mrdemo-br" in the root namespace, and one namespace per
# host (mrdemo-r1 for the relay, mrdemo-h1..h3 for the nodes), each joined to
# the bridge by a veth pair and given an address in one private /24. The root
# namespace gets no address: the hosts reach only each other, and the script
# talks to them with `ip netns exec`. Nothing listens outside the namespaces.
#
# Settings (environment):
#   MSPRELAY_DEMO_DIR     state: binaries, logs, data, pid files (default /run/msprelay-demo,
#                         root's alone: never a predictable path in a shared directory like /tmp)
#   MSPRELAY_DEMO_SUBNET  first three octets of the /24 (default 10.218.200)
set -euo pipefail

readonly PREFIX=mrdemo
readonly BRIDGE=${PREFIX}-br
readonly DIR=${MSPRELAY_DEMO_DIR:-/run/msprelay-demo}
readonly SUBNET=${MSPRELAY_DEMO_SUBNET:-10.218.200}
readonly BIN=$DIR/bin
readonly REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# Hosts in order: name, then its address's last octet. The relay comes first.
readonly HOSTS=(r1 h1 h2 h3)
declare -A OCTET=([r1]=10 [h1]=11 [h2]=12 [h3]=13)

# Ports: the ones a real deployment uses (see deploy/README.md).
readonly MSP_PORT=18 SESSION_PORT=7018 GOSSIP_PORT=7946 NATS_PORT=4222 MONITOR_PORT=8222

ip_of() { echo "$SUBNET.${OCTET[$1]}"; }
ns_of() { echo "$PREFIX-$1"; }

say() { printf '\n== %s\n' "$*"; }
# run prints a command and then runs it, so the demo shows what it does.
run() {
	printf '+'
	printf ' %q' "$@"
	printf '\n'
	"$@"
}
die() {
	printf 'demo: %s\n' "$*" >&2
	exit 1
}

need_root() {
	[[ $(id -u) -eq 0 ]] || die "needs root (network namespaces): sudo $0 $*"
	command -v ip >/dev/null || die "iproute2's ip is missing (apt-get install iproute2)"
}

# wait_port HOST PORT: until something accepts TCP on the host's address (bounded).
wait_port() {
	local h=$1 port=$2 i
	for ((i = 0; i < 100; i++)); do
		if ip netns exec "$(ns_of "$h")" bash -c "exec 3<>/dev/tcp/$(ip_of "$h")/$port" 2>/dev/null; then
			return 0
		fi
		sleep 0.2
	done
	die "$h: nothing listens on $(ip_of "$h"):$port after 20s; see $DIR/logs/$h.log"
}

# start NAME HOST BINARY ARGS...: run a daemon in HOST's namespace, log and pid in $DIR.
# `ip netns exec` execs the binary in place, so $! is the daemon's own pid.
start() {
	local name=$1 h=$2 bin=$3
	shift 3
	printf '+ ip netns exec %s %s' "$(ns_of "$h")" "$BIN/$bin"
	printf ' %q' "$@"
	printf '  (log: %s)\n' "$DIR/logs/$name.log"
	nohup ip netns exec "$(ns_of "$h")" "$BIN/$bin" "$@" >>"$DIR/logs/$name.log" 2>&1 </dev/null &
	echo $! >"$DIR/pids/$name.pid"
}

# stop NAME SIGNAL: signal a daemon started by this script, by its recorded
# pid, only if that pid still runs one of our binaries; wait for it to end.
stop() {
	local name=$1 sig=$2 pidfile=$DIR/pids/$1.pid pid i
	[[ -f $pidfile ]] || return 0
	pid=$(<"$pidfile")
	if [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "^$BIN/"; then
		run kill "-$sig" "$pid"
		for ((i = 0; i < 100; i++)); do
			[[ -d /proc/$pid ]] || break
			sleep 0.1
		done
		if [[ -d /proc/$pid ]]; then
			run kill -KILL "$pid"
		fi
	fi
	rm -f "$pidfile"
}

msp_in() { # msp_in HOST ARGS...: run the msp CLI on a host
	local h=$1
	shift
	run ip netns exec "$(ns_of "$h")" "$BIN/msp" "$@"
}

cmd_up() {
	need_root up
	if ip netns list | grep -q "^$PREFIX-"; then
		die "the demo is already up (run '$0 down' first, or '$0 status')"
	fi
	command -v go >/dev/null || die "go is needed to build the binaries"
	trap 'echo "demo: up failed; see the output above and $DIR/logs, then run: $0 down" >&2' ERR
	# The demo runs binaries from here as root: the directory must be
	# root's alone, not one another user made or can write to.
	mkdir -p -m 0700 "$DIR"
	[ ! -L "$DIR" ] || die "$DIR is a symbolic link"
	[ "$(stat -c '%u' "$DIR")" = 0 ] || die "$DIR is not owned by root"
	[ -z "$(find "$DIR" -maxdepth 0 -perm /022)" ] || die "$DIR is writable by others than root"
	mkdir -p "$BIN" "$DIR/logs" "$DIR/pids" "$DIR/data"

	say "Building cmd/node, cmd/relay and cmd/msp into $BIN"
	(cd "$REPO" && run go build -o "$BIN/" ./cmd/node ./cmd/relay ./cmd/msp)

	say "Creating the network: bridge $BRIDGE and one namespace per host in $SUBNET.0/24"
	run ip link add "$BRIDGE" type bridge
	run ip link set "$BRIDGE" up
	local h i=0
	for h in "${HOSTS[@]}"; do
		local ns veth=$PREFIX-v$i
		ns=$(ns_of "$h")
		run ip netns add "$ns"
		run ip -n "$ns" link set lo up
		run ip link add "$veth" type veth peer name eth0 netns "$ns"
		run ip link set "$veth" master "$BRIDGE" up
		run ip -n "$ns" addr add "$(ip_of "$h")/24" dev eth0
		run ip -n "$ns" link set eth0 up
		i=$((i + 1))
	done

	say "Generating NATS users (one per node) and a gossip key into $DIR/creds"
	rm -rf "$DIR/creds"
	run "$BIN/relay" gen-creds --nodes h1,h2,h3 --out "$DIR/creds" >/dev/null
	(umask 077 && head -c 32 /dev/urandom | base64 >"$DIR/creds/gossip.key")

	say "Starting the relay r1 (a standalone nats-server with JetStream) on $(ip_of r1)"
	start r1 r1 relay --name r1 --listen "$(ip_of r1):$NATS_PORT" --monitor "$(ip_of r1):$MONITOR_PORT" \
		--data "$DIR/data/r1" --config "$DIR/creds/auth.conf"
	wait_port r1 "$NATS_PORT"

	say "Starting nodes h1, h2, h3: MSP on :$MSP_PORT, sessions on :$SESSION_PORT, gossip on :$GOSSIP_PORT"
	local seeds
	seeds="$(ip_of h1):$GOSSIP_PORT,$(ip_of h2):$GOSSIP_PORT,$(ip_of h3):$GOSSIP_PORT"
	for h in h1 h2 h3; do
		# --session-auth trust believes the claimed user name: fine for a
		# demo on private namespaces, never for a real network.
		start "$h" "$h" node --name "$h" \
			--msp "$(ip_of "$h"):$MSP_PORT" \
			--session "$(ip_of "$h"):$SESSION_PORT" --session-auth trust --session-auth-insecure --session-socket= \
			--gossip "$(ip_of "$h"):$GOSSIP_PORT" --join "$seeds" --gossip-profile lan \
			--gossip-key "$DIR/creds/gossip.key" \
			--nats "nats://$(ip_of r1):$NATS_PORT" --nats-nkey "$DIR/creds/$h.nk" --data "$DIR/data/$h"
	done
	for h in h1 h2 h3; do wait_port "$h" "$MSP_PORT"; done

	say "Up. Try:"
	cat <<EOF
  $0 send-demo
  sudo ip netns exec $(ns_of h2) $BIN/msp listen --session $(ip_of h2):$SESSION_PORT --user alice --term pts/1
  sudo ip netns exec $(ns_of h1) $BIN/msp send --server $(ip_of h1):$MSP_PORT --from bob alice 'hello from h1'
  sudo ip netns exec $(ns_of h1) $BIN/msp who --session $(ip_of h1):$SESSION_PORT
  $0 down
Logs are in $DIR/logs.
EOF
}

cmd_send_demo() {
	need_root send-demo
	ip netns list | grep -q "^$(ns_of h1)\b" || die "the demo is not up (run '$0 up' first)"
	local out=$DIR/logs
	say "alice signs in on h2 (pts/1) and on h3 (pts/2) with 'msp listen --json'"
	start listen-h2 h2 msp listen --session "$(ip_of h2):$SESSION_PORT" --user alice --term pts/1 --json
	start listen-h3 h3 msp listen --session "$(ip_of h3):$SESSION_PORT" --user alice --term pts/2 --json
	local i
	for ((i = 0; i < 50; i++)); do
		if [[ $(ip netns exec "$(ns_of h1)" "$BIN/msp" who --session "$(ip_of h1):$SESSION_PORT" --json alice | grep -c '"since"') -eq 2 ]]; then
			break
		fi
		sleep 0.2
	done

	say "h1's view of alice (gossiped from h2 and h3)"
	msp_in h1 who --session "$(ip_of h1):$SESSION_PORT" alice

	say "bob sends to alice through h1's MSP port; h1 forwards over NATS"
	msp_in h1 send --server "$(ip_of h1):$MSP_PORT" --from bob --from-term pts/9 alice "hello alice (most recent terminal)" || echo "(exit $?)"
	say "... pinned to node h3 with alice@h3"
	msp_in h1 send --server "$(ip_of h1):$MSP_PORT" --from bob --from-term pts/9 alice@h3 "hello alice on h3" || echo "(exit $?)"
	say "... to all of alice's terminals with --term '*'"
	msp_in h1 send --server "$(ip_of h1):$MSP_PORT" --from bob --from-term pts/9 --term '*' alice "hello everywhere" || echo "(exit $?)"
	say "... over UDP"
	msp_in h1 send --server "$(ip_of h1):$MSP_PORT" --udp --from bob --from-term pts/9 alice "hello over udp" || echo "(exit $?)"
	say "... to a user the cluster has never seen (expect '-', exit 1)"
	msp_in h1 send --server "$(ip_of h1):$MSP_PORT" --from bob --from-term pts/9 nobody "anyone there?" || echo "(exit $?)"

	# Only a signed-in entry has "since"; the offline record that remains
	# after sign-out has "node" and "last_seen" too, so wait on "since".
	say "alice signs out (SIGTERM to msp listen)"
	stop listen-h2 TERM
	stop listen-h3 TERM
	for ((i = 0; i < 50; i++)); do
		if ! ip netns exec "$(ns_of h1)" "$BIN/msp" who --session "$(ip_of h1):$SESSION_PORT" --json alice | grep -q '"since"'; then
			break
		fi
		sleep 0.2
	done
	say "h1's view of alice after she signed out"
	msp_in h1 who --session "$(ip_of h1):$SESSION_PORT" alice

	say "What alice's terminal on h2 printed"
	cat "$out/listen-h2.log"
	say "What alice's terminal on h3 printed"
	cat "$out/listen-h3.log"

	say "alice is away but known: the next message waits in her mailbox (JetStream on the relay)"
	msp_in h1 send --server "$(ip_of h1):$MSP_PORT" --from bob --from-term pts/9 alice "read this when you are back" || echo "(exit $?)"
	say "alice signs in again, this time on h1, and the mailbox is handed to her"
	start listen-h1 h1 msp listen --session "$(ip_of h1):$SESSION_PORT" --user alice --term pts/3 --json
	for ((i = 0; i < 50; i++)); do
		if grep -q '"type":"message"' "$out/listen-h1.log" 2>/dev/null; then
			break
		fi
		sleep 0.2
	done
	stop listen-h1 TERM
	say "What alice's terminal on h1 printed"
	cat "$out/listen-h1.log"
	rm -f "$out/listen-h1.log" "$out/listen-h2.log" "$out/listen-h3.log"
}

cmd_status() {
	need_root status
	local h pidfile
	for h in "${HOSTS[@]}"; do
		if ! ip netns list | grep -q "^$(ns_of "$h")\b"; then
			printf '%-3s %-15s (no namespace)\n' "$h" "$(ip_of "$h")"
			continue
		fi
		pidfile=$DIR/pids/$h.pid
		if [[ -f $pidfile ]] && [[ -d /proc/$(<"$pidfile") ]]; then
			printf '%-3s %-15s pid %s\n' "$h" "$(ip_of "$h")" "$(<"$pidfile")"
		else
			printf '%-3s %-15s not running\n' "$h" "$(ip_of "$h")"
		fi
	done
	if [[ -x $BIN/msp ]] && ip netns list | grep -q "^$(ns_of h1)\b"; then
		msp_in h1 who --session "$(ip_of h1):$SESSION_PORT" || echo "(exit $?)"
	fi
}

cmd_down() {
	need_root down
	say "Stopping the demo's processes (SIGTERM: nodes leave the cluster gracefully)"
	local name
	for name in listen-h1 listen-h2 listen-h3 h3 h2 h1 r1; do stop "$name" TERM; done
	say "Removing namespaces, veths and the bridge"
	local h i=0
	for h in "${HOSTS[@]}"; do
		if ip link show "$PREFIX-v$i" >/dev/null 2>&1; then run ip link del "$PREFIX-v$i"; fi
		if ip netns list | grep -q "^$(ns_of "$h")\b"; then run ip netns del "$(ns_of "$h")"; fi
		i=$((i + 1))
	done
	if ip link show "$BRIDGE" >/dev/null 2>&1; then run ip link del "$BRIDGE"; fi
	if [[ -d $DIR ]]; then run rm -rf "$DIR"; fi
	say "Down."
}

case ${1:-} in
up) cmd_up ;;
send-demo) cmd_send_demo ;;
status) cmd_status ;;
down) cmd_down ;;
*)
	sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac
