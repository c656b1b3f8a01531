package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "github.com/hodei-jobs/hodei/proto"
)

// restResp is one answer of the REST API.
type restResp struct {
	status int
	header http.Header
	body   []byte
}

// rest calls the REST API: method, path (with its query) and body (nil:
// none), with token as Bearer ("": no Authorization header).
func (s *sut) rest(t testing.TB, token, method, path string, body any) restResp {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	case proto.Message:
		j, err := protojson.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	default:
		t.Fatalf("body of type %T", body)
	}
	req, err := http.NewRequest(method, s.httpURL(path), rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return restResp{status: resp.StatusCode, header: resp.Header, body: b}
}

// ok fails the test unless the answer is 200 with JSON, and decodes it
// into m (nil: not decoded).
func (r restResp) ok(t testing.TB, what string, m proto.Message) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("%s: %d %s", what, r.status, r.body)
	}
	if m != nil {
		if err := protojson.Unmarshal(r.body, m); err != nil {
			t.Fatalf("%s: %v in %s", what, err, r.body)
		}
	}
}

// httpErr decodes an error answer.
func (r restResp) httpErr(t testing.TB) *pb.HttpError {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error with Content-Type %q: %s", ct, r.body)
	}
	var e pb.HttpError
	if err := protojson.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body %s: %v", r.body, err)
	}
	return &e
}

// sameJSON reports whether the REST body holds the same JSON as the
// protojson of m, and both texts for the failure message.
func sameJSON(t testing.TB, body []byte, m proto.Message) (bool, string) {
	t.Helper()
	want, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var a, b any
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("REST body is not JSON: %v: %s", err, body)
	}
	if err := json.Unmarshal(want, &b); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(a, b), "REST: " + string(body) + "\ngRPC: " + string(want)
}
