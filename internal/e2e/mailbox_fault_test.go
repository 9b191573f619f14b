//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/msprelay/msprelay/msp"
)

// The mailbox fault tests (docs/MAILBOX.md, issue 4): a stream of hundreds
// of messages goes to alice through real processes while nodes and relays
// are killed with SIGKILL and restarted; alice reads with real `msp listen
// --json` processes (which acknowledge each message after writing it out).
// Afterwards every message that got '+' must be in her view exactly once,
// the view being every line her listen processes wrote, with repeats of an
// id dropped. Each test prints sent, '+', '-', delivered, duplicates
// dropped and lost.

// Bounds of the fault tests.
const (
	// faultSettle: every acknowledged message reaches her view within it
	// once the stream is over (a message held by a killed node comes back
	// after --mailbox-ack-wait, here 5 s).
	faultSettle = 60 * time.Second
	// faultAckWait is the nodes' --mailbox-ack-wait.
	faultAckWait = "5s"
	// faultSenders send in parallel, so that a kill catches several
	// messages in flight.
	faultSenders = 4
	// faultPace spaces one sender's messages: about 45 messages a second
	// in all, so that a stream of hundreds spans its faults.
	faultPace = 80 * time.Millisecond
)

// stream sends total messages "msg NNNN" to recipient through one node's MSP
// port from inside its host, over TCP, faultSenders connections at once,
// and records the answers. The action at[i] is started when message i is
// about to be sent; actions run one after the other in a goroutine of
// their own while the stream goes on: that is where a test kills and
// restarts processes, in the middle of the stream. run returns when every
// message is answered and every action done.
type stream struct {
	t         *testing.T
	to        *node
	recipient string
	total     int
	at        map[int]func()

	next    atomic.Int64
	actions chan func() // to the action goroutine; cap len(at)
	// mu guards plus and minus.
	mu    sync.Mutex
	plus  map[string]string // text -> reply
	minus map[string]string
}

func (s *stream) run() {
	s.plus, s.minus = map[string]string{}, map[string]string{}
	s.actions = make(chan func(), len(s.at))
	var acting sync.WaitGroup
	acting.Go(func() {
		for f := range s.actions {
			f()
		}
	})
	var wg sync.WaitGroup
	for range faultSenders {
		wg.Go(s.sender)
	}
	wg.Wait()
	close(s.actions)
	acting.Wait()
}

// sender sends messages until the stream is exhausted, reconnecting after
// a connection error (the answer to a message lost with its connection
// counts as '-': the sender cannot know).
func (s *stream) sender() {
	var conn net.Conn
	var br *bufio.Reader
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	for {
		i := int(s.next.Add(1) - 1)
		if i >= s.total {
			return
		}
		if f := s.at[i]; f != nil {
			s.actions <- f
		}
		text := fmt.Sprintf("msg %04d", i)
		if conn == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			c, err := s.to.host.dial(ctx, "tcp", s.to.mspAddr())
			cancel()
			if err != nil {
				s.answer(text, "-(connect: "+err.Error()+")")
				continue
			}
			conn, br = c, bufio.NewReader(c)
		}
		reply, err := s.exchange(conn, br, text)
		if err != nil {
			conn.Close()
			conn = nil
			reply = "-(" + err.Error() + ")"
		}
		s.answer(text, reply)
		time.Sleep(faultPace) // pacing, so that the stream spans the faults
	}
}

// exchange sends one MSP message (sender carol at pts/9, cookie = text) and
// reads its reply up to the NUL.
func (s *stream) exchange(conn net.Conn, br *bufio.Reader, text string) (string, error) {
	b, err := (&msp.Message{Version: msp.Version2, Recipient: s.recipient, Text: text, Sender: "carol",
		SenderTerm: "pts/9", Cookie: strings.ReplaceAll(text, " ", "-")}).MarshalBinary()
	if err != nil {
		return "", err
	}
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := conn.Write(b); err != nil {
		return "", err
	}
	reply, err := br.ReadString(0)
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(reply, "\x00"), nil
}

