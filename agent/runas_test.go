package agent

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hodei-jobs/hodei/job"
)

// mustLookup returns the user name, failing the test when it does not exist.
func mustLookup(tb testing.TB, name string) *user.User {
	tb.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		tb.Fatalf("user %s: %v (the tests need it on this host)", name, err)
	}
	return u
}

// needRoot skips a test that switches users unless it runs as root.
func needRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("switching users needs root; run the agent tests as root to cover it (CI does)")
	}
}

// TestChooseUser covers the rule of who a job runs as. The agent's euid is
// given, so every case runs without root; the users are the host's.
func TestChooseUser(t *testing.T) {
	nobody := mustLookup(t, "nobody")
	nobodyUID := atoiT(t, nobody.Uid)
	for _, tc := range []struct {
		name      string
		policy    userPolicy
		runAs     string
		wantUser  string // "" with wantSelf or an error
		wantSelf  bool   // nil: the agent's own user
		wantError string // in the refusal
	}{
		{name: "RootAgentDefaultUser", policy: userPolicy{EUID: 0, DefaultUser: "nobody"}, wantUser: "nobody"},
		{name: "RootAgentTenantUser", policy: userPolicy{EUID: 0, DefaultUser: "daemon"}, runAs: "nobody", wantUser: "nobody"},
		{name: "RootAgentDynamicUser", policy: userPolicy{EUID: 0, DefaultUser: DynamicUser, Dynamic: mustTenantUIDs(t)}, wantUser: "hodei-ml"},
		{name: "RootAgentDynamicTenantUser", policy: userPolicy{EUID: 0, DefaultUser: DynamicUser, Dynamic: mustTenantUIDs(t)}, runAs: "nobody", wantUser: "nobody"},
		{name: "RootAgentTenantUID", policy: userPolicy{EUID: 0, DefaultUser: "daemon"}, runAs: nobody.Uid, wantUser: "nobody"},
		{name: "RootAgentTenantRootRefused", policy: userPolicy{EUID: 0, DefaultUser: "nobody"}, runAs: "root",
			wantError: "tenant ml runs jobs as root; start the agent with --allow-root to allow it"},
		{name: "RootAgentTenantUIDZeroRefused", policy: userPolicy{EUID: 0, DefaultUser: "nobody"}, runAs: "0",
			wantError: "tenant ml runs jobs as 0 (root); start the agent with --allow-root"},
		{name: "RootAgentTenantRootAllowed", policy: userPolicy{EUID: 0, DefaultUser: "nobody", AllowRoot: true}, runAs: "root", wantUser: "root"},
		{name: "RootAgentDefaultRootRefused", policy: userPolicy{EUID: 0, DefaultUser: "root", AllowRoot: true},
			wantError: "the agent's --default-user root is root; jobs run as root only for a tenant set with --run-as root, on an agent started with --allow-root"},
		{name: "RootAgentUnknownTenantUser", policy: userPolicy{EUID: 0, DefaultUser: "nobody"}, runAs: "hodei-no-such-user",
			wantError: "tenant ml runs jobs as hodei-no-such-user, who does not exist on this host"},
		{name: "RootAgentUnknownUID", policy: userPolicy{EUID: 0, DefaultUser: "nobody"}, runAs: "4000000001",
			wantError: "tenant ml runs jobs as 4000000001, who does not exist on this host"},
		{name: "RootAgentUnknownDefaultUser", policy: userPolicy{EUID: 0, DefaultUser: "hodei-no-such-user"},
			wantError: "the agent's --default-user hodei-no-such-user does not exist on this host"},
		{name: "UserAgentNoTenantUser", policy: userPolicy{EUID: nobodyUID, DefaultUser: "daemon"}, wantSelf: true},
		{name: "UserAgentItself", policy: userPolicy{EUID: nobodyUID}, runAs: "nobody", wantSelf: true},
		{name: "UserAgentItselfByUID", policy: userPolicy{EUID: nobodyUID}, runAs: nobody.Uid, wantSelf: true},
		{name: "UserAgentOtherUserRefused", policy: userPolicy{EUID: nobodyUID, AllowRoot: true}, runAs: "root",
			wantError: "tenant ml runs jobs as root; this agent runs as nobody and can only run jobs as itself (start it as root)"},
		{name: "UserAgentUnknownUserRefused", policy: userPolicy{EUID: nobodyUID}, runAs: "hodei-no-such-user",
			wantError: "tenant ml runs jobs as hodei-no-such-user; this agent runs as nobody and can only run jobs as itself"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.policy.Lookup = lookupUser
			u, err := tc.policy.choose("ml", tc.runAs)
			switch {
			case tc.wantError != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantError) {
					t.Fatalf("choose = %+v, %v; want the refusal %q", u, err, tc.wantError)
				}
				return
			case err != nil:
				t.Fatalf("choose: %v", err)
			case tc.wantSelf:
				if u != nil {
					t.Fatalf("choose = %+v, want nil (the agent itself)", u)
				}
				return
			}
			if strings.HasPrefix(tc.wantUser, "hodei-") { // a tenant's dynamic user: no passwd entry
				if u == nil || u.Name != tc.wantUser || u.UID < dynamicUIDBase || u.GID != u.UID || u.Home != "/" {
					t.Fatalf("choose = %+v, want the tenant's dynamic user", u)
				}
				return
			}
			want := mustLookup(t, tc.wantUser)
			if u == nil || u.Name != want.Username || strconv.Itoa(int(u.UID)) != want.Uid ||
				strconv.Itoa(int(u.GID)) != want.Gid || u.Home != want.HomeDir {
				t.Fatalf("choose = %+v, want %+v", u, want)
			}
			ids, _ := want.GroupIds()
			if got := groupStrings(u.Groups); !slices.Equal(got, sortedCopy(ids)) {
				t.Errorf("groups %v, want %v", got, ids)
			}
		})
	}
}

