package msp

import (
	"sync"
	"sync/atomic"
)

// workerPool runs handler calls on long-lived goroutines, started when a job
// finds none idle, at most max. A goroutine per message had to grow a fresh
// stack for the deep delivery path every time (a sixth of a node's CPU);
// workers keep theirs. UDP uses one pool per packet conn (max MaxInflight),
// a pipelined TCP connection one per connection (max MaxPipeline).
//
// One goroutine (the read loop that owns the pool) calls run and stop; the
// caller bounds jobs in flight to max (a semaphore), so run never waits long.
// stop closes jobs and waits for the workers, which finish their current
// job first.
type workerPool struct {
	jobs chan func()
	max  int
	n    int          // workers started; owner only
	idle atomic.Int32 // workers waiting for a job
	wg   sync.WaitGroup
}

func newWorkerPool(max int) *workerPool {
	return &workerPool{jobs: make(chan func()), max: max}
}

// run hands job to an idle worker, starting one if none is idle and fewer
// than max exist. Jobs start in the order they are handed over.
func (p *workerPool) run(job func()) {
	if p.idle.Load() == 0 && p.n < p.max {
		p.n++
		p.wg.Add(1)
		go p.loop()
	}
	p.jobs <- job
}

func (p *workerPool) loop() {
	defer p.wg.Done()
	for {
		p.idle.Add(1)
		job, ok := <-p.jobs
		p.idle.Add(-1)
		if !ok {
			return
		}
		job()
	}
}

// stop ends the workers after their current jobs.
func (p *workerPool) stop() {
	close(p.jobs)
	p.wg.Wait()
}
