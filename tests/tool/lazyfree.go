// lazyfree: a Go program whose freed memory stays in RSS as LazyFree.
//
// It allocates about 400 MiB in 4 MiB slices and writes every page (so the
// pages are really resident), drops them, runs the collector and
// debug.FreeOSMemory, which returns the free pages to the OS. Run with
// GODEBUG=madvdontneed=0 the runtime returns them with MADV_FREE: the kernel
// keeps them in RSS, counted as LazyFree, until it needs the memory. Then it
// prints "ready" and sleeps so that a test can inspect it.
//
// Standard library only, no module: GO111MODULE=off go build lazyfree.go.
package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"time"
)

const (
	chunk = 4 << 20 // a large object: the runtime gives it pages of its own
	total = 400 << 20
	page  = 4096
)

var sink [][]byte

func main() {
	for n := 0; n < total; n += chunk {
		b := make([]byte, chunk)
		for i := 0; i < len(b); i += page {
			b[i] = 1
		}
		sink = append(sink, b)
	}
	sink = nil
	runtime.GC()
	debug.FreeOSMemory()
	fmt.Println("ready")
	os.Stdout.Sync()
	time.Sleep(10 * time.Minute)
}
