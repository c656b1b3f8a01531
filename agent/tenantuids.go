package agent

import (
	"bufio"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"strconv"
	"strings"
	"sync"
)

// tenantUIDsFile keeps, in the agent's data dir, the uid given to each
// tenant under --default-user dynamic.
const tenantUIDsFile = "tenant-uids"

// The uids of DynamicUser: dynamicUIDBase and up, below
// dynamicUIDBase+dynamicUIDSpan, far above the uids of real users (and of
// systemd's own dynamic users), so that they own nothing else on the host.
const (
	dynamicUIDBase = 1 << 30
	dynamicUIDSpan = 1 << 24
)

// tenantUIDs gives each tenant a uid of its own: first the one its name
// hashes to, or, when another tenant has that one, the next free one. What
// it gave is appended to a file and read back at start, so that a tenant
// keeps its uid, and the files it owns, across restarts. It is safe for
// concurrent use.
type tenantUIDs struct {
	path string

	mu       sync.Mutex
	byTenant map[string]uint32 // guarded by mu
	byUID    map[uint32]string // guarded by mu
}

// openTenantUIDs reads the uids given so far from path (none when it does
// not exist).
func openTenantUIDs(path string) (*tenantUIDs, error) {
	u := &tenantUIDs{path: path, byTenant: map[string]uint32{}, byUID: map[uint32]string{}}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return u, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tenant uids: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		id, tenant, ok := strings.Cut(sc.Text(), " ")
		uid, err := strconv.ParseUint(id, 10, 32)
		if !ok || err != nil || tenant == "" {
			if !sc.Scan() { // a last line cut short by a crash: it was never used
				break
			}
			return nil, fmt.Errorf("tenant uids: %s:%d: want \"UID TENANT\"", path, n)
		}
		u.byTenant[tenant], u.byUID[uint32(uid)] = uint32(uid), tenant
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("tenant uids: %w", err)
	}
	return u, nil
}

// uid returns tenant's uid, giving it one (durably) on first use.
func (u *tenantUIDs) uid(tenant string) (uint32, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if id, ok := u.byTenant[tenant]; ok {
		return id, nil
	}
	h := fnv.New32a()
	h.Write([]byte(tenant))
	slot := h.Sum32() % dynamicUIDSpan
	for range dynamicUIDSpan {
		id := uint32(dynamicUIDBase) + slot
		if _, taken := u.byUID[id]; !taken {
			if err := u.append(id, tenant); err != nil {
				return 0, err
			}
			u.byTenant[tenant], u.byUID[id] = id, tenant
			return id, nil
		}
		slot = (slot + 1) % dynamicUIDSpan
	}
	return 0, errors.New("tenant uids: every dynamic uid is taken")
}

// append writes one allocation to the file, synced.
func (u *tenantUIDs) append(id uint32, tenant string) error {
	f, err := os.OpenFile(u.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("tenant uids: %w", err)
	}
	_, err = fmt.Fprintf(f, "%d %s\n", id, tenant)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}