func TestNewUserPolicy(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct{ name, user, want string }{
		{"Root", "root", `default-user: "root" is root; name an unprivileged user`},
		{"UIDZero", "0", `default-user: "0" is root`},
		{"Unknown", "hodei-no-such-user", `default-user: user "hodei-no-such-user" does not exist on this host`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newUserPolicy(tc.user, true)
			var fe *job.FieldError
			if !errors.As(err, &fe) || fe.Field != "default-user" || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("newUserPolicy(%q) = %v, want a FieldError starting %q", tc.user, err, tc.want)
			}
		})
	}
	t.Run("DefaultIsNobody", func(t *testing.T) {
		p, err := newUserPolicy("", false)
		if err != nil || p.DefaultUser != "nobody" || p.EUID != 0 {
			t.Fatalf("newUserPolicy = %+v, %v; want nobody as the default user", p, err)
		}
	})
}

// TestAttemptRunsAsUser runs real jobs as another user: the process has
// that user's uid, groups, home and terminal, and the spool stays the
// agent's.
func TestAttemptRunsAsUser(t *testing.T) {
	needRoot(t)
	nobody := mustLookup(t, "nobody")
	groups, err := nobody.GroupIds()
	if err != nil {
		t.Fatal(err)
	}
	root := mustLookup(t, "root")
	policy := &userPolicy{EUID: 0, DefaultUser: "nobody", Lookup: lookupUser}
	script := `id -u; id -G; echo "$HOME $USER $LOGNAME"; pwd; [ -t 0 ] && stat -c %u "$(tty)" || echo no-tty`
	for _, tc := range []struct {
		name  string
		spec  attemptSpec
		allow bool
		want  []string // lines of output
	}{
		{"DefaultUserPTY", attemptSpec{}, false,
			[]string{nobody.Uid, strings.Join(groups, " "), nobody.HomeDir + " nobody nobody", homeOrRoot(nobody.HomeDir), nobody.Uid}},
		{"TenantUserPipes", attemptSpec{RunAs: "nobody", NoPTY: true}, false,
			[]string{nobody.Uid, strings.Join(groups, " "), nobody.HomeDir + " nobody nobody", homeOrRoot(nobody.HomeDir), "no-tty"}},
		{"WorkDirWins", attemptSpec{RunAs: "nobody", Dir: "/tmp"}, false,
			[]string{nobody.Uid, strings.Join(groups, " "), nobody.HomeDir + " nobody nobody", "/tmp", nobody.Uid}},
		{"RootWithConsent", attemptSpec{RunAs: "root", NoPTY: true}, true,
			[]string{"0", rootGroups(t, root), root.HomeDir + " root root", homeOrRoot(root.HomeDir), "no-tty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := *policy
			p.AllowRoot = tc.allow
			spec := tc.spec
			spec.Argv, spec.Tenant = shArgv(script), "ml"
			a := mustStartAttempt(t, spec, attemptOptions{Users: &p})
			errc := make(chan []byte, 1)
			go func() { errc <- readSpool(t, a.Stderr()) }()
			out := strings.ReplaceAll(string(readSpool(t, a.Output())), "\r\n", "\n")
			stderr := <-errc
			e := waitAttempt(t, a, 20*time.Second)
			if e.Outcome != exited || e.ExitCode != 0 {
				t.Fatalf("exit %+v, stderr %q", e, stderr)
			}
			fi, err := os.Stat(a.Output().Path())
			if err != nil {
				t.Fatal(err)
			}
			if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 {
				t.Errorf("spool owned by uid %d, want the agent's (0)", st.Uid)
			}
			// id -G prints the groups in the kernel's order: compare sets.
			got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			want := slices.Clone(tc.want)
			if len(got) == len(want) {
				got[1] = strings.Join(sortedCopy(strings.Fields(got[1])), " ")
				want[1] = strings.Join(sortedCopy(strings.Fields(want[1])), " ")
			}
			if !slices.Equal(got, want) {
				t.Errorf("output\n%s\nwant lines\n%s", out, strings.Join(tc.want, "\n"))
			}
		})
	}
	t.Run("Refused", func(t *testing.T) {
		a := mustStartAttempt(t, attemptSpec{Argv: []string{"true"}, Tenant: "ml", RunAs: "root"}, attemptOptions{Users: policy})
		e := waitAttempt(t, a, time.Second)
		want := "tenant ml runs jobs as root; start the agent with --allow-root to allow it"
		if e.Outcome != startFailed || e.Reason != want {
			t.Fatalf("exit %+v, want startFailed with %q", e, want)
		}
	})
}