func (s *stream) answer(text, reply string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if strings.HasPrefix(reply, "+") {
		s.plus[text] = reply
	} else {
		s.minus[text] = reply
	}
}

// listener is one `msp listen --json` process of alice's.
func (l *lab) listen(n *node, name, user, term string) *proc {
	l.t.Helper()
	return l.start(n.host, name, binMSP, "listen", "--session", n.sessionAddr(), "--user", user, "--term", term, "--json")
}

// view is alice's view: every message line her listen processes wrote.
type view struct {
	byID  map[string]string // id -> text
	lines int               // message lines, repeats included
}

// readView parses the JSON message lines of the given listen processes'
// logs (their stdout; other lines are headers and stderr).
func readView(t *testing.T, procs []*proc) view {
	t.Helper()
	v := view{byID: map[string]string{}}
	for _, p := range procs {
		b, err := os.ReadFile(p.log)
		if err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		for _, line := range bytes.Split(b, []byte("\n")) {
			if !bytes.HasPrefix(line, []byte(`{"type":"message"`)) {
				continue // a header, stderr, or a line still being written
			}
			var m struct {
				ID   string `json:"id"`
				Text string `json:"text"`
			}
			if err := json.Unmarshal(line, &m); err != nil {
				continue
			}
			v.lines++
			if _, ok := v.byID[m.ID]; !ok {
				v.byID[m.ID] = strings.TrimSpace(m.Text)
			}
		}
	}
	return v
}

// settle waits until every '+' message is in the view, then reports the
// counts and fails on any loss or duplicate.
func (s *stream) settle(procs func() []*proc) {
	t := s.t
	t.Helper()
	s.mu.Lock()
	plus, minus := s.plus, s.minus
	s.mu.Unlock()
	missing := func(v view) []string {
		have := map[string]bool{}
		for _, text := range v.byID {
			have[text] = true
		}
		var out []string
		for text := range plus {
			if !have[text] {
				out = append(out, text)
			}
		}
		slices.Sort(out)
		return out
	}
	t0 := time.Now()
	var v view
	for {
		v = readView(t, procs())
		if len(missing(v)) == 0 || time.Since(t0) > faultSettle {
			break
		}
		time.Sleep(pollEvery)
	}
	settled := time.Since(t0)
	time.Sleep(time.Second) // late repeats would show up now: the subject of the count, not synchronisation
	v = readView(t, procs())
	ids := map[string][]string{} // text -> ids
	for id, text := range v.byID {
		ids[text] = append(ids[text], id)
	}
	dupTexts := 0
	for text, is := range ids {
		if len(is) > 1 {
			dupTexts++
			t.Errorf("%q is in her view under %d ids %v: a duplicate the view cannot drop", text, len(is), is)
		}
	}
	lost := missing(v)
	afterMinus := 0
	for text := range minus {
		if len(ids[text]) > 0 {
			afterMinus++
		}
	}
	t.Logf("counts: sent %d, '+' %d, '-' %d, delivered %d (all '+' within %v of the end), duplicates dropped %d, lost %d; '-' messages delivered all the same: %d",
		s.total, len(plus), len(minus), len(v.byID), settled.Round(time.Millisecond), v.lines-len(v.byID), len(lost), afterMinus)
	if len(lost) > 0 {
		t.Errorf("lost %d messages that got '+': %v", len(lost), lost)
	}
	if len(plus)+len(minus) != s.total {
		t.Errorf("%d answers for %d messages", len(plus)+len(minus), s.total)
	}
	var sample []string
	for text, r := range minus {
		if len(sample) < 5 {
			sample = append(sample, text+": "+r)
		}
	}
	if len(sample) > 0 {
		t.Logf("some '-' answers: %q", sample)
	}
}

// knownThenOut signs alice in on n (so the cluster knows her) and out again.
func (l *lab) knownThenOut(n *node, user string) {
	l.t.Helper()
	p := l.listen(n, "warmup-"+user, user, "pts/0")
	l.waitWho(n, user, user+"@"+n.name+"/pts/0/online")
	if _, err := p.stop(10 * time.Second); err != nil {
		l.t.Fatalf("stop %s: %v", p.name, err)
	}
	l.waitWho(n, user)
}

