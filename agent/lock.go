package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockFile is the file in the data dir an agent holds a lock on.
const lockFile = "agent.lock"

// ErrLocked is the error of New when another agent holds the data dir.
var ErrLocked = errors.New("locked by another process")

// lockDataDir takes an exclusive lock (flock) on DIR/agent.lock for the
// caller's life, or fails at once with ErrLocked: two agents on one data
// dir would register as the same worker, and the second would take the
// first one's jobs away. The lock goes with the process (a crash frees it);
// the file holds the pid of its holder, for the message of the next one.
// Close the file to let go.
func lockDataDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := ""
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
				holder = fmt.Sprintf(", pid %d", pid)
			}
		}
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("agent data dir %s is %w%s (is another hodei agent using this data dir? each agent needs its own --data-dir)",
				dir, ErrLocked, holder)
		}
		return nil, fmt.Errorf("lock data dir %s: %w", dir, err)
	}
	// The pid is a hint for the message above; the lock is what counts.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}
