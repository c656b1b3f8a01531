package server

import (
	"runtime"
	"sync"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	pb "github.com/hodei-jobs/hodei/proto"
)

// A SubmitBatch request carries up to 10,000 specs, and decoding them (maps
// of labels and environment each) costs as much as storing them. The specs
// are independent messages one after the other in the request's bytes, so
// decodeBatch finds where each starts and decodes them on every CPU, each
// with pb.DecodeJobSpec (protobuf-go's decoding where that declines).

// parallelSpecs is the fewest specs worth decoding in parallel.
const parallelSpecs = 256

// decodeBatch decodes data, the bytes of a SubmitBatchRequest, into req,
// the specs split over the CPUs. It reports false, leaving req empty, when
// the bytes are not what it expects (a field other than specs and
// require_fit, a malformed
// one, a spec that does not decode): the caller then decodes as usual,
// which finds the error and names it.
func decodeBatch(data []byte, req *pb.SubmitBatchRequest) bool {
	var raw [][]byte
	requireFit := false
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n >= 0 && num == 2 && typ == protowire.VarintType { // require_fit
			data = data[n:]
			v, n := protowire.ConsumeVarint(data)
			if n < 0 {
				return false
			}
			requireFit = v != 0
			data = data[n:]
			continue
		}
		if n < 0 || num != 1 || typ != protowire.BytesType {
			return false
		}
		data = data[n:]
		spec, n := protowire.ConsumeBytes(data)
		if n < 0 {
			return false
		}
		raw = append(raw, spec)
		data = data[n:]
	}
	workers := min(runtime.GOMAXPROCS(0), len(raw)/parallelSpecs)
	if workers <= 1 {
		return false
	}
	specs := make([]pb.JobSpec, len(raw))
	ok := make([]bool, workers)
	per := (len(raw) + workers - 1) / workers
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w * per; i < min((w+1)*per, len(raw)); i++ {
				if pb.DecodeJobSpec(raw[i], &specs[i]) {
					continue
				}
				proto.Reset(&specs[i])
				if proto.Unmarshal(raw[i], &specs[i]) != nil {
					return
				}
			}
			ok[w] = true
		})
	}
	wg.Wait()
	for _, good := range ok {
		if !good {
			return false
		}
	}
	req.Specs = make([]*pb.JobSpec, len(specs))
	for i := range specs {
		req.Specs[i] = &specs[i]
	}
	req.RequireFit = requireFit
	return true
}

// unmarshalBatch is wireCodec.Unmarshal's way for a large SubmitBatch
// request: decodeBatch when it can, else the codec's own decoding.
func (c wireCodec) unmarshalBatch(data mem.BufferSlice, req *pb.SubmitBatchRequest) error {
	if data.Len() >= parallelSpecs*16 {
		buf := data.Materialize()
		if decodeBatch(buf, req) {
			return nil
		}
		proto.Reset(req)
	}
	return c.base.Unmarshal(data, req)
}
