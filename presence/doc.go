// Package presence is the cluster presence directory: which principal (user) is
// signed in at which terminal on which node, in what state.
//
// Each node owns a versioned table of its own principals and changes only that
// table; the tables of other nodes arrive over memberlist (deltas from their
// owners, whole tables on pulls and push-pulls) and are replaced or patched,
// never edited locally. Lookups read a
// merged view. A Directory with no gossip address is a single-node directory and
// behaves the same way minus the remote tables.
//
// Gossip, file by file: gossip.go configures and runs memberlist (profiles,
// encryption, periodic seed re-joins, metadata refresh); delegate.go is the
// memberlist delegate; delta.go sends this node's changes as coalesced,
// batched deltas straight to every member and applies the deltas of others;
// sync.go keeps remote tables current (gap repair by full table pulls,
// membership and boot guards, and the per-change broadcasts of earlier
// versions); remote.go applies remote tables
// to the directory and emits their events; wire.go is the bounded binary
// encoding; confirm.go is the second failure signal (GossipConfig.Confirm:
// a member with no NATS subscriber that also misses a ping is dropped
// before memberlist declares it dead). A node that leaves or is declared
// dead takes its principals with it; a node whose name is already live in the cluster is refused.
//
// Lifecycle: New validates and starts nothing; Directory.Start returns once
// gossip is bound (GossipAddr is then valid); Run blocks, reporting a fatal
// gossip error such as a name conflict; Close leaves and waits.
package presence
