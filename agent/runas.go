package agent

// Who a job runs as. An agent running as root runs each job as an
// unprivileged user: its tenant's run-as user, else the agent's default
// user. Root takes two consents: the tenant's (--run-as root) and the
// agent's (--allow-root). An agent not running as root cannot switch users:
// it runs jobs as itself and refuses a tenant that names another user.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hodei-jobs/hodei/job"
)

// DefaultUser is the default of Config.DefaultUser: the user jobs run as on
// an agent running as root when their tenant names none.
const DefaultUser = "nobody"

// DynamicUser as the default user gives the jobs of each tenant that names
// no run-as user a uid of its own (see tenantUser), so that tenants sharing
// a host cannot see into each other's processes.
const DynamicUser = "dynamic"

// runUser is the account a job runs as when the agent switches users.
type runUser struct {
	Name   string
	UID    uint32
	GID    uint32
	Groups []uint32 // supplementary groups, the primary one included
	Home   string   // may not exist (nobody's is /nonexistent)
}

// credential is what the kernel needs to start the job's process as u.
func (u *runUser) credential() *syscall.Credential {
	return &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: u.Groups}
}

// userPolicy chooses the user each job runs as. Build it with
// newUserPolicy; tests fill it in directly. Its settings are read-only once
// built; it is safe for concurrent use.
type userPolicy struct {
	DefaultUser string // on a root agent, for tenants that name no user
	AllowRoot   bool   // the agent's consent to run a tenant's jobs as root
	EUID        int    // the agent's effective uid: only 0 can switch users
	// Lookup finds a user by name, or by numeric uid when no user has
	// that name; it returns an error wrapping errUnknownUser when neither
	// exists. Default lookupUser.
	Lookup func(nameOrUID string) (*user.User, error)

	// Dynamic gives tenants their uids under DynamicUser; the agent sets
	// it from its data dir.
	Dynamic *tenantUIDs
	// cache keeps resolved users for userCacheFor, so that a start does
	// not read the user and group databases each time; nil: no cache.
	cache *userCache
}

// userCache is the resolved users of a userPolicy.
type userCache struct {
	mu sync.Mutex
	m  map[string]cachedUser // guarded by mu
}

// userCacheFor is how long a resolved user is reused: a change to
// /etc/passwd or /etc/group reaches jobs after at most this long.
const userCacheFor = 30 * time.Second

type cachedUser struct {
	u  *runUser
	at time.Time
}

// errUnknownUser is the error of lookupUser for a user that does not exist.
var errUnknownUser = errors.New("no such user")

// newUserPolicy returns the policy of an agent running as the current
// process's effective user. On a root agent the default user must exist
// and must not be root (no tenant consented to root then): otherwise a
// *job.FieldError on default-user says what to change.
func newUserPolicy(defaultUser string, allowRoot bool) (*userPolicy, error) {
	if defaultUser == "" {
		defaultUser = DefaultUser
	}
	p := &userPolicy{DefaultUser: defaultUser, AllowRoot: allowRoot, EUID: os.Geteuid(), Lookup: lookupUser, cache: &userCache{}}
	if p.EUID != 0 || defaultUser == DynamicUser {
		return p, nil
	}
	u, err := p.resolve(defaultUser)
	switch {
	case errors.Is(err, errUnknownUser):
		return nil, job.Invalid("default-user", "user %q does not exist on this host; name an unprivileged user that does", defaultUser)
	case err != nil:
		return nil, err
	case u.UID == 0:
		return nil, job.Invalid("default-user", "%q is root; name an unprivileged user (jobs run as root only for a tenant set with --run-as root, on an agent started with --allow-root)", defaultUser)
	}
	return p, nil
}

