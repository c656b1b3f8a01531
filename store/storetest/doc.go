// Package storetest is the conformance suite of cluster.Store: every
// implementation (the bbolt store, memstore) runs Run and must pass all of
// it, so that tests written against the fake hold for the real store.
//
// Each subtest opens its own store through the function given to Run. The
// helpers (NewJob, FullJob, ID, NewTenant, NewPipeline, MustInsert, MustApply, …) are exported for
// the implementations' own tests.
package storetest
