package node

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Reload re-reads what can change without a restart: the session secrets
// file, the gossip keyring and the HTTP token. Each part that fails keeps
// its old value; the error joins all failures. It logs what it reloaded.
func (n *Node) Reload() error {
	var errs []error
	var reloaded []string
	o := n.ops
	if !o.running.Load() {
		n.log.Warn("reload: the node is not running (starting or failed); nothing reloaded")
		return nil
	}
	errs, reloaded = n.reloadSecrets(errs, reloaded)
	if n.cfg.GossipKeyFile != "" && n.dir != nil {
		keys, err := readGossipKeys(n.cfg.GossipKeyFile)
		if err == nil {
			err = n.dir.SetGossipKeys(keys)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("gossip keys: %w", err))
		} else {
			reloaded = append(reloaded, fmt.Sprintf("gossip keyring %s (%d keys)", n.cfg.GossipKeyFile, len(keys)))
		}
	}
	if o.http != nil && n.cfg.HTTPTokenFile != "" {
		if changed, err := o.http.Reload(); err != nil {
			errs = append(errs, fmt.Errorf("http token: %w", err))
		} else {
			reloaded = append(reloaded, fmt.Sprintf("http token %s (changed: %v)", n.cfg.HTTPTokenFile, changed))
		}
	}
	err := errors.Join(errs...)
	switch {
	case err != nil:
		n.log.Error("reload incomplete; the parts that failed keep their old values", "reloaded", reloaded, "err", err)
	case len(reloaded) == 0:
		// Issue 20: "reloaded what=[]" read as if something had been.
		n.log.Info("reload: nothing changed (no session secrets, gossip key or HTTP token file to re-read)")
	default:
		n.log.Info("reloaded", "what", reloaded)
	}
	return err
}

// readGossipKeys reads a gossip key file for a reload: one key (as at
// start), or several, one per line, base64, the first one used to encrypt.
func readGossipKeys(path string) ([][]byte, error) {
	if k, err := readKey(path); err == nil {
		return [][]byte{k}, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("node: gossip key: %w", err)
	}
	var keys [][]byte
	for line := range strings.SplitSeq(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(line)
		if err != nil || (len(k) != 16 && len(k) != 24 && len(k) != 32) {
			return nil, fmt.Errorf("node: gossip key %s: each line must be a base64 key of 16, 24 or 32 bytes", path)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("node: gossip key %s: no key", path)
	}
	return keys, nil
}