// choose returns the user a job of tenant runs as, given the run-as user of
// its Assign ("" when the tenant names none): nil means the agent's own
// user, without switching. Its errors are refusals, written for the
// job's owner: they name the tenant, the user and what to change.
func (p *userPolicy) choose(tenant, runAs string) (*runUser, error) {
	if p.EUID != 0 {
		return nil, p.chooseUnprivileged(tenant, runAs)
	}
	if runAs == "" && p.DefaultUser == DynamicUser {
		if p.Dynamic == nil {
			return nil, errors.New("--default-user dynamic: the agent has no tenant uids")
		}
		uid, err := p.Dynamic.uid(tenant)
		if err != nil {
			return nil, err
		}
		return tenantUser(tenant, uid), nil
	}
	name := runAs
	if name == "" {
		name = p.DefaultUser
	}
	u, err := p.resolve(name)
	switch {
	case errors.Is(err, errUnknownUser) && runAs != "":
		return nil, fmt.Errorf("tenant %s runs jobs as %s, who does not exist on this host", tenant, runAs)
	case errors.Is(err, errUnknownUser):
		return nil, fmt.Errorf("the agent's --default-user %s does not exist on this host", name)
	case err != nil:
		return nil, err
	case u.UID != 0:
		return u, nil
	case runAs == "":
		return nil, fmt.Errorf("the agent's --default-user %s is root; jobs run as root only for a tenant set with --run-as root, on an agent started with --allow-root", name)
	case !p.AllowRoot && runAs == "root":
		return nil, fmt.Errorf("tenant %s runs jobs as root; start the agent with --allow-root to allow it", tenant)
	case !p.AllowRoot:
		return nil, fmt.Errorf("tenant %s runs jobs as %s (root); start the agent with --allow-root to allow it", tenant, runAs)
	}
	return u, nil
}

// chooseUnprivileged is choose on an agent that cannot switch users: a
// tenant's user is accepted only when it is the agent's own.
func (p *userPolicy) chooseUnprivileged(tenant, runAs string) error {
	self := strconv.Itoa(p.EUID)
	if runAs == "" || runAs == self {
		return nil
	}
	u, err := p.lookup(runAs)
	if err == nil && u.Uid == self {
		return nil
	}
	me := self
	if u, err := lookupUser(self); err == nil {
		me = u.Username
	}
	return fmt.Errorf("tenant %s runs jobs as %s; this agent runs as %s and can only run jobs as itself (start it as root)", tenant, runAs, me)
}

func (p *userPolicy) lookup(nameOrUID string) (*user.User, error) {
	if p.Lookup == nil {
		return lookupUser(nameOrUID)
	}
	return p.Lookup(nameOrUID)
}

// resolve looks up name and reads its ids, groups and home.
func (p *userPolicy) resolve(name string) (*runUser, error) {
	if p.cache == nil {
		return p.resolveNow(name)
	}
	now := time.Now()
	p.cache.mu.Lock()
	c, ok := p.cache.m[name]
	p.cache.mu.Unlock()
	if ok && now.Sub(c.at) < userCacheFor {
		return c.u, nil
	}
	u, err := p.resolveNow(name)
	if err != nil {
		return nil, err
	}
	p.cache.mu.Lock()
	if p.cache.m == nil || len(p.cache.m) > 1000 {
		p.cache.m = make(map[string]cachedUser)
	}
	p.cache.m[name] = cachedUser{u: u, at: now}
	p.cache.mu.Unlock()
	return u, nil
}

// resolveNow is resolve without the cache.
func (p *userPolicy) resolveNow(name string) (*runUser, error) {
	u, err := p.lookup(name)
	if err != nil {
		return nil, err
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s: uid %q: %w", name, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s: gid %q: %w", name, u.Gid, err)
	}
	ids, err := groupIDs(u)
	if err != nil {
		return nil, fmt.Errorf("user %s: groups: %w", name, err)
	}
	groups := make([]uint32, 0, len(ids))
	for _, id := range ids {
		g, err := strconv.ParseUint(id, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("user %s: group id %q: %w", name, id, err)
		}
		groups = append(groups, uint32(g))
	}
	return &runUser{Name: u.Username, UID: uint32(uid), GID: uint32(gid), Groups: groups, Home: u.HomeDir}, nil
}

// tenantUser is the user of tenant's jobs under --default-user dynamic:
// uid (and gid) of its own, which no passwd entry names, in no other group,
// with / as its home. Jobs of different tenants then cannot signal each
// other or read each other's /proc (environment, secrets included).
func tenantUser(tenant string, uid uint32) *runUser {
	return &runUser{Name: "hodei-" + tenant, UID: uid, GID: uid, Groups: []uint32{uid}, Home: "/"}
}