func homeOrRoot(home string) string {
	if isDir(home) {
		return home
	}
	return "/"
}

func rootGroups(t *testing.T, root *user.User) string {
	ids, err := root.GroupIds()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(ids, " ")
}

func groupStrings(gs []uint32) []string {
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = strconv.Itoa(int(g))
	}
	slices.Sort(out)
	return out
}

func sortedCopy(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func atoiT(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestTenantUIDs: under --default-user dynamic each tenant has a uid of its
// own, above any real user's, kept across restarts, also for two tenants
// whose names hash to the same uid.
func TestTenantUIDs(t *testing.T) {
	path := filepath.Join(t.TempDir(), tenantUIDsFile)
	u, err := openTenantUIDs(path)
	if err != nil {
		t.Fatal(err)
	}
	// alpha and t43d762 hash to the same slot.
	tenants := []string{"alpha", "t43d762"}
	for i := range 200 {
		tenants = append(tenants, fmt.Sprintf("team-%d", i))
	}
	given := map[string]uint32{}
	seen := map[uint32]string{}
	for _, tenant := range tenants {
		id, err := u.uid(tenant)
		if err != nil {
			t.Fatal(err)
		}
		if id < dynamicUIDBase || id >= dynamicUIDBase+dynamicUIDSpan {
			t.Fatalf("tenant %s: uid %d out of the dynamic range", tenant, id)
		}
		if other, dup := seen[id]; dup {
			t.Fatalf("tenants %s and %s share uid %d", other, tenant, id)
		}
		seen[id], given[tenant] = tenant, id
	}
	again, err := openTenantUIDs(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tenant := range slices.Backward(tenants) { // another order: the file decides, not the order
		if id, err := again.uid(tenant); err != nil || id != given[tenant] {
			t.Fatalf("after a restart tenant %s has uid %d (%v), want %d", tenant, id, err, given[tenant])
		}
	}
}

func mustTenantUIDs(t *testing.T) *tenantUIDs {
	t.Helper()
	u, err := openTenantUIDs(filepath.Join(t.TempDir(), tenantUIDsFile))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// fakeGetent puts on PATH a getent that knows one directory user, ldapuser
// (uid 4000000042, primary group 4000000043, in groups 4000000044 and
// 4000000045), as LDAP or SSSD would through NSS, and nobody else.
func fakeGetent(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	script := `#!/bin/sh
case "$1 $2" in
"passwd ldapuser"|"passwd 4000000042") echo 'ldapuser:*:4000000042:4000000043:LDAP User,Room 1:/home/ldapuser:/bin/bash' ;;
"initgroups ldapuser") echo 'ldapuser              4000000044 4000000045 4000000043' ;;
*) exit 2 ;;
esac
`
	if err := os.WriteFile(filepath.Join(dir, "getent"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
}

// TestLookupUserNSS: a user that /etc/passwd does not have (the static
// binary's os/user reads only the files) is found through getent, by name
// and by uid, with its directory groups; a user nobody has stays unknown.
func TestLookupUserNSS(t *testing.T) {
	fakeGetent(t)
	want := runUser{Name: "ldapuser", UID: 4000000042, GID: 4000000043,
		Groups: []uint32{4000000043, 4000000044, 4000000045}, Home: "/home/ldapuser"}
	for _, key := range []string{"ldapuser", "4000000042"} {
		t.Run(key, func(t *testing.T) {
			u, err := lookupUser(key)
			if err != nil {
				t.Fatalf("lookupUser(%s): %v", key, err)
			}
			if u.Username != "ldapuser" || u.Uid != "4000000042" || u.Gid != "4000000043" || u.Name != "LDAP User" || u.HomeDir != "/home/ldapuser" {
				t.Fatalf("lookupUser(%s) = %+v", key, u)
			}
			p := userPolicy{EUID: 0, DefaultUser: "nobody", Lookup: lookupUser}
			got, err := p.choose("ml", key)
			if err != nil {
				t.Fatalf("choose(%s): %v", key, err)
			}
			if got.Name != want.Name || got.UID != want.UID || got.GID != want.GID || got.Home != want.Home ||
				!slices.Equal(got.Groups, want.Groups) {
				t.Fatalf("choose(%s) = %+v, want %+v", key, got, want)
			}
		})
	}
	for _, key := range []string{"hodei-no-such-user", "4000000001", "-s"} {
		if u, err := lookupUser(key); !errors.Is(err, errUnknownUser) {
			t.Errorf("lookupUser(%s) = %+v, %v; want errUnknownUser", key, u, err)
		}
	}
	// A local user's directory groups come from NSS too.
	root, err := lookupUser("root")
	if err != nil {
		t.Fatal(err)
	}
	if ids, err := groupIDs(root); err != nil || !slices.Equal(ids, []string{"0"}) {
		t.Errorf("groupIDs(root) = %v, %v; want [0] (the fake getent has no groups for root)", ids, err)
	}
}

// TestLookupUserRoot looks root up on this host through the real getent
// and os/user: both say uid 0, and its groups are those `id -G root`
// prints.
func TestLookupUserRoot(t *testing.T) {
	if _, err := exec.LookPath("getent"); err != nil {
		t.Skip("no getent on this host")
	}
	viaNSS, err := getentPasswd("root")
	if err != nil {
		t.Fatalf("getent passwd root: %v", err)
	}
	viaFiles, err := lookupUserFiles("0")
	if err != nil {
		t.Fatalf("os/user root: %v", err)
	}
	if *viaNSS != *viaFiles {
		t.Errorf("getent passwd root = %+v, os/user = %+v", viaNSS, viaFiles)
	}
	ids, err := getentGroups(viaNSS)
	if err != nil {
		t.Fatalf("getent initgroups root: %v", err)
	}
	out, err := exec.Command("id", "-G", "root").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sortedCopy(ids), sortedCopy(strings.Fields(string(out))); !slices.Equal(got, want) {
		t.Errorf("getent initgroups root = %v, id -G root = %v", got, want)
	}
}
