//go:build unix

package sessionsock

import (
	"io/fs"
	"syscall"
)

// FileOwner returns the uid owning a file, if the platform tells.
func FileOwner(fi fs.FileInfo) (uint32, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return st.Uid, true
}
