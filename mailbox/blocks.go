package mailbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/msprelay/msprelay/msp"
	"github.com/msprelay/msprelay/principal"
)

// BlocksBucket is the JetStream key-value bucket of users' lasting block
// lists (msp block), one key per user (UserToken), the value a JSON array
// of blocked names in UTF-8.
const BlocksBucket = "MSP_BLOCKS"

// MaxBlocks bounds one user's stored block list; a longer value (written
// by something else than a node) is cut to it when read.
const MaxBlocks = 512

// maxBlocksValue bounds the stored value: MaxBlocks names of at most 64
// octets, quoted.
const maxBlocksValue = MaxBlocks * 70

// Blocks keeps users' block lists in BlocksBucket, so that a block holds
// at every sign-in on every node. It implements session.BlockStore. It
// shares the Mailbox's NATS connection and settings; the bucket is created
// on first use. mu guards kv.
type Blocks struct {
	m  *Mailbox
	mu sync.Mutex
	kv jetstream.KeyValue
}

// Blocks returns the block-list store that goes with m.
func (m *Mailbox) Blocks() *Blocks { return &Blocks{m: m} }

func (b *Blocks) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.kv != nil {
		return b.kv, nil
	}
	if err := b.m.connected(); err != nil {
		return nil, err
	}
	kv, err := b.m.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:       BlocksBucket,
		Description:  "msprelay: each user's block list (msp block), kept across sign-ins",
		History:      1,
		MaxValueSize: maxBlocksValue,
		Replicas:     b.m.cfg.Replicas,
		Storage:      jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("mailbox: bucket %s: %w", BlocksBucket, err)
	}
	b.kv = kv
	return kv, nil
}

// Blocks returns user's block list (ISO 8859-1 names), empty when she has
// none.
func (b *Blocks) Blocks(ctx context.Context, user string) ([]string, error) {
	kv, err := b.bucket(ctx)
	if err != nil {
		return nil, err
	}
	e, err := kv.Get(ctx, UserToken(user))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mailbox: block list of %s: %w", user, err)
	}
	var names []string
	if err := json.Unmarshal(e.Value(), &names); err != nil {
		return nil, fmt.Errorf("mailbox: block list of %s: %w", user, err)
	}
	out := make([]string, 0, min(len(names), MaxBlocks))
	for _, n := range names {
		if len(out) == MaxBlocks {
			break
		}
		l, err := msp.UTF8ToLatin1(n)
		if err != nil || len(l) > 2*principal.MaxNameLen+1 {
			continue // not a name a node wrote
		}
		out = append(out, l)
	}
	return out, nil
}

// SetBlocks replaces user's block list (ISO 8859-1 names, at most
// MaxBlocks).
func (b *Blocks) SetBlocks(ctx context.Context, user string, names []string) error {
	if len(names) > MaxBlocks {
		return fmt.Errorf("mailbox: block list of %s: %d names, at most %d", user, len(names), MaxBlocks)
	}
	kv, err := b.bucket(ctx)
	if err != nil {
		return err
	}
	u := make([]string, len(names))
	for i, n := range names {
		u[i] = msp.Latin1ToUTF8(n)
	}
	v, err := json.Marshal(u)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, UserToken(user), v); err != nil {
		return fmt.Errorf("mailbox: block list of %s: %w", user, err)
	}
	return nil
}
