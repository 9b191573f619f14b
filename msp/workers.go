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
//
// A job is an interface rather than a func so that handing over a message
// costs no closure: the per-message struct that already exists is the job.
type workerPool struct {
	jobs chan job
	max  int
	n    int          // workers started; owner only
	idle atomic.Int32 // workers waiting for a job
	wg   sync.WaitGroup
}

// job is one unit of work for a workerPool.
type job interface{ run() }

func newWorkerPool(max int) *workerPool {
	return &workerPool{jobs: make(chan job), max: max}
}

// run hands job to an idle worker, starting one with it if none is idle
// and fewer than max exist, else waits for a worker to finish. Jobs start
// in the order they are handed over.
//
// idle counts the workers that have finished a job and wait for the next.
// Only workers add to it (right before they wait) and only run, on its
// single owner goroutine, takes from it, so a positive count always means a
// worker that will take the job at once. (A worker counting itself down
// after it took a job left a window in which run still saw it idle, handed
// the next job to nobody and waited for the busy worker: a pipelined
// connection whose handlers block stalled behind its first message.)
func (p *workerPool) run(j job) {
	switch {
	case p.idle.Load() > 0:
		p.idle.Add(-1)
		p.jobs <- j
	case p.n < p.max:
		p.n++
		p.wg.Add(1)
		go p.loop(j)
	default:
		// Every worker is busy: the first to finish counts itself idle
		// and takes this job.
		p.jobs <- j
		p.idle.Add(-1)
	}
}

func (p *workerPool) loop(first job) {
	defer p.wg.Done()
	first.run()
	for {
		p.idle.Add(1)
		j, ok := <-p.jobs
		if !ok {
			return
		}
		j.run()
	}
}

// stop ends the workers after their current jobs.
func (p *workerPool) stop() {
	close(p.jobs)
	p.wg.Wait()
}