// lookupUser finds a user by name, or by numeric uid when no user has that
// name. A user that does not exist is an error wrapping errUnknownUser.
//
// The binary is static (no cgo), so os/user reads only /etc/passwd: a user
// it does not find there is asked of the system's NSS through getent
// (LDAP, SSSD, systemd's dynamic users), as a cgo build would.
func lookupUser(nameOrUID string) (*user.User, error) {
	u, err := lookupUserFiles(nameOrUID)
	if !errors.Is(err, errUnknownUser) {
		return u, err
	}
	if nu, nerr := getentPasswd(nameOrUID); !errors.Is(nerr, errUnknownUser) {
		return nu, nerr
	}
	return nil, err
}

// lookupUserFiles is lookupUser through os/user alone.
func lookupUserFiles(nameOrUID string) (*user.User, error) {
	u, err := user.Lookup(nameOrUID)
	var unknown user.UnknownUserError
	if !errors.As(err, &unknown) {
		return u, err
	}
	if _, perr := strconv.ParseUint(nameOrUID, 10, 32); perr != nil {
		return nil, fmt.Errorf("user %s: %w", nameOrUID, errUnknownUser)
	}
	u, err = user.LookupId(nameOrUID)
	var unknownID user.UnknownUserIdError
	if errors.As(err, &unknownID) {
		return nil, fmt.Errorf("user %s: %w", nameOrUID, errUnknownUser)
	}
	return u, err
}

// groupIDs returns the ids of u's groups, its primary group first. They
// are asked of NSS (getent initgroups, the getgrouplist of a cgo build),
// which also knows the directory's groups of a local user; without a
// getent that answers, of /etc/group through os/user.
func groupIDs(u *user.User) ([]string, error) {
	if ids, err := getentGroups(u); err == nil {
		return ids, nil
	}
	return u.GroupIds()
}

// getentTimeout bounds one getent call: a directory that does not answer
// fails the job's start rather than hanging it.
const getentTimeout = 10 * time.Second

// getent runs `getent database key` and returns its output. A key getent
// does not find (exit 2), a host without getent, and a key that getent
// would take for an option (no user name starts with "-") are
// errUnknownUser.
func getent(database, key string) (string, error) {
	if key == "" || strings.HasPrefix(key, "-") {
		return "", fmt.Errorf("getent %s %q: %w", database, key, errUnknownUser)
	}
	ctx, cancel := context.WithTimeout(context.Background(), getentTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "getent", database, key).Output()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), nil
	case errors.Is(err, exec.ErrNotFound), errors.As(err, &exit) && exit.ExitCode() == 2:
		return "", fmt.Errorf("getent %s %s: %w", database, key, errUnknownUser)
	default:
		return "", fmt.Errorf("getent %s %s: %w", database, key, err)
	}
}

// getentPasswd looks nameOrUID up in NSS's passwd database (getent takes
// a name or a uid).
func getentPasswd(nameOrUID string) (*user.User, error) {
	out, err := getent("passwd", nameOrUID)
	if err != nil {
		return nil, err
	}
	line, _, _ := strings.Cut(out, "\n")
	// name:password:uid:gid:gecos:home:shell
	f := strings.Split(line, ":")
	if len(f) < 7 {
		return nil, fmt.Errorf("getent passwd %s: malformed entry %q", nameOrUID, line)
	}
	for _, id := range f[2:4] {
		if _, err := strconv.ParseUint(id, 10, 32); err != nil {
			return nil, fmt.Errorf("getent passwd %s: malformed entry %q", nameOrUID, line)
		}
	}
	name, _, _ := strings.Cut(f[4], ",") // gecos: full name, then room, phone…
	return &user.User{Username: f[0], Uid: f[2], Gid: f[3], Name: name, HomeDir: f[5]}, nil
}

// getentGroups returns u's groups from NSS: `getent initgroups NAME`
// prints the name and the ids of the groups that list it (not its primary
// group, which comes first here).
func getentGroups(u *user.User) ([]string, error) {
	out, err := getent("initgroups", u.Username)
	if err != nil {
		return nil, err
	}
	line, _, _ := strings.Cut(out, "\n")
	f := strings.Fields(line)
	if len(f) == 0 || f[0] != u.Username {
		return nil, fmt.Errorf("getent initgroups %s: unexpected output %q", u.Username, line)
	}
	ids := []string{u.Gid}
	for _, id := range f[1:] {
		if _, err := strconv.ParseUint(id, 10, 32); err != nil {
			return nil, fmt.Errorf("getent initgroups %s: unexpected output %q", u.Username, line)
		}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids, nil
}