// TestFaultRecipientNodeKilledMidStream: alice listens on h2; in the middle
// of the stream h2 is killed with SIGKILL (with messages in flight to her);
// she is away for a moment (messages queue), signs in on h3 (the mailbox
// drains there), h2 restarts with its data dir, her session on h3 is
// killed too (messages pushed but not acknowledged) and she signs in on
// the restarted h2.
func TestFaultRecipientNodeKilledMidStream(t *testing.T) {
	t.Parallel()
	c := newThreeHosts(t, "f", "--mailbox-ack-wait", faultAckWait)
	l := c.l
	var (
		mu      sync.Mutex
		listens []*proc
	)
	listen := func(n *node, name, term string) *proc {
		p := l.listen(n, name, "alice", term)
		mu.Lock()
		listens = append(listens, p)
		mu.Unlock()
		return p
	}
	procs := func() []*proc {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(listens)
	}
	a := listen(c.h2, "alice-h2", "pts/1")
	l.waitWho(c.h1, "alice", "alice@h2/pts/1/online")
	var b *proc
	t0 := time.Now()
	s := &stream{t: t, to: c.h1, recipient: "alice", total: 600, at: map[int]func(){
		100: func() {
			c.h2.proc.kill()
			t.Logf("%v: kill -9 h2 (alice's node) at message 100", time.Since(t0).Round(time.Millisecond))
		},
		160: func() {
			b = listen(c.h3, "alice-h3", "pts/2")
			t.Logf("%v: alice signs in on h3 at message 160", time.Since(t0).Round(time.Millisecond))
			// h2 may rejoin under its name only once the cluster has
			// declared it dead.
			l.waitWho(c.h1, "alice", "alice@h3/pts/2/online")
			l.launchNode(c.h2)
			t.Logf("%v: h2 detected dead and restarted with its data dir", time.Since(t0).Round(time.Millisecond))
		},
		450: func() {
			b.kill()
			listen(c.h2, "alice-h2-again", "pts/3")
			t.Logf("%v: alice's listen on h3 killed, she signs in on the restarted h2 at message 450", time.Since(t0).Round(time.Millisecond))
		},
	}}
	s.run()
	// msp listen stays through its node's death (issue 20: "clients
	// that stay"): it reconnects, to the restarted h2, and lives on.
	if !a.running() {
		t.Errorf("alice's listen on h2 exited when h2 was killed; it should reconnect")
	}
	s.settle(procs)
}

// TestFaultSingleRelayKilledAndRestarted: one relay holds the mailbox.
// Alice is away; messages queue; the relay is killed with SIGKILL (sends
// get '-' while it is down, never '+') and restarted with its store; alice
// signs in and gets everything queued before and after the crash.
func TestFaultSingleRelayKilledAndRestarted(t *testing.T) {
	t.Parallel()
	c := newThreeHosts(t, "g", "--mailbox-ack-wait", faultAckWait)
	l := c.l
	l.knownThenOut(c.h2, "alice")
	var listens []*proc
	var lmu sync.Mutex
	relayHost := c.relay.host
	s := &stream{t: t, to: c.h1, recipient: "alice", total: 300, at: map[int]func(){
		80: func() {
			c.relay.proc.kill()
			t.Logf("kill -9 the relay at message 80")
			time.Sleep(3 * time.Second) // the outage under test, not synchronisation
			c.relay = l.startRelay(relayHost)
			t.Logf("relay restarted with its store after 3 s")
		},
		220: func() {
			lmu.Lock()
			listens = append(listens, l.listen(c.h3, "alice-h3", "alice", "pts/1"))
			lmu.Unlock()
			t.Logf("alice signs in on h3 at message 220")
		},
	}}
	s.run()
	s.settle(func() []*proc {
		lmu.Lock()
		defer lmu.Unlock()
		return slices.Clone(listens)
	})
}

