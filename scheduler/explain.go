package scheduler

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hodei-jobs/hodei/job"
	"github.com/hodei-jobs/hodei/quota"
)

// A waiting job says why it waits (Why), as Nomad's placement failures
// do: the constraint it cannot meet and the counts behind it. The
// functions here are pure, like Decide: the cluster hands them the
// registered workers or a tenant's figures and renders the answer at the
// edge (Why.String). They explain by capacity and labels, never by load:
// a job that some ready worker could take once it has room is not
// unplaceable, only queued.

// WhyKind says which constraint keeps a waiting job from starting. Its
// numbers equal the wire's PendingKind.
type WhyKind int

const (
	// WhyNone: nothing keeps it; it may start at the next pass.
	WhyNone WhyKind = iota
	// WhyNoWorkers: no worker has registered at all.
	WhyNoWorkers
	// WhyLabels: no worker of the pool has the labels its selector asks
	// for.
	WhyLabels
	// WhySlots, WhyCPU, WhyMemory: every worker of the pool with its
	// labels has less of that resource than it asks for.
	WhySlots
	WhyCPU
	WhyMemory
	// WhyResources: each resource alone fits some worker with its labels,
	// but none has them all at once.
	WhyResources
	// WhyDraining: the workers that could take it are all draining (some
	// may be down too).
	WhyDraining
	// WhyDown: the workers that could take it are all down or not
	// connected.
	WhyDown
	// WhyTenantLimit: its tenant holds as much as its running limit lets
	// it, or the job alone asks for more than that limit.
	WhyTenantLimit
	// WhyArrayLimit: its array runs as many tasks as its limit allows.
	WhyArrayLimit
	// WhyDependency: a job it depends on has not completed.
	WhyDependency
	// WhyBackoff: it waits out the backoff before a retry.
	WhyBackoff
	// WhyQueued: it could start, and waits for the jobs ahead of it.
	WhyQueued
	// WhyReserved: the last pass kept a worker for it (a Hold): it waits
	// for the jobs running there to leave it room.
	WhyReserved
	// WhyHeldBack: it would fit the room the last pass kept on a worker
	// for another job (Dep), which goes first: there is no backfill.
	WhyHeldBack
)

var whyKindNames = [...]string{
	WhyNone: "none", WhyNoWorkers: "no-workers", WhyLabels: "labels", WhySlots: "slots",
	WhyCPU: "cpu", WhyMemory: "memory", WhyResources: "resources", WhyDraining: "draining",
	WhyDown: "down", WhyTenantLimit: "tenant-limit", WhyArrayLimit: "array-limit",
	WhyDependency: "dependency", WhyBackoff: "backoff", WhyQueued: "queued",
	WhyReserved: "reserved", WhyHeldBack: "held-back",
}

// String is the kind's short name, as `--output json` shows it.
func (k WhyKind) String() string {
	if k >= 0 && int(k) < len(whyKindNames) {
		return whyKindNames[k]
	}
	return "WhyKind(" + strconv.Itoa(int(k)) + ")"
}

// Why is why one waiting job waits: a Kind and the figures that go with
// it (the fields a kind does not use stay zero). String renders it.
type Why struct {
	Kind WhyKind
	// Registered says the pool explained against is every registered
	// worker (no worker is ready, or submit's require-fit check) rather
	// than the ready ones.
	Registered bool
	// Label is the selector pair no worker of the pool has ("zone=c"), or
	// with Joint, the whole selector, which no worker has at once.
	Label string
	Joint bool
	// Of is how many workers the pool holds (labels, resources), or how
	// many are registered (draining, down).
	Of int
	// Draining and Down count the workers that could take the job, by
	// why they do not (WhyDraining, WhyDown).
	Draining, Down int
	// Need is what the job asks for of the resource in question, Have the
	// most any worker of the pool with its labels offers. Selector is the
	// job's selector, rendered, when it has one.
	Need, Have int64
	Selector   string
	// Req is the whole request (WhyResources).
	Req job.Resources
	// Tenant, Limit (its flag name: max-running, cpu, memory), Held and
	// Cap: the tenant at its running limit (WhyTenantLimit). Held is what
	// its Scheduled and Running jobs hold of that resource, Cap the limit
	// (raised while it bursts); Need as above.
	Tenant, Limit string
	Held, Cap     int64
	// Array, Running and ArrayCap: the array at its limit.
	Array             string
	Running, ArrayCap int
	// Dep and DepState: the dependency it waits for.
	Dep      string
	DepState job.State
	// Attempt and Left: the retry and how long its backoff has left.
	Attempt int
	Left    time.Duration
	// Ahead counts the jobs ahead of it in its tenant's queue; AtLeast
	// says the count stopped there.
	Ahead   int
	AtLeast bool
	// Worker and Resource: the worker kept for the job (WhyReserved) or
	// for the one it is behind (WhyHeldBack, Dep that job), and the
	// resource that job waits for there ("slots", "cpu", "memory"); Need
	// is what that job asks for of it, Have what the worker had free.
	Worker, Resource string
}

