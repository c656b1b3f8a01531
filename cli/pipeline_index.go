package cli

import (
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fileIndex knows the lines of a pipeline file's fields, to point the
// server's field errors ("steps.test.needs: …") at them.
type fileIndex struct {
	top   map[string]int // top-level key → line
	steps []stepLines    // in file order
}

// stepLines are the lines of one step.
type stepLines struct {
	name   string
	line   int            // of the step itself
	fields map[string]int // key → line; matrix keys as "matrix.KEY"
}

func newFileIndex(root *yaml.Node) *fileIndex {
	ix := &fileIndex{top: make(map[string]int)}
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		return ix
	}
	doc := resolve(root.Content[0])
	var steps *yaml.Node
	eachKey(doc, func(k, v *yaml.Node) {
		ix.top[k.Value] = k.Line
		if k.Value == "steps" {
			steps = v
		}
	})
	if steps == nil || steps.Kind != yaml.SequenceNode {
		return ix
	}
	for _, item := range steps.Content {
		item = resolve(item)
		sl := stepLines{line: item.Line, fields: make(map[string]int)}
		eachKey(item, func(k, v *yaml.Node) {
			sl.fields[k.Value] = k.Line
			switch k.Value {
			case "name":
				sl.name = v.Value
			case "matrix":
				eachKey(v, func(mk, _ *yaml.Node) { sl.fields["matrix."+mk.Value] = mk.Line })
			}
		})
		ix.steps = append(ix.steps, sl)
	}
	return ix
}

// eachKey calls fn for each key and value of a mapping node.
func eachKey(n *yaml.Node, fn func(k, v *yaml.Node)) {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		fn(resolve(n.Content[i]), resolve(n.Content[i+1]))
	}
}

// specFieldKeys maps the fields job validation names to the keys of a
// step that hold them.
var specFieldKeys = map[string]string{
	"cpu": "resources", "memory": "resources", "slots": "resources",
	"after": "needs",
}

// line returns the line of the field a server error names: "name",
// "steps", "steps[2].name", "steps.test.matrix.os", "steps.a.b.timeout"
// (a step named a.b); 0 when the file does not have it.
func (ix *fileIndex) line(field string) int {
	if ix == nil {
		return 0
	}
	if rest, ok := strings.CutPrefix(field, "steps["); ok {
		i, err := strconv.Atoi(strings.SplitN(rest, "]", 2)[0])
		if err != nil || i < 0 || i >= len(ix.steps) {
			return ix.top["steps"]
		}
		if l := ix.steps[i].fields["name"]; l > 0 {
			return l
		}
		return ix.steps[i].line
	}
	rest, ok := strings.CutPrefix(field, "steps.")
	if !ok {
		if l := ix.top[field]; l > 0 {
			return l
		}
		top, _, _ := strings.Cut(field, ".") // "defaults.resources.memory"
		return ix.top[top]
	}
	// The step whose name is the longest prefix of rest; the last of
	// duplicates, since a duplicate name is reported on the second one.
	best := -1
	for i, sl := range ix.steps {
		if (rest == sl.name || strings.HasPrefix(rest, sl.name+".")) && (best < 0 || len(sl.name) >= len(ix.steps[best].name)) {
			best = i
		}
	}
	if best < 0 {
		return ix.top["steps"]
	}
	sl := ix.steps[best]
	sub := strings.TrimPrefix(strings.TrimPrefix(rest, sl.name), ".")
	if l := sl.fields[sub]; l > 0 { // "matrix.os"
		return l
	}
	key, _, _ := strings.Cut(sub, ".")
	if k, ok := specFieldKeys[key]; ok {
		key = k
	}
	if l := sl.fields[key]; l > 0 {
		return l
	}
	return sl.line
}

// pipelineFileError points an InvalidArgument answer to RunPipeline at
// the line of the field it names, by the name the file gives it:
// "release.yaml:14: steps.test.needs: …", "steps.b.resources.cpu: …"
// (the server's rules say cpu_millis). Other errors pass unchanged.
func pipelineFileError(path string, ix *fileIndex, err error) error {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.InvalidArgument {
		return err
	}
	if vs := fieldViolations(st); len(vs) > 0 {
		field := lineField(vs[0].GetField())
		return &fileError{path: path, line: ix.line(field), msg: field + ": " + vs[0].GetDescription()}
	}
	field, _, ok := strings.Cut(st.Message(), ": ")
	if !ok || strings.ContainsAny(field, " \t\n") {
		return &fileError{path: path, msg: st.Message()}
	}
	return &fileError{path: path, line: ix.line(field), msg: st.Message()}
}
