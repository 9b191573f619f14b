package node

import (
	"os"
	"runtime"
	"strconv"
	"testing"
)

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