// Unplaceable reports whether the job waits for a worker that no ready
// worker is, by capacity or labels, rather than for room or its turn.
func (w Why) Unplaceable() bool {
	return w.Kind >= WhyNoWorkers && w.Kind <= WhyDown
}

// String renders w for people: "no ready worker has label zone=c (0 of
// 3)", "needs 5 slots; the largest worker has 2". What a job asks for is
// written as it was given; what workers have, with thousands separators.
func (w Why) String() string {
	pool := "ready worker"
	if w.Registered {
		pool = "registered worker"
	}
	largest := "the largest worker"
	if w.Registered {
		largest = "the largest registered worker"
	}
	if w.Selector != "" {
		largest += " with " + w.Selector
	}
	switch w.Kind {
	case WhyNone:
		return ""
	case WhyNoWorkers:
		return "no worker has registered; start one with 'hodei agent'"
	case WhyLabels:
		if w.Joint {
			return fmt.Sprintf("no %s has labels %s together (0 of %d)", pool, w.Label, w.Of)
		}
		return fmt.Sprintf("no %s has label %s (0 of %d)", pool, w.Label, w.Of)
	case WhySlots:
		unit := "slots"
		if w.Need == 1 {
			unit = "slot"
		}
		return fmt.Sprintf("needs %s %s; %s has %s", job.Thousands(w.Need), unit, largest, job.Thousands(w.Have))
	case WhyCPU:
		return fmt.Sprintf("needs %s CPU millis; %s has %s CPU millis", job.Thousands(w.Need), largest, job.Thousands(w.Have))
	case WhyMemory:
		return fmt.Sprintf("needs %s MiB; %s has %s MiB", job.Thousands(w.Need), largest, job.Thousands(w.Have))
	case WhyResources:
		return fmt.Sprintf("no %s has %s slots, %s CPU millis and %s MiB at once (0 of %d)",
			pool, job.Thousands(w.Req.Slots), job.Thousands(w.Req.CPUMillis), job.Thousands(w.Req.MemoryMiB), w.Of)
	case WhyDraining:
		if w.Down > 0 {
			return fmt.Sprintf("all matching workers draining or down (%d draining, %d down)", w.Draining, w.Down)
		}
		return fmt.Sprintf("all matching workers draining (%d of %d workers match)", w.Draining, w.Of)
	case WhyDown:
		return fmt.Sprintf("all matching workers down or disconnected (%d of %d workers match)", w.Down, w.Of)
	case WhyTenantLimit:
		unit := ""
		switch w.Limit {
		case "cpu":
			unit = " CPU millis"
		case "memory":
			unit = " MiB"
		}
		if w.Need > w.Cap {
			what := map[string]string{"max-running": "slots", "cpu": "CPU millis", "memory": "MiB"}[w.Limit]
			return fmt.Sprintf("needs %s %s; tenant %s's %s limit is %s%s", job.Thousands(w.Need), what, w.Tenant, w.Limit, job.Thousands(w.Cap), unit)
		}
		if w.Held >= w.Cap {
			return fmt.Sprintf("tenant %s at its %s limit (%s of %s%s)", w.Tenant, w.Limit, job.Thousands(w.Held), job.Thousands(w.Cap), unit)
		}
		return fmt.Sprintf("tenant %s near its %s limit (%s of %s%s held; the job needs %s)",
			w.Tenant, w.Limit, job.Thousands(w.Held), job.Thousands(w.Cap), unit, job.Thousands(w.Need))
	case WhyArrayLimit:
		return fmt.Sprintf("array %s at its limit (%d of %d running)", w.Array, w.Running, w.ArrayCap)
	case WhyDependency:
		return fmt.Sprintf("waiting for %s (%s)", w.Dep, w.DepState)
	case WhyBackoff:
		return fmt.Sprintf("attempt %d waits out its retry backoff (%s left)", w.Attempt, roundLeft(w.Left))
	case WhyReserved:
		return fmt.Sprintf("waits for %d %s on %s; %s free", w.Need, resourceUnit(w.Resource, w.Need), w.Worker, job.Thousands(w.Have))
	case WhyHeldBack:
		return fmt.Sprintf("behind %s (needs %d %s on %s)", w.Dep, w.Need, resourceUnit(w.Resource, w.Need), w.Worker)
	case WhyQueued:
		more := ""
		if w.AtLeast {
			more = "+"
		}
		if w.Ahead == 0 && !w.AtLeast {
			return fmt.Sprintf("next in tenant %s", w.Tenant)
		}
		return fmt.Sprintf("%s%s ahead in tenant %s", job.Thousands(int64(w.Ahead)), more, w.Tenant)
	}
	return w.Kind.String()
}

