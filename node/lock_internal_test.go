package node

import (
	"errors"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// "A node never shares its store": the second lock on a directory is
// refused naming the first holder's pid, and free again once released.
func TestDataDirLockIsExclusive(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first, err := lockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = lockDataDir(dir)
	if !errors.Is(err, ErrDataDirInUse) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second lock: %v, want ErrDataDirInUse naming pid %d", err, os.Getpid())
	}
	first.release()
	again, err := lockDataDir(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again.release()
}

// Issue 20: "two nodes on one host both take the host name without a
// warning": the second claim of a name on this host is noticed.
func TestNameClaimNoticesASecondNode(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("abstract sockets are Linux only")
	}
	name := "claimtest-" + strconv.Itoa(os.Getpid())
	first, taken := claimName(name)
	if taken || first == nil {
		t.Fatalf("first claim: taken=%v", taken)
	}
	if _, taken := claimName(name); !taken {
		t.Fatal("second claim of one name was not noticed")
	}
	first.release()
	again, taken := claimName(name)
	if taken {
		t.Fatal("claim after release noticed as taken")
	}
	again.release()
}
