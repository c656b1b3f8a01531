package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	pb "github.com/hodei-jobs/hodei/proto"
)

// journal keeps, in the agent's data dir, the results the server has not
// acknowledged (journal/<job>-<attempt>.result) beside the spooled output of
// every attempt (spool/<job>-<attempt>.out and .err), so that a result and
// its output survive an agent restart until they are delivered. Results are
// written atomically but not fsync'd: they must survive the agent's death,
// which keeps the page cache; a power loss takes the agent's jobs with it
// anyway, and the server retries those as worker lost.
type journal struct {
	dir      string
	spoolDir string
}

func openJournal(dataDir string) (*journal, error) {
	j := &journal{dir: filepath.Join(dataDir, "journal"), spoolDir: filepath.Join(dataDir, "spool")}
	for _, d := range []string{j.dir, j.spoolDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("journal: %w", err)
		}
	}
	return j, nil
}

func (j *journal) name(r ref) string { return r.job + "-" + strconv.Itoa(r.attempt) }

// save records a result until remove.
func (j *journal) save(res *pb.JobFinished) error {
	b, err := proto.Marshal(res)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(j.dir, j.name(ref{res.GetJobId(), int(res.GetAttempt())})+".result"), b)
}

// remove forgets a delivered result.
func (j *journal) remove(r ref) error {
	err := os.Remove(filepath.Join(j.dir, j.name(r)+".result"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// recover returns a task for every journaled result, with its output
// re-opened for sending. Spool files without a result belong to attempts
// that died with the previous agent process: the server fails those as
// worker lost, so their output is deleted.
func (j *journal) recover() ([]*task, error) {
	ents, err := os.ReadDir(j.dir)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	keep := map[string]bool{}
	var tasks []*task
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".result")
		if !ok {
			os.Remove(filepath.Join(j.dir, e.Name())) // a temp file of an interrupted save
			continue
		}
		b, err := os.ReadFile(filepath.Join(j.dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("journal: %w", err)
		}
		res := &pb.JobFinished{}
		if err := proto.Unmarshal(b, res); err != nil {
			return nil, fmt.Errorf("journal %s: %w", e.Name(), err)
		}
		r := ref{res.GetJobId(), int(res.GetAttempt())}
		out, err := j.reopen(r, ".out")
		if err != nil {
			return nil, err
		}
		errs, err := j.reopen(r, ".err")
		if err != nil {
			return nil, err
		}
		t := newTask(r, nil, out, errs)
		t.finish(res)
		tasks = append(tasks, t)
		keep[name+".out"], keep[name+".err"] = true, true
	}
	spools, err := os.ReadDir(j.spoolDir)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	for _, e := range spools {
		if !keep[e.Name()] {
			os.Remove(filepath.Join(j.spoolDir, e.Name()))
		}
	}
	return tasks, nil
}

// reopen opens a spool file for re-sending; a missing one is empty.
func (j *journal) reopen(r ref, ext string) (*spool, error) {
	path := filepath.Join(j.spoolDir, j.name(r)+ext)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			return nil, fmt.Errorf("journal: %w", err)
		}
	}
	sp, err := openSpoolForRead(path)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	return sp, nil
}

// writeFileAtomic replaces path with data through a temporary file.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