// resourceUnit is how an amount n of resource ("slots", "cpu",
// "memory") is written.
func resourceUnit(resource string, n int64) string {
	switch resource {
	case "cpu":
		return "CPU millis"
	case "memory":
		return "MiB"
	case "slots":
		if n == 1 {
			return "slot"
		}
	}
	return resource
}

// Reserved explains the wait of a job of req for which a pass kept the
// worker named worker, which had free free (see Hold): the first
// resource, slots then cpu then memory, of which it has less free than
// the job asks for.
func Reserved(req job.Resources, worker string, free job.Resources) Why {
	req = need(req)
	why := Why{Kind: WhyReserved, Worker: worker}
	switch {
	case req.Slots > free.Slots:
		why.Resource, why.Need, why.Have = "slots", req.Slots, max(free.Slots, 0)
	case req.CPUMillis > free.CPUMillis:
		why.Resource, why.Need, why.Have = "cpu", req.CPUMillis, max(free.CPUMillis, 0)
	default:
		why.Resource, why.Need, why.Have = "memory", req.MemoryMiB, max(free.MemoryMiB, 0)
	}
	return why
}

// HeldBack explains the wait of a job that would fit the room kept for
// job id, whose wait is reserved (from Reserved).
func HeldBack(id string, reserved Why) Why {
	reserved.Kind, reserved.Dep = WhyHeldBack, id
	return reserved
}

// roundLeft rounds a wait for display: to the second, or to the
// millisecond under one.
func roundLeft(d time.Duration) time.Duration {
	if d < time.Second {
		return max(d.Round(time.Millisecond), 0)
	}
	return d.Round(time.Second)
}

// WorkerStatus is what an explanation knows of one registered worker.
type WorkerStatus struct {
	Labels    map[string]string
	Capacity  job.Resources
	State     job.WorkerState
	Connected bool
}

// ready reports whether the worker takes work now, as a pass sees it.
func (w *WorkerStatus) ready() bool { return w.Connected && w.State == job.WorkerReady }

// takes reports whether the worker could ever take a job of req and sel:
// its capacity and labels, whatever it runs.
func (w *WorkerStatus) takes(req job.Resources, sel map[string]string) bool {
	return w.Capacity.Covers(need(req)) && job.LabelsMatch(w.Labels, sel)
}

// need is what a job of req takes of a worker: at least one slot, as
// placement counts it.
func need(req job.Resources) job.Resources {
	req.Slots = max(req.Slots, 1)
	return req
}

// Placeable reports whether a ready worker of workers could ever take a
// job of req and sel, by its capacity and labels, whatever it runs:
// exactly when Unfit says WhyNone. It costs O(len(workers)) at most.
func Placeable(req job.Resources, sel map[string]string, workers []WorkerStatus) bool {
	for i := range workers {
		if w := &workers[i]; w.ready() && w.takes(req, sel) {
			return true
		}
	}
	return false
}

// Unfit explains why no ready worker of workers could ever take a job of
// req and sel, whatever they run: none is registered, the ready ones lack
// its labels or a resource, or those that could take it are draining or
// down. WhyNone when a ready worker could. It costs O(len(workers)).
func Unfit(req job.Resources, sel map[string]string, workers []WorkerStatus) Why {
	if len(workers) == 0 {
		return Why{Kind: WhyNoWorkers}
	}
	var ready []*WorkerStatus
	why := Why{}
	for i := range workers {
		w := &workers[i]
		if w.takes(req, sel) {
			switch {
			case w.ready():
				return Why{}
			case w.State == job.WorkerDraining:
				why.Draining++
			default:
				why.Down++
			}
		}
		if w.ready() {
			ready = append(ready, w)
		}
	}
	if why.Draining+why.Down > 0 {
		why.Of = len(workers)
		why.Kind = WhyDraining
		if why.Draining == 0 {
			why.Kind = WhyDown
		}
		return why
	}
	if len(ready) == 0 {
		// No ready worker at all: what no registered one has is the
		// lasting trouble.
		return lacking(req, sel, all(workers), true)
	}
	return lacking(req, sel, ready, false)
}

