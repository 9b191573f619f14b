package broker

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
)

// Issue 20: "A node never shares its store": the second lock on a
// directory is refused naming the first holder's pid, and free again once
// released.
func TestDirLockIsExclusive(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first, err := LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = LockDir(dir)
	if !errors.Is(err, ErrDirInUse) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second lock: %v, want ErrDirInUse naming pid %d", err, os.Getpid())
	}
	first.Release()
	first.Release() // idempotent
	again, err := LockDir(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again.Release()
}

// Issue 20: "Same care for every other resource two nodes could share": a
// relay's JetStream store is locked too; a second broker on the same
// directory does not start, and the first keeps it.
func TestSecondBrokerOnOneStoreIsRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := Config{Name: "r1", Listen: "127.0.0.1:0", JetStream: true, Logger: testLogger(t), DataDir: dir}
	first, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	cfg.Name = "r2"
	second, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if err := second.Start(); !errors.Is(err, ErrDirInUse) {
		t.Fatalf("second broker on one store: Start = %v, want ErrDirInUse", err)
	}
	if first.ClientURL() == "" {
		t.Fatal("the first broker lost its listener")
	}
}
