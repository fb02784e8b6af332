package main

// Helper processes for an idle hold larger than one process may open: a process holds at most
// `ulimit -n` sockets, and where the hard limit is 20,000, 20,000 streams need two processes.
// The parent (run mode, -procs K) keeps the first share of the subscribers and starts K-1
// copies of itself in sub mode with -child; each child connects its share, says
// "READY <ready> <failed> <dropped> <not ready>" on stdout, answers every line it reads on
// stdin with "ALIVE <n>", and exits when stdin closes (its sockets close with it).

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

type helper struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
	n     int
}

// shares splits n subscribers over procs processes: the parent's share first (it takes the
// remainder), then each child's, with the index of each child's first subscriber.
func shares(n, procs int) (own int, child []int, first []int) {
	per := n / procs
	own = n - per*(procs-1)
	at := own
	for k := 1; k < procs; k++ {
		child = append(child, per)
		first = append(first, at)
		at += per
	}
	return own, child, first
}

// startHelpers starts one child per share with the parent's own flags, then the overrides
// (a repeated scalar flag takes its last value): the same run id, so {run} names the same
// channels, and its own subscriber indices, so header rotation continues where the parent's ends.
func startHelpers(cfg *config, args []string, counts, firsts []int) ([]*helper, error) {
	var hs []*helper
	for k, n := range counts {
		a := append([]string{"sub"}, args...)
		a = append(a, "-n", strconv.Itoa(n), "-first", strconv.Itoa(firsts[k]), "-procs", "1", "-child",
			"-run-id", cfg.runID, "-out", "", "-server-pids", "", "-redis-stats", "", "-redis", "")
		cmd := exec.Command(os.Args[0], a...)
		cmd.Stderr = os.Stderr
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
		h := &helper{cmd: cmd, in: in, lines: make(chan string, 4), n: n}
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
	select {
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
		return nums, nil
	case <-time.After(timeout):
		return nil, fmt.Errorf("no %s from helper within %s", word, timeout)
	}
}

// alive asks every child how many of its streams are still open; -1 if one cannot say.
func aliveInHelpers(hs []*helper) int {
	total := 0
	for _, h := range hs {
		if _, err := io.WriteString(h.in, "alive\n"); err != nil {
			logf("helper: %v", err)
			return -1
		}
		v, err := h.expect("ALIVE", 10*time.Second)
		if err != nil {
			logf("helper: %v", err)
			return -1
		}
		total += v[0]
	}
	return total
}

func stopHelpers(hs []*helper) {
	for _, h := range hs {
		h.in.Close()
	}
	for _, h := range hs {
		done := make(chan struct{})
		go func() { h.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			h.cmd.Process.Kill()
			<-done
		}
	}
}

// serveAsChild is a child's whole life after connecting: report, answer, exit on EOF.
func serveAsChild(r *runner, c *connectResult) {
	fmt.Printf("READY %d %d %d %d\n", c.Ready, c.Failed, c.Dropped, c.NotReady)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		fmt.Printf("ALIVE %d\n", r.alive())
	}
	r.closeAll()
	os.Exit(0)
}
