package cli

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	hodeipb "github.com/hodei-jobs/hodei/proto"
)

func TestSubmitArray(t *testing.T) {
	h := newHarness(t)
	r := h.run(t, "submit", "--array", "0-99%10", "--name", "render", "--", "./render.sh")
	r.wantOK(t)
	if r.stdout != "01J0000000000000000000ARAY\n" {
		t.Errorf("stdout = %q, want the array id", r.stdout)
	}
	if spec := h.jobs.lastSpec(t); spec.GetName() != "render" || !slices.Equal(spec.GetCommand(), []string{"./render.sh"}) {
		t.Errorf("spec = %v", spec)
	}
	h.jobs.mu.Lock()
	arrays := slices.Clone(h.jobs.arrays)
	h.jobs.mu.Unlock()
	if !slices.Equal(arrays, []string{"0-99%10"}) {
		t.Errorf("arrays sent = %q, want [0-99%%10]", arrays)
	}

	r = h.run(t, "submit", "-o", "json", "--array", "7", "--", "true")
	r.wantOK(t)
	var got struct {
		ID  string   `json:"id"`
		IDs []string `json:"ids"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || got.ID != "01J0000000000000000000ARAY" || len(got.IDs) != 2 {
		t.Errorf("JSON = %s (%v), want the array id and the job ids", r.stdout, err)
	}
}

func TestSubmitArrayUsageErrors(t *testing.T) {
	for _, tc := range []struct{ name, array, want string }{
		{"Empty", "", `--array: "": want FIRST-LAST[%MAX]`},
		{"Words", "a-b", `--array: "a-b": want FIRST-LAST[%MAX]`},
		{"Negative", "-1-5", "--array: "},
		{"Backwards", "9-3", "--array: range 9-3 ends before it starts"},
		{"ZeroLimit", "0-9%0", "--array: \"0-9%0\": the %MAX after the range must be a number of at least 1"},
		{"TooMany", "0-1000001", "--array: indices must be between 0 and 1000000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			r := h.run(t, "submit", "--array", tc.array, "--", "true")
			if r.code != 2 || !strings.HasPrefix(r.stderr, "hodei: ") || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", r.code, r.stderr, tc.want)
			}
			if n := h.jobs.submits(); n != 0 {
				t.Errorf("server got %d submits, want none", n)
			}
		})
	}
	t.Run("NotOnRun", func(t *testing.T) {
		h := newHarness(t)
		r := h.run(t, "run", "--array", "0-3", "--", "true")
		if r.code != 2 || !strings.Contains(r.stderr, "unknown flag --array") {
			t.Errorf("exit %d, stderr %q; want 2 and unknown flag", r.code, r.stderr)
		}
	})
}

func TestJobsArrayAndPipelineFilters(t *testing.T) {
	h := newHarness(t)
	r := h.run(t, "jobs", "ls", "--array", "01J0000000000000000000ARAY", "--pipeline", testPipelineID)
	r.wantOK(t)
	want := &hodeipb.ListJobsRequest{Array: "01J0000000000000000000ARAY", Pipeline: testPipelineID, PageSize: defaultLimit, Count: true}
	if reqs := h.jobs.lists(); len(reqs) != 1 || !proto.Equal(reqs[0], want) {
		t.Errorf("requests = %v, want [%v]", reqs, want)
	}
}

func TestJobsCancelArray(t *testing.T) {
	h := newHarness(t)
	r := h.run(t, "jobs", "cancel", "--array", "01J0000000000000000000ARAY", "--reason", "enough")
	r.wantOK(t)
	if r.stdout != "01J00000000000000000000011\n" {
		t.Errorf("stdout = %q, want the cancelled ids", r.stdout)
	}
	h.jobs.mu.Lock()
	reqs := slices.Clone(h.jobs.arrayCancels)
	h.jobs.mu.Unlock()
	if len(reqs) != 1 || reqs[0].GetId() != "01J0000000000000000000ARAY" || reqs[0].GetReason() != "enough" {
		t.Errorf("requests = %v", reqs)
	}
	if n := len(h.jobs.cancelReqs()); n != 0 {
		t.Errorf("%d single-job cancels, want none", n)
	}

	r = h.run(t, "jobs", "cancel", "-o", "json", "--array", "01J0000000000000000000ARAY")
	r.wantOK(t)
	var got struct {
		Array     string   `json:"array"`
		Cancelled []string `json:"cancelled"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || got.Array != "01J0000000000000000000ARAY" || len(got.Cancelled) != 1 {
		t.Errorf("JSON = %s (%v)", r.stdout, err)
	}

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"Both", []string{"--array", "01J0000000000000000000ARAY", "01JAAAAAAAAAAAAAAAAAAAAAA1"}, 2, "give either a job ID or --array ID, not both"},
		{"Neither", nil, 2, "missing job ID (or --array ID)"},
		{"EmptyArray", []string{"--array", ""}, 2, "--array: must not be empty"},
		{"UnknownArray", []string{"--array", "01J0000000000000000000NONE"}, 1, "hodei: array 01J0000000000000000000NONE not found\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.run(t, append([]string{"jobs", "cancel"}, tc.args...)...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", r.code, r.stderr, tc.code, tc.want)
			}
		})
	}
}
