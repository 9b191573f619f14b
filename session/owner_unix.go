//go:build unix

package session

import (
	"io/fs"
	"syscall"
)

// fileOwner returns the uid owning a file, if the platform tells.
func fileOwner(fi fs.FileInfo) (uint32, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return st.Uid, true
}