// NeverFits explains why no registered worker, whatever its state or
// load, could take a job of req and sel; WhyNone when one could. It is
// submit's require-fit check.
func NeverFits(req job.Resources, sel map[string]string, workers []WorkerStatus) Why {
	if len(workers) == 0 {
		return Why{Kind: WhyNoWorkers}
	}
	for i := range workers {
		if workers[i].takes(req, sel) {
			return Why{}
		}
	}
	return lacking(req, sel, all(workers), true)
}

func all(workers []WorkerStatus) []*WorkerStatus {
	out := make([]*WorkerStatus, len(workers))
	for i := range workers {
		out[i] = &workers[i]
	}
	return out
}

// lacking says what no worker of pool (none of which takes the job) has:
// a label of sel, all of sel at once, or one resource; or all resources
// at once.
func lacking(req job.Resources, sel map[string]string, pool []*WorkerStatus, registered bool) Why {
	why := Why{Registered: registered, Of: len(pool)}
	var matching []*WorkerStatus
	for _, w := range pool {
		if job.LabelsMatch(w.Labels, sel) {
			matching = append(matching, w)
		}
	}
	keys := slices.Sorted(maps.Keys(sel))
	if len(matching) == 0 {
		why.Kind = WhyLabels
		for _, k := range keys {
			found := false
			for _, w := range pool {
				if v, ok := w.Labels[k]; ok && v == sel[k] {
					found = true
					break
				}
			}
			if !found {
				why.Label = k + "=" + sel[k]
				return why
			}
		}
		why.Label, why.Joint = renderSelector(keys, sel), true
		return why
	}
	if len(sel) > 0 {
		why.Selector = renderSelector(keys, sel)
	}
	req = need(req)
	var most job.Resources
	for _, w := range matching {
		most.Slots = max(most.Slots, w.Capacity.Slots)
		most.CPUMillis = max(most.CPUMillis, w.Capacity.CPUMillis)
		most.MemoryMiB = max(most.MemoryMiB, w.Capacity.MemoryMiB)
	}
	switch {
	case req.Slots > most.Slots:
		why.Kind, why.Need, why.Have = WhySlots, req.Slots, most.Slots
	case req.CPUMillis > most.CPUMillis:
		why.Kind, why.Need, why.Have = WhyCPU, req.CPUMillis, most.CPUMillis
	case req.MemoryMiB > most.MemoryMiB:
		why.Kind, why.Need, why.Have = WhyMemory, req.MemoryMiB, most.MemoryMiB
	default:
		why.Kind, why.Req, why.Of = WhyResources, req, len(matching)
	}
	return why
}

// renderSelector writes a selector as "k=v,k2=v2", keys in order.
func renderSelector(keys []string, sel map[string]string) string {
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(sel[k])
	}
	return b.String()
}

// TenantLimit explains why a tenant whose Scheduled and Running jobs hold
// held, in burst state b (brought to now), may not start a job of req:
// the first of its running limits (slots, cpu, memory) that the job would
// pass. WhyNone when Admit would let it start.
func TenantLimit(tenant string, l quota.Limits, b quota.Burst, held, req job.Resources, now time.Time) Why {
	req = need(req)
	if _, ok := l.Admit(b, held, req, now); ok {
		return Why{}
	}
	capAt := l.Cap(b)
	if l.Bursts() && b.Phase == quota.Steady {
		capAt = l.Cap(quota.Burst{Phase: quota.Bursting}) // what a burst would allow
	}
	why := Why{Kind: WhyTenantLimit, Tenant: tenant}
	for _, d := range []struct {
		limit           string
		held, need, cap int64
	}{
		{"max-running", held.Slots, req.Slots, capAt.Slots},
		{"cpu", held.CPUMillis, req.CPUMillis, capAt.CPUMillis},
		{"memory", held.MemoryMiB, req.MemoryMiB, capAt.MemoryMiB},
	} {
		if d.cap > 0 && d.held+d.need > d.cap {
			why.Limit, why.Held, why.Need, why.Cap = d.limit, d.held, d.need, d.cap
			return why
		}
	}
	// Over no single limit: Admit refused for the burst's cap, which a
	// steady tenant does not have yet. Show the running limit.
	m := l.MaxRunning
	why.Limit, why.Held, why.Need, why.Cap = "max-running", held.Slots, req.Slots, m.Slots
	return why
}
