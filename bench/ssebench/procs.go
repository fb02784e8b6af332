package main

// Helper processes for an idle hold larger than one process may open: a process holds at most
// `ulimit -n` sockets, and where the hard limit is 20,000, 20,000 streams need two processes.
// The parent (run mode, -procs K) keeps the first share of the subscribers and starts K-1
// copies of itself in sub mode with -child; each child connects its share, says
// "READY <ready> <failed> <dropped> <not ready>" on stdout, answers each "alive <k>" line it
// reads on stdin with "ALIVE <k> <n>", and exits as soon as stdin closes, whatever it is doing
// (its sockets close with it), so no helper outlives its parent.
//
// A helper has no publisher: with -ready prime the parent keeps publishing its primers (seq 0)
// until every helper is READY, and a helper counts a primer as its stream's priming, so every
// process's streams are ready by the same test (and each has received one event, which is part
// of what a server holds for it).

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type helper struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
	n     int
	asked int // the number of the last "alive" query
}

// shares splits n subscribers over procs processes: the parent's share first (it takes the
// remainder), then each child's, with the index of each child's first subscriber (from first,
// the parent's own first index).
func shares(n, procs, first int) (own int, child []int, firsts []int) {
	per := n / procs
	own = n - per*(procs-1)
	at := first + own
	for k := 1; k < procs; k++ {
		child = append(child, per)
		firsts = append(firsts, at)
		at += per
	}
	return own, child, firsts
}

// startHelpers starts one child per share with the parent's own flags, then the overrides
// (a repeated scalar flag takes its last value): the same run id, so {run} names the same
// channels; its own subscriber indices, so header rotation continues where the parent's ends;
// its share of -conn-conc, so the processes together keep the connect rate asked for.
func startHelpers(cfg *config, args []string, counts, firsts []int, connConc int) ([]*helper, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var hs []*helper
	for k, n := range counts {
		a := append([]string{"sub"}, args...)
		a = append(a, "-n", strconv.Itoa(n), "-first", strconv.Itoa(firsts[k]), "-procs", "1", "-child",
			"-run-id", cfg.runID, "-ready", cfg.ready, "-conn-conc", strconv.Itoa(connConc),
			"-out", "", "-server-pids", "", "-redis-stats", "", "-redis", "")
		cmd := exec.Command(self, a...)
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // and stdin's EOF, below
		in, err := cmd.StdinPipe()
		if err != nil {
			return hs, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return hs, err
		}
		if err := cmd.Start(); err != nil {
			return hs, err
		}
		h := &helper{cmd: cmd, in: in, lines: make(chan string, 16), n: n}
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				h.lines <- sc.Text()
			}
			close(h.lines)
		}()
		hs = append(hs, h)
	}
	return hs, nil
}

// expect waits for the child's next line starting with word and returns its numbers.
func (h *helper) expect(word string, timeout time.Duration) ([]int, error) {
	return h.expectTicking(word, timeout, 0, nil)
}

// expectTicking is expect that calls tick every `every` while it waits (the parent primes the
// helpers' streams so).
func (h *helper) expectTicking(word string, timeout, every time.Duration, tick func()) ([]int, error) {
	deadline := time.After(timeout)
	var ticks <-chan time.Time
	if tick != nil && every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		ticks = t.C
	}
	for {
		select {
		case <-ticks:
			tick()
			continue
		case ln, ok := <-h.lines:
			if !ok {
				return nil, fmt.Errorf("helper exited before %s", word)
			}
			f := strings.Fields(ln)
			if len(f) < 2 || f[0] != word {
				return nil, fmt.Errorf("helper said %q, expected %s", ln, word)
			}
			var nums []int
			for _, s := range f[1:] {
				v, err := strconv.Atoi(s)
				if err != nil {
					return nil, fmt.Errorf("helper said %q: %v", ln, err)
				}
				nums = append(nums, v)
			}
			if word == "ALIVE" && (len(nums) != 2 || nums[0] != h.asked) {
				continue // the late answer to an earlier query that timed out
			}
			return nums, nil
		case <-deadline:
			return nil, fmt.Errorf("no %s from helper within %s", word, timeout)
		}
	}
}

// aliveInHelpers asks every child how many of its streams are still open; ok is false when
// one of them cannot say (it died, or did not answer): the total is then unknown.
func aliveInHelpers(hs []*helper) (total int, ok bool) {
	ok = true
	for _, h := range hs {
		h.asked++
		if _, err := fmt.Fprintf(h.in, "alive %d\n", h.asked); err != nil {
			logf("helper: %v", err)
			ok = false
			continue
		}
		v, err := h.expect("ALIVE", 10*time.Second)
		if err != nil {
			logf("helper: %v", err)
			ok = false
			continue
		}
		total += v[1]
	}
	return total, ok
}

// stopHelpers closes every child's stdin (it exits at once) and waits for it; returns the
// CPU seconds the children used, for the generator's total.
func stopHelpers(hs []*helper) float64 {
	cpu := 0.0
	for _, h := range hs {
		h.in.Close()
	}
	for _, h := range hs {
		done := make(chan struct{})
		go func() {
			for range h.lines { // the child's last lines, then EOF: Wait may close the pipe
			}
			h.cmd.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			h.cmd.Process.Kill()
			<-done
		}
		if st := h.cmd.ProcessState; st != nil {
			cpu += (st.UserTime() + st.SystemTime()).Seconds()
		}
	}
	return round3(cpu)
}

// childQueries is a child's stdin from its first moment: each line a query, EOF the end of the
// process (whether it is still connecting or holding).
func childQueries() <-chan int {
	q := make(chan int, 4)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			k := 0
			if len(f) == 2 {
				k, _ = strconv.Atoi(f[1])
			}
			q <- k
		}
		os.Exit(0)
	}()
	return q
}

// serveAsChild is a child's life after connecting: report, answer queries until stdin closes.
func serveAsChild(r *runner, c *connectResult, queries <-chan int) {
	fmt.Printf("READY %d %d %d %d\n", c.Ready, c.Failed, c.Dropped, c.NotReady)
	for k := range queries {
		fmt.Printf("ALIVE %d %d\n", k, r.alive())
	}
}