// TestFaultRelayClusterMemberKilled: three relays, the mailbox replicated
// on all of them (--mailbox-replicas 3), every node given all three URLs.
// One relay is killed with SIGKILL mid-stream and restarted; alice, away
// until then, signs in afterwards.
func TestFaultRelayClusterMemberKilled(t *testing.T) {
	t.Parallel()
	l := newLab(t, "h")
	hs := l.addHosts("r1", "r2", "r3", "n1", "n2", "n3")
	rhosts, nhosts := hs[:3], hs[3:]
	var routes, urls []string
	for _, h := range rhosts {
		routes = append(routes, "nats-route://"+h.addr(portRoute))
		urls = append(urls, "nats://"+h.addr(portNATS))
	}
	relayArgs := func(h *host) []string {
		return []string{"--cluster", h.addr(portRoute), "--cluster-name", "site", "--routes", strings.Join(routes, ",")}
	}
	relays := make([]*relay, len(rhosts))
	for i, h := range rhosts {
		relays[i] = l.startRelay(h, relayArgs(h)...)
	}
	l.waitRoutes(relays)
	seeds := gossipSeeds(nhosts...)
	nodes := make([]*node, len(nhosts))
	for i, h := range nhosts {
		nodes[i] = l.startNode(h, urls, seeds, "--mailbox-replicas", "3", "--mailbox-ack-wait", faultAckWait)
	}
	// The replicated stream needs its first quorum: wait until a message
	// can be queued at all before the stream starts.
	l.knownThenOut(nodes[1], "alice")
	last, _ := l.sendUntil(nodes[0], "alice", "first", time.Now(),
		func(r cliResult) bool { return r.code == 0 && strings.HasPrefix(r.stdout, "queued for alice") },
		func(r cliResult) bool { return r.code == 1 })
	var listens []*proc
	var lmu sync.Mutex
	// Kill the relay that leads the mailbox stream: the hardest of the
	// three to lose, as the stream must elect a new leader.
	victim := mailboxLeader(t, relays)
	s := &stream{t: t, to: nodes[0], recipient: "alice", total: 300, at: map[int]func(){
		80: func() {
			relays[victim].proc.kill()
			t.Logf("kill -9 relay %s (the mailbox stream's leader) at message 80", relays[victim].name)
		},
		150: func() {
			relays[victim] = l.startRelay(rhosts[victim], relayArgs(rhosts[victim])...)
			t.Logf("%s restarted at message 150", relays[victim].name)
		},
		220: func() {
			lmu.Lock()
			listens = append(listens, l.listen(nodes[2], "alice-n3", "alice", "pts/1"))
			lmu.Unlock()
			t.Logf("alice signs in on n3 at message 220")
		},
	}}
	s.run()
	s.plus[last] = "+(before the stream)"
	s.total++
	s.settle(func() []*proc {
		lmu.Lock()
		defer lmu.Unlock()
		return slices.Clone(listens)
	})
}

// mailboxLeader returns the index of the relay leading the mailbox stream,
// as the relays' monitoring (/jsz) reports it.
func mailboxLeader(t *testing.T, relays []*relay) int {
	t.Helper()
	leader := -1
	waitFor(t, relayBound, "the mailbox stream's leader", func() error {
		for _, r := range relays {
			var jsz struct {
				Accounts []struct {
					Streams []struct {
						Name    string `json:"name"`
						Cluster struct {
							Leader string `json:"leader"`
						} `json:"cluster"`
					} `json:"stream_detail"`
				} `json:"account_details"`
			}
			if err := r.monitor("/jsz?accounts=true&streams=true", &jsz); err != nil {
				continue
			}
			for _, a := range jsz.Accounts {
				for _, st := range a.Streams {
					if st.Name != "MSP_MAILBOX" {
						continue
					}
					for i, o := range relays {
						if o.name == st.Cluster.Leader {
							leader = i
							return nil
						}
					}
				}
			}
		}
		return fmt.Errorf("no relay reports a leader of MSP_MAILBOX")
	})
	return leader
}
