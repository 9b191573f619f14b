package terminal

import (
	"syscall"
	"time"
)

// atime is a stat result's access time: the last input on a terminal.
func atime(st *syscall.Stat_t) time.Time { return time.Unix(st.Atim.Unix()) }
