// ssebench: a small, standard-library-only load generator for Server-Sent
// Events (SSE) servers.
//
// Modes:
//
//	ssebench run  [flags]  subscribers + publisher + measurement, one JSON line
//	ssebench sub  [flags]  subscribers only (external publisher), one JSON line
//	ssebench pub  [flags]  publisher only, one JSON line
//
// The publisher embeds a sequence number ("bseq") and a send timestamp in
// unix nanoseconds ("bts") in every payload; subscribers parse the SSE stream
// (data/id/event/retry fields, comments, CR / LF / CRLF line endings), pull
// those two numbers out of the event data and compute publish->receive
// latency and per-channel sequence gaps.  Publisher and subscribers must run
// on the same host (same clock) for latency to be meaningful.
//
// Everything is bounded: every phase has a timeout and -max-time is a hard cap
// on the whole process.
//
// ChatGenius additions (bench/README.md, "Generator changes"): -chans-per-sub
// and the {chans} placeholder (one stream on several channels), -pub-random
// (publish to a uniformly random channel), and -storm-back (the resume storm:
// drop every stream, reconnect them all at once with Last-Event-ID set to a
// cursor that many events back, and time replay and liveness).
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// seq numbers of step k (1-based) are k*stepMul + n, n = 1, 2, ...; seq 0 is
// the priming event.
const stepMul = int64(1_000_000_000)

// ---------------------------------------------------------------- flags

type strList []string

func (s *strList) String() string     { return strings.Join(*s, ",") }
func (s *strList) Set(v string) error { *s = append(*s, v); return nil }

type config struct {
	mode     string
	label    string
	scenario string
	maxTime  time.Duration
	out      string

	// subscribers
	subURL      string
	chanTmpl    string
	channels    int
	n           int
	subHeaders  strList
	hdrRotate   string
	rotHeaders  []string
	connConc    int
	connTimeout time.Duration
	ready       string
	primeEvery  time.Duration
	hold        time.Duration
	settle      time.Duration
	bufSize     int
	chansPerSub int
	procs       int
	first       int
	child       bool

	// publisher
	pub        string
	pubURL     string
	pubHeaders strList
	payload    string
	pad        int
	redisAddr  string
	rates      string
	duration   time.Duration
	pubConc    int
	drainIdle  time.Duration
	drainMax   time.Duration
	stopP99    time.Duration
	stopOnMiss bool
	pause      time.Duration
	pubRandom  bool
	stormBack  int
	stormMax   time.Duration

	// stats
	serverPids string
	redisStats string
	runID      string
}

func parseFlags(mode string, args []string) *config {
	c := &config{mode: mode}
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	fs.StringVar(&c.label, "label", "target", "target label copied into the JSON result")
	fs.StringVar(&c.scenario, "scenario", mode, "scenario label copied into the JSON result")
	fs.DurationVar(&c.maxTime, "max-time", 10*time.Minute, "hard cap on total run time")
	fs.StringVar(&c.out, "out", "", "also append the JSON result line to this file")

	fs.StringVar(&c.subURL, "sub-url", "http://127.0.0.1:18100/sub/{chan}", "subscribe URL template; {chan} {i} {c} {run} are substituted")
	fs.StringVar(&c.chanTmpl, "chan", "bench{run}c{c}", "channel name template; {c} = channel index (i mod -channels), {i}, {run}")
	fs.IntVar(&c.channels, "channels", 1, "number of distinct channels; subscriber i listens on channel i mod channels")
	fs.IntVar(&c.n, "n", 100, "number of concurrent SSE subscribers")
	fs.Var(&c.subHeaders, "H", "extra subscriber request header 'Name: value' (repeatable)")
	fs.StringVar(&c.hdrRotate, "H-rotate", "", "file of 'Name: value' lines: subscriber i also sends line i mod count (e.g. several users' tokens)")
	fs.IntVar(&c.connConc, "conn-conc", 100, "max connection attempts in flight")
	fs.DurationVar(&c.connTimeout, "connect-timeout", 90*time.Second, "time allowed to connect (and prime) all subscribers")
	fs.StringVar(&c.ready, "ready", "prime", "when a subscriber counts as connected: prime (received a seq-0 priming event), headers (got 200 + headers), sent (TCP up, request written)")
	fs.DurationVar(&c.primeEvery, "prime-every", 500*time.Millisecond, "priming event interval while waiting for subscribers")
	fs.DurationVar(&c.hold, "hold", 0, "idle hold after all subscribers are ready (idle scenario); sub mode: how long to listen")
	fs.DurationVar(&c.settle, "settle", 2*time.Second, "pause before taking the 'ready' resource sample")
	fs.IntVar(&c.bufSize, "buf", 4096, "per-connection read buffer bytes")
	fs.IntVar(&c.procs, "procs", 1, "idle hold only: split the subscribers over this many processes (one process holds at most `ulimit -n` sockets); the parent keeps the first share")
	fs.IntVar(&c.first, "first", 0, "index of this process's first subscriber (set by -procs for its helpers)")
	fs.BoolVar(&c.child, "child", false, "a -procs helper: report READY/ALIVE on stdout, hold until stdin closes")
	fs.IntVar(&c.chansPerSub, "chans-per-sub", 1, "channels per subscriber: subscriber i listens on channels (i*k+j) mod -channels, j<k; {chans} joins them with ','")

	fs.StringVar(&c.pub, "pub", "http", "publish method: http | redis | none")
	fs.StringVar(&c.pubURL, "pub-url", "http://127.0.0.1:18100/pub/{chan}", "HTTP publish URL template ({chan})")
	fs.Var(&c.pubHeaders, "pub-H", "extra publish request header 'Name: value' (repeatable)")
	fs.StringVar(&c.payload, "payload", `{"bseq":{seq},"bts":{ts}}`, "payload template: HTTP POST body or Redis PUBLISH message; {seq} {ts} {chan} {pad}")
	fs.IntVar(&c.pad, "pad", 0, "bytes of 'x' padding substituted for {pad}")
	fs.StringVar(&c.redisAddr, "redis", "", "Redis host:port for -pub redis (raw RESP) and for Redis stats")
	fs.StringVar(&c.rates, "rates", "", "comma-separated publish rates (events/s, summed over channels), one step each, on the same subscribers")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "publish time per step")
	fs.IntVar(&c.pubConc, "pub-conc", 1, "concurrent HTTP publish requests (1 keeps order)")
	fs.DurationVar(&c.drainIdle, "drain-idle", 2*time.Second, "after publishing, stop waiting once nothing arrived for this long")
	fs.DurationVar(&c.drainMax, "drain-max", 30*time.Second, "after publishing, wait at most this long for deliveries")
	fs.DurationVar(&c.stopP99, "stop-p99", 0, "ceiling search: stop after the first step whose p99 latency exceeds this (0 = run all steps)")
	fs.BoolVar(&c.stopOnMiss, "stop-on-miss", false, "ceiling search: stop after the first step with missed events or drops")
	fs.DurationVar(&c.pause, "pause", time.Second, "pause between steps")
	fs.BoolVar(&c.pubRandom, "pub-random", false, "publish each event to a uniformly random channel (default: round robin)")
	fs.IntVar(&c.stormBack, "storm-back", 0, "resume storm after the steps: publish this many events per channel, drop all streams, reconnect all at once with Last-Event-ID from before them")
	fs.DurationVar(&c.stormMax, "storm-max", 60*time.Second, "resume storm: give up waiting for replay/liveness after this long")

	fs.StringVar(&c.serverPids, "server-pids", "", "comma-separated root PIDs of the server; RSS/PSS/CPU are summed over them and all descendants")
	fs.StringVar(&c.redisStats, "redis-stats", "", "Redis host:port to read INFO from (defaults to -redis); a comma-separated list is summed (a cluster's masters)")
	fs.StringVar(&c.runID, "run-id", "", "run id for {run} (default random)")
	fs.Parse(args)
	if c.runID == "" {
		c.runID = strconv.FormatInt(time.Now().UnixNano()%1e9, 36) + strconv.Itoa(rand.Intn(1000))
	}
	if c.redisStats == "" {
		c.redisStats = c.redisAddr
	}
	if c.channels < 1 {
		c.channels = 1
	}
	if c.chansPerSub < 1 {
		c.chansPerSub = 1
	}
	if c.hdrRotate != "" {
		b, err := os.ReadFile(c.hdrRotate)
		if err != nil {
			fmt.Fprintln(os.Stderr, "-H-rotate:", err)
			os.Exit(2)
		}
		for _, ln := range strings.Split(string(b), "\n") {
			if ln = strings.TrimSpace(ln); ln != "" {
				c.rotHeaders = append(c.rotHeaders, ln)
			}
		}
	}
	if c.chansPerSub > c.channels {
		c.chansPerSub = c.channels
	}
	return c
}

// ---------------------------------------------------------------- templates

type seg struct {
	lit string
	v   string // "" for literal
}

func compile(t string) []seg {
	var out []seg
	for len(t) > 0 {
		i := strings.IndexByte(t, '{')
		if i < 0 {
			out = append(out, seg{lit: t})
			break
		}
		j := strings.IndexByte(t[i:], '}')
		if j < 0 {
			out = append(out, seg{lit: t})
			break
		}
		name := t[i+1 : i+j]
		switch name {
		case "seq", "ts", "chan", "chans", "pad", "i", "c", "run":
			if i > 0 {
				out = append(out, seg{lit: t[:i]})
			}
			out = append(out, seg{v: name})
		default:
			// not a placeholder: keep the '{' literally and rescan after it
			out = append(out, seg{lit: t[:i+1]})
			t = t[i+1:]
			continue
		}
		t = t[i+j+1:]
	}
	return out
}

type vars struct {
	seq, ts, i, c int64
	ch, run, pad  string
	chs           string // {chans}: the subscriber's channels joined with ','
}

func render(dst []byte, t []seg, v *vars) []byte {
	for _, s := range t {
		switch s.v {
		case "":
			dst = append(dst, s.lit...)
		case "seq":
			dst = strconv.AppendInt(dst, v.seq, 10)
		case "ts":
			dst = strconv.AppendInt(dst, time.Now().UnixNano(), 10)
		case "chan":
			dst = append(dst, v.ch...)
		case "chans":
			if v.chs == "" {
				dst = append(dst, v.ch...)
			} else {
				dst = append(dst, v.chs...)
			}
		case "pad":
			dst = append(dst, v.pad...)
		case "i":
			dst = strconv.AppendInt(dst, v.i, 10)
		case "c":
			dst = strconv.AppendInt(dst, v.c, 10)
		case "run":
			dst = append(dst, v.run...)
		}
	}
	return dst
}

// ---------------------------------------------------------------- histogram

// log-linear latency histogram in microseconds: 1 us resolution below 1 ms,
// 1 % relative resolution above.
const nb = 1000 + 1500

func bucketOf(us int64) int {
	if us < 0 {
		us = 0
	}
	if us < 1000 {
		return int(us)
	}
	i := 1000 + int(math.Log(float64(us)/1000)/math.Log(1.01))
	if i >= nb {
		i = nb - 1
	}
	return i
}

func bucketVal(i int) float64 {
	if i < 1000 {
		return float64(i)
	}
	return 1000 * math.Pow(1.01, float64(i-1000))
}

const shards = 8

type hist struct {
	b   [shards][nb]uint64
	max int64 // ns
}

func (h *hist) add(shard int, ns int64) {
	atomic.AddUint64(&h.b[shard%shards][bucketOf(ns/1000)], 1)
	for {
		m := atomic.LoadInt64(&h.max)
		if ns <= m || atomic.CompareAndSwapInt64(&h.max, m, ns) {
			return
		}
	}
}

type latSummary struct {
	N   uint64  `json:"n"`
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func (h *hist) summary() latSummary {
	var tot [nb]uint64
	var n uint64
	for s := 0; s < shards; s++ {
		for i := 0; i < nb; i++ {
			c := atomic.LoadUint64(&h.b[s][i])
			tot[i] += c
			n += c
		}
	}
	r := latSummary{N: n, Max: round3(float64(atomic.LoadInt64(&h.max)) / 1e6)}
	if n == 0 {
		return r
	}
	q := func(p float64) float64 {
		want := uint64(math.Ceil(p * float64(n)))
		if want < 1 {
			want = 1
		}
		var cum uint64
		for i := 0; i < nb; i++ {
			cum += tot[i]
			if cum >= want {
				return round3(bucketVal(i) / 1000)
			}
		}
		return r.Max
	}
	r.P50, r.P90, r.P99 = q(0.50), q(0.90), q(0.99)
	return r
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// ---------------------------------------------------------------- SSE line reader

// lineReader splits a byte stream into lines ended by CRLF, LF or CR (the
// three line endings the SSE spec allows).  The returned slice is only valid
// until the next call.
type lineReader struct {
	r          io.Reader
	buf        []byte
	start, end int
	skipLF     bool
	maxLine    int
}

var errLineTooLong = errors.New("sse line too long")

func (l *lineReader) next() ([]byte, error) {
	for {
		if l.skipLF && l.start < l.end {
			if l.buf[l.start] == '\n' {
				l.start++
			}
			l.skipLF = false
		}
		if l.start < l.end {
			if i := bytes.IndexAny(l.buf[l.start:l.end], "\r\n"); i >= 0 {
				line := l.buf[l.start : l.start+i]
				if l.buf[l.start+i] == '\r' {
					l.skipLF = true
				}
				l.start += i + 1
				return line, nil
			}
		}
		if l.start > 0 {
			copy(l.buf, l.buf[l.start:l.end])
			l.end -= l.start
			l.start = 0
		}
		if l.end == len(l.buf) {
			if len(l.buf) >= l.maxLine {
				return nil, errLineTooLong
			}
			nb := make([]byte, 2*len(l.buf))
			copy(nb, l.buf[:l.end])
			l.buf = nb
		}
		n, err := l.r.Read(l.buf[l.end:])
		l.end += n
		if n == 0 && err != nil {
			return nil, err
		}
	}
}

// findNum extracts the integer that follows key in data, tolerating JSON-ish
// separators: "key":123, "key": 123, key=123.
func findNum(data []byte, key string) (int64, bool) {
	i := bytes.Index(data, []byte(key))
	if i < 0 {
		return 0, false
	}
	j := i + len(key)
	for k := 0; k < 4 && j < len(data); k++ {
		c := data[j]
		if c == '"' || c == '\'' || c == ':' || c == '=' || c == ' ' {
			j++
			continue
		}
		break
	}
	neg := false
	if j < len(data) && data[j] == '-' {
		neg = true
		j++
	}
	st := j
	var v int64
	for j < len(data) && data[j] >= '0' && data[j] <= '9' {
		v = v*10 + int64(data[j]-'0')
		j++
	}
	if j == st {
		return 0, false
	}
	if neg {
		v = -v
	}
	return v, true
}

// ---------------------------------------------------------------- run state

const (
	stPending int32 = iota
	stSent
	stHeaders
	stPrimed
	stFailed
	stDropped
	stClosed
)

type subConn struct {
	idx     int
	ch      int
	chs     []int // every channel of this subscriber (chs[0] == ch)
	lastID  atomic.Value
	resume  string // Last-Event-ID sent on connect (resume storm)
	replayN atomic.Int64
	replayT atomic.Int64
	probeT  atomic.Int64
	state   atomic.Int32
	lastSeq atomic.Int64
	events  atomic.Int64
	nc      net.Conn
	mu      sync.Mutex
}

type stepStats struct {
	rate       float64
	base       int64
	h          hist
	deliveries atomic.Int64
	late       atomic.Int64
	gaps       atomic.Int64
	firstRecv  atomic.Int64
	lastRecv   atomic.Int64
}

type runner struct {
	cfg      *config
	subURL   []seg
	chanT    []seg
	payloadT []seg
	pubURLT  []seg
	chans    []string
	conns    []*subConn
	steps    []*stepStats
	external bool // sub mode: any seq goes to steps[0]
	closing  atomic.Bool
	primer   atomic.Int64 // priming events received
	comments atomic.Int64
	unparsed atomic.Int64
	nonEvent atomic.Int64 // events dispatched with other 'event:' types are still counted; this counts id-only/empty
	errMu    sync.Mutex
	errs     map[string]int
	dropErrs map[string]int
	lastAny  atomic.Int64
	padStr   string
	deadline time.Time
	// resume storm
	stormSeqLo, stormSeqHi, probeLo int64
	stormWant                       atomic.Int64 // replayed events a subscriber needs (back * channels it is on)
}

func (r *runner) noteErr(m map[string]int, err error) {
	s := err.Error()
	// keep the error class only (strip addresses)
	if i := strings.LastIndex(s, ": "); i >= 0 && len(s)-i < 60 {
		s = s[i+2:]
	}
	if len(s) > 80 {
		s = s[:80]
	}
	r.errMu.Lock()
	m[s]++
	r.errMu.Unlock()
}

func (r *runner) stepFor(seq int64) *stepStats {
	if r.external {
		return r.steps[0]
	}
	k := seq / stepMul
	if k >= 1 && int(k) <= len(r.steps) {
		return r.steps[k-1]
	}
	return nil
}

func (r *runner) subscribe(c *subConn, sem chan struct{}) {
	release := func() {
		if sem != nil {
			<-sem
			sem = nil
		}
	}
	defer release()
	v := &vars{i: int64(c.idx), c: int64(c.ch), ch: r.chans[c.ch], run: r.cfg.runID}
	if len(c.chs) > 1 {
		names := make([]string, len(c.chs))
		for j, ch := range c.chs {
			names[j] = r.chans[ch]
		}
		v.chs = strings.Join(names, ",")
	}
	raw := string(render(nil, r.subURL, v))
	u, err := url.Parse(raw)
	if err != nil {
		c.state.Store(stFailed)
		r.noteErr(r.errs, err)
		return
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	nc, err := net.DialTimeout("tcp", host, 10*time.Second)
	if err != nil {
		c.state.Store(stFailed)
		r.noteErr(r.errs, err)
		return
	}
	c.mu.Lock()
	c.nc = nc
	c.mu.Unlock()
	if r.closing.Load() {
		nc.Close()
		return
	}
	var req bytes.Buffer
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\nUser-Agent: ssebench\r\n", u.RequestURI(), u.Host)
	for _, h := range r.cfg.subHeaders {
		req.WriteString(h)
		req.WriteString("\r\n")
	}
	if n := len(r.cfg.rotHeaders); n > 0 {
		req.WriteString(r.cfg.rotHeaders[c.idx%n])
		req.WriteString("\r\n")
	}
	if c.resume != "" {
		fmt.Fprintf(&req, "Last-Event-ID: %s\r\n", c.resume)
	}
	req.WriteString("\r\n")
	nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write(req.Bytes()); err != nil {
		c.state.Store(stFailed)
		r.noteErr(r.errs, err)
		nc.Close()
		return
	}
	nc.SetWriteDeadline(time.Time{})
	c.state.Store(stSent)
	release()

	br := bufio.NewReaderSize(nc, r.cfg.bufSize)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		if !r.closing.Load() {
			c.state.Store(stFailed)
			r.noteErr(r.errs, fmt.Errorf("read headers: %w", err))
		}
		nc.Close()
		return
	}
	if resp.StatusCode != 200 {
		c.state.Store(stFailed)
		r.noteErr(r.errs, fmt.Errorf("status %d", resp.StatusCode))
		nc.Close()
		return
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		r.noteErr(r.errs, fmt.Errorf("warning: content-type %q", ct))
	}
	if c.state.Load() == stSent {
		c.state.Store(stHeaders)
	}
	lr := &lineReader{r: resp.Body, buf: make([]byte, r.cfg.bufSize), maxLine: 1 << 20}
	var data []byte
	hasData := false
	for {
		line, err := lr.next()
		if err != nil {
			if !r.closing.Load() {
				c.state.Store(stDropped)
				if err == io.EOF || err == io.ErrUnexpectedEOF {
					err = errors.New("server closed stream (EOF)")
				}
				r.noteErr(r.dropErrs, err)
			}
			nc.Close()
			return
		}
		if len(line) == 0 { // dispatch
			if hasData {
				r.onEvent(c, data)
			} else {
				r.nonEvent.Add(1)
			}
			data = data[:0]
			hasData = false
			continue
		}
		if line[0] == ':' {
			r.comments.Add(1)
			continue
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(field) {
		case "data":
			if hasData {
				data = append(data, '\n')
			}
			data = append(data, value...)
			hasData = true
		case "id":
			// the spec's last-event-ID buffer (kept for the resume storm)
			if bytes.IndexByte(value, 0) < 0 {
				c.lastID.Store(string(value))
			}
		case "event", "retry":
			// parsed per spec; the harness keys on the payload, not on these
		}
	}
}

func (r *runner) onEvent(c *subConn, data []byte) {
	now := time.Now().UnixNano()
	r.lastAny.Store(now)
	c.events.Add(1)
	seq, ok := findNum(data, "bseq")
	if !ok {
		r.unparsed.Add(1)
		return
	}
	if want := r.stormWant.Load(); want != 0 && seq >= r.stormSeqLo {
		if seq <= r.stormSeqHi {
			if c.replayN.Add(1) == want {
				c.replayT.Store(now)
			}
			return
		}
		if seq >= r.probeLo {
			c.probeT.CompareAndSwap(0, now)
			return
		}
	}
	if seq == 0 && !r.external {
		if c.state.Load() != stPrimed {
			c.state.Store(stPrimed)
		}
		r.primer.Add(1)
		return
	}
	if c.state.Load() == stHeaders || c.state.Load() == stSent {
		c.state.Store(stPrimed)
	}
	st := r.stepFor(seq)
	if st == nil {
		r.unparsed.Add(1)
		return
	}
	st.deliveries.Add(1)
	last := c.lastSeq.Load()
	if len(c.chs) > 1 {
		// several channels interleave on one stream: per-stream order says nothing
	} else if seq <= last {
		st.late.Add(1)
	} else {
		lo := st.base
		if last > lo {
			lo = last
		}
		if r.external && last == 0 {
			lo = seq - 1
		}
		if seq > lo+1 {
			st.gaps.Add(seq - lo - 1)
		}
		c.lastSeq.Store(seq)
	}
	if ts, ok := findNum(data, "bts"); ok {
		st.h.add(c.idx, now-ts)
	}
	st.firstRecv.CompareAndSwap(0, now)
	for {
		l := st.lastRecv.Load()
		if now <= l || st.lastRecv.CompareAndSwap(l, now) {
			break
		}
	}
}

func (r *runner) counts() (sent, headers, primed, failed, dropped, pending int) {
	for _, c := range r.conns {
		switch c.state.Load() {
		case stPending:
			pending++
		case stSent:
			sent++
		case stHeaders:
			headers++
		case stPrimed:
			primed++
		case stFailed:
			failed++
		case stDropped:
			dropped++
		}
	}
	return
}

func (r *runner) alive() int {
	s, h, p, _, _, _ := r.counts()
	return s + h + p
}

func (r *runner) isReady(c *subConn) bool {
	st := c.state.Load()
	switch r.cfg.ready {
	case "sent":
		return st == stSent || st == stHeaders || st == stPrimed
	case "headers":
		return st == stHeaders || st == stPrimed
	default:
		return st == stPrimed
	}
}

// ---------------------------------------------------------------- publishers

type publisher interface {
	publish(ch int, seq int64) error
	flush() error
	// finish waits for outstanding publishes; returns errors counted so far
	finish(timeout time.Duration)
	stats() pubStats
	close()
}

type pubStats struct {
	Sent      int64       `json:"sent"`
	Errors    int64       `json:"errors"`
	Receivers int64       `json:"redis_receivers_sum,omitempty"`
	Lat       *latSummary `json:"publish_call_ms,omitempty"`
	ErrSample string      `json:"error_sample,omitempty"`
}

// Redis PUBLISH over one raw RESP connection, pipelined.
type redisPub struct {
	r         *runner
	nc        net.Conn
	w         *bufio.Writer
	sent      atomic.Int64
	replies   atomic.Int64
	errors    atomic.Int64
	receivers atomic.Int64
	errSample atomic.Value
	buf       []byte
	done      chan struct{}
}

func newRedisPub(r *runner, addr string) (*redisPub, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	p := &redisPub{r: r, nc: nc, w: bufio.NewWriterSize(nc, 64<<10), done: make(chan struct{})}
	go p.readLoop()
	return p, nil
}

func (p *redisPub) readLoop() {
	defer close(p.done)
	br := bufio.NewReader(p.nc)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) == 0 {
			continue
		}
		switch line[0] {
		case ':':
			n, _ := strconv.ParseInt(line[1:], 10, 64)
			p.receivers.Add(n)
		case '-':
			p.errors.Add(1)
			p.errSample.Store(line)
		}
		p.replies.Add(1)
	}
}

func bulk(dst []byte, b []byte) []byte {
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(b)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, b...)
	return append(dst, '\r', '\n')
}

func (p *redisPub) publish(ch int, seq int64) error {
	v := &vars{seq: seq, ch: p.r.chans[ch], pad: p.r.padStr, run: p.r.cfg.runID, c: int64(ch)}
	msg := render(nil, p.r.payloadT, v)
	p.buf = append(p.buf[:0], "*3\r\n$7\r\nPUBLISH\r\n"...)
	p.buf = bulk(p.buf, []byte(p.r.chans[ch]))
	p.buf = bulk(p.buf, msg)
	p.sent.Add(1)
	_, err := p.w.Write(p.buf)
	return err
}

func (p *redisPub) flush() error { return p.w.Flush() }

func (p *redisPub) finish(timeout time.Duration) {
	p.w.Flush()
	end := time.Now().Add(timeout)
	for p.replies.Load() < p.sent.Load() && time.Now().Before(end) {
		time.Sleep(5 * time.Millisecond)
	}
}

func (p *redisPub) stats() pubStats {
	s := pubStats{Sent: p.sent.Load(), Errors: p.errors.Load() + (p.sent.Load() - p.replies.Load()), Receivers: p.receivers.Load()}
	if v, ok := p.errSample.Load().(string); ok {
		s.ErrSample = v
	}
	return s
}

func (p *redisPub) close() { p.nc.Close(); <-p.done }

// HTTP POST with a small pool of keep-alive connections.
type httpPub struct {
	r         *runner
	client    *http.Client
	jobs      chan [2]int64
	wg        sync.WaitGroup
	sent      atomic.Int64
	errors    atomic.Int64
	errSample atomic.Value
	h         hist
	headers   [][2]string
}

func newHTTPPub(r *runner, conc int) *httpPub {
	if conc < 1 {
		conc = 1
	}
	tr := &http.Transport{MaxIdleConns: conc * 2, MaxIdleConnsPerHost: conc * 2, DisableCompression: true, IdleConnTimeout: 30 * time.Second}
	p := &httpPub{r: r, client: &http.Client{Transport: tr, Timeout: 10 * time.Second}, jobs: make(chan [2]int64, conc*4)}
	for _, h := range r.cfg.pubHeaders {
		if i := strings.IndexByte(h, ':'); i > 0 {
			p.headers = append(p.headers, [2]string{strings.TrimSpace(h[:i]), strings.TrimSpace(h[i+1:])})
		}
	}
	for w := 0; w < conc; w++ {
		p.wg.Add(1)
		go p.worker(w)
	}
	return p
}

func (p *httpPub) worker(w int) {
	defer p.wg.Done()
	for j := range p.jobs {
		ch, seq := int(j[0]), j[1]
		v := &vars{seq: seq, ch: p.r.chans[ch], pad: p.r.padStr, run: p.r.cfg.runID, c: int64(ch)}
		u := string(render(nil, p.r.pubURLT, v))
		t0 := time.Now()
		body := render(nil, p.r.payloadT, v)
		req, err := http.NewRequest("POST", u, bytes.NewReader(body))
		if err == nil {
			for _, h := range p.headers {
				req.Header.Set(h[0], h[1])
			}
			var resp *http.Response
			resp, err = p.client.Do(req)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode >= 300 {
					err = fmt.Errorf("publish status %d", resp.StatusCode)
				}
			}
		}
		p.h.add(w, time.Since(t0).Nanoseconds())
		if err != nil {
			p.errors.Add(1)
			p.errSample.Store(err.Error())
		}
	}
}

func (p *httpPub) publish(ch int, seq int64) error {
	p.sent.Add(1)
	p.jobs <- [2]int64{int64(ch), seq}
	return nil
}
func (p *httpPub) flush() error { return nil }
func (p *httpPub) finish(timeout time.Duration) {
	// wait until the queue is empty and in-flight requests are done
	end := time.Now().Add(timeout)
	for len(p.jobs) > 0 && time.Now().Before(end) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
}
func (p *httpPub) stats() pubStats {
	l := p.h.summary()
	s := pubStats{Sent: p.sent.Load(), Errors: p.errors.Load(), Lat: &l}
	if v, ok := p.errSample.Load().(string); ok {
		s.ErrSample = v
	}
	return s
}
func (p *httpPub) close() { close(p.jobs); p.wg.Wait() }

func (r *runner) newPublisher() (publisher, error) {
	switch r.cfg.pub {
	case "redis":
		if r.cfg.redisAddr == "" {
			return nil, errors.New("-pub redis needs -redis host:port")
		}
		return newRedisPub(r, r.cfg.redisAddr)
	case "http":
		return newHTTPPub(r, r.cfg.pubConc), nil
	}
	return nil, nil
}

// ---------------------------------------------------------------- /proc + Redis stats

type procSample struct {
	RSSKiB int64   `json:"rss_kib"`
	PSSKiB int64   `json:"pss_kib"`
	CPU    float64 `json:"cpu_s"`
	NProcs int     `json:"nprocs"`
	PIDs   []int   `json:"pids"`
}

func parsePids(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if v, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && v > 0 {
			out = append(out, v)
		}
	}
	return out
}

// statOf returns ppid and utime+stime (seconds) of pid.
func statOf(pid int) (ppid int, cpu float64, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0]=state f[1]=ppid ... utime is field 14 overall -> f[11], stime f[12]
	if len(f) < 13 {
		return 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	ut, _ := strconv.ParseFloat(f[11], 64)
	stt, _ := strconv.ParseFloat(f[12], 64)
	return ppid, (ut + stt) / 100.0, true // CLK_TCK = 100 on Linux
}

func kibField(path, key string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, ln := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(ln, key) {
			f := strings.Fields(ln[len(key):])
			if len(f) > 0 {
				v, _ := strconv.ParseInt(f[0], 10, 64)
				return v
			}
		}
	}
	return 0
}

func treeOf(roots []int) []int {
	if len(roots) == 0 {
		return nil
	}
	ents, _ := os.ReadDir("/proc")
	children := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp, _, ok := statOf(pid); ok {
			children[pp] = append(children[pp], pid)
		}
	}
	seen := map[int]bool{}
	var out []int
	var walk func(int)
	walk = func(p int) {
		if seen[p] {
			return
		}
		seen[p] = true
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", p)); err != nil {
			return
		}
		out = append(out, p)
		for _, ch := range children[p] {
			walk(ch)
		}
	}
	for _, p := range roots {
		walk(p)
	}
	return out
}

func sampleTree(roots []int) *procSample {
	if len(roots) == 0 {
		return nil
	}
	s := &procSample{}
	for _, p := range treeOf(roots) {
		_, cpu, ok := statOf(p)
		if !ok {
			continue
		}
		s.CPU += cpu
		s.NProcs++
		s.PIDs = append(s.PIDs, p)
		s.RSSKiB += kibField(fmt.Sprintf("/proc/%d/status", p), "VmRSS:")
		s.PSSKiB += kibField(fmt.Sprintf("/proc/%d/smaps_rollup", p), "Pss:")
	}
	s.CPU = round3(s.CPU)
	return s
}

type redisSample struct {
	Clients int64   `json:"connected_clients"`
	RSSKiB  int64   `json:"rss_kib"`
	CPU     float64 `json:"cpu_s"`
	PubsubC int64   `json:"pubsub_channels"`
	// NodeCPU: each listed Redis' own CPU (s), in -redis-stats order, when several are listed
	NodeCPU []float64 `json:"node_cpu_s,omitempty"`
}

// redisInfo samples one Redis, or several (a comma-separated list: a cluster's masters),
// summed: CPU, clients, RSS and channels of the whole deployment.
func redisInfo(addrs string) *redisSample {
	if addrs == "" {
		return nil
	}
	var sum *redisSample
	for _, addr := range strings.Split(addrs, ",") {
		s := redisInfoOne(addr)
		if s == nil {
			return nil // a partial sum would pass for the whole
		}
		if sum == nil {
			sum = s
			if strings.Contains(addrs, ",") {
				sum.NodeCPU = []float64{s.CPU}
			}
			continue
		}
		sum.NodeCPU = append(sum.NodeCPU, s.CPU)
		sum.Clients += s.Clients
		sum.RSSKiB += s.RSSKiB
		sum.CPU = round3(sum.CPU + s.CPU)
		sum.PubsubC += s.PubsubC
	}
	return sum
}

func redisInfoOne(addr string) *redisSample {
	nc, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return nil
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	nc.Write([]byte("*1\r\n$4\r\nINFO\r\n"))
	br := bufio.NewReader(nc)
	hdr, err := br.ReadString('\n')
	if err != nil || len(hdr) < 2 || hdr[0] != '$' {
		return nil
	}
	n, _ := strconv.Atoi(strings.TrimSpace(hdr[1:]))
	body := make([]byte, n+2)
	if _, err := io.ReadFull(br, body); err != nil {
		return nil
	}
	s := &redisSample{}
	var cu, cs float64
	for _, ln := range strings.Split(string(body), "\r\n") {
		k, v, ok := strings.Cut(ln, ":")
		if !ok {
			continue
		}
		switch k {
		case "connected_clients":
			s.Clients, _ = strconv.ParseInt(v, 10, 64)
		case "used_memory_rss":
			b, _ := strconv.ParseInt(v, 10, 64)
			s.RSSKiB = b / 1024
		case "used_cpu_sys":
			cs, _ = strconv.ParseFloat(v, 64)
		case "used_cpu_user":
			cu, _ = strconv.ParseFloat(v, 64)
		case "pubsub_channels":
			s.PubsubC, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	s.CPU = round3(cu + cs)
	return s
}

func selfCPU() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return round3(float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6)
}

type sample struct {
	At     float64      `json:"t_s"`
	Server *procSample  `json:"server,omitempty"`
	Redis  *redisSample `json:"redis,omitempty"`
	GenCPU float64      `json:"gen_cpu_s"`
	GenRSS int64        `json:"gen_rss_kib"`
	Alive  int          `json:"alive_conns"`
}

func (r *runner) sample(t0 time.Time) *sample {
	return &sample{
		At:     round3(time.Since(t0).Seconds()),
		Server: sampleTree(parsePids(r.cfg.serverPids)),
		Redis:  redisInfo(r.cfg.redisStats),
		GenCPU: selfCPU(),
		GenRSS: kibField("/proc/self/status", "VmRSS:"),
		Alive:  r.alive(),
	}
}

// samePids reports whether the server process set is unchanged (no worker
// died or was replaced) between two samples.
func samePids(a, b *sample) bool {
	if a == nil || b == nil || a.Server == nil || b.Server == nil {
		return true
	}
	if len(a.Server.PIDs) != len(b.Server.PIDs) {
		return false
	}
	for i := range a.Server.PIDs {
		if a.Server.PIDs[i] != b.Server.PIDs[i] {
			return false
		}
	}
	return true
}

func cpuDelta(a, b *sample) (srv, red, gen float64) {
	if a == nil || b == nil {
		return
	}
	if a.Server != nil && b.Server != nil {
		srv = round3(b.Server.CPU - a.Server.CPU)
	}
	if a.Redis != nil && b.Redis != nil {
		red = round3(b.Redis.CPU - a.Redis.CPU)
	}
	gen = round3(b.GenCPU - a.GenCPU)
	return
}

// nodeCPUDelta: each listed Redis' CPU between two samples (nil unless several are listed).
func nodeCPUDelta(a, b *sample) []float64 {
	if a == nil || b == nil || a.Redis == nil || b.Redis == nil || len(a.Redis.NodeCPU) != len(b.Redis.NodeCPU) {
		return nil
	}
	out := make([]float64, len(a.Redis.NodeCPU))
	for i := range out {
		out[i] = round3(b.Redis.NodeCPU[i] - a.Redis.NodeCPU[i])
	}
	return out
}

// ---------------------------------------------------------------- result

type connectResult struct {
	Requested   int            `json:"requested"`
	Ready       int            `json:"ready"`
	Failed      int            `json:"failed"`
	Dropped     int            `json:"dropped"`
	NotReady    int            `json:"not_ready"`
	Seconds     float64        `json:"seconds"`
	Errors      map[string]int `json:"errors,omitempty"`
	PrimerSent  int            `json:"primer_publishes,omitempty"`
	ServerCPU   float64        `json:"server_cpu_s"`
	RedisCPU    float64        `json:"redis_cpu_s"`
	GenCPU      float64        `json:"gen_cpu_s"`
	ContentType string         `json:"-"`
}

type idleResult struct {
	HoldS          float64 `json:"hold_s"`
	AliveStart     int     `json:"alive_start"`
	AliveEnd       int     `json:"alive_end"`
	AllStayed      bool    `json:"all_stayed_connected"`
	RSSKiBPerConn  float64 `json:"server_rss_kib_per_conn"`
	PSSKiBPerConn  float64 `json:"server_pss_kib_per_conn"`
	RedisKiBPerCon float64 `json:"redis_rss_kib_per_conn,omitempty"`
	ServerCPU      float64 `json:"server_cpu_s"`
	RedisCPU       float64 `json:"redis_cpu_s"`
	GenCPU         float64 `json:"gen_cpu_s"`
}

type stepResult struct {
	Rate           float64    `json:"rate"`
	DurationS      float64    `json:"publish_s"`
	Pub            pubStats   `json:"publisher"`
	PubRate        float64    `json:"publish_rate_achieved"`
	AliveStart     int        `json:"alive_start"`
	AliveEnd       int        `json:"alive_end"`
	Expected       int64      `json:"expected_deliveries"`
	Deliveries     int64      `json:"deliveries"`
	DeliveriesPerS float64    `json:"deliveries_per_s"`
	OfferedPerS    float64    `json:"offered_deliveries_per_s"`
	Missed         int64      `json:"missed"`
	Gaps           int64      `json:"gap_events"`
	OutOfOrder     int64      `json:"out_of_order"`
	Lat            latSummary `json:"latency_ms"`
	DrainS         float64    `json:"drain_s"`
	ServerCPU      float64    `json:"server_cpu_s"`
	RedisCPU       float64    `json:"redis_cpu_s"`
	RedisNodeCPU   []float64  `json:"redis_node_cpu_s,omitempty"` // per listed Redis (a cluster's masters)
	GenCPU         float64    `json:"gen_cpu_s"`
	ServerUsPerDel float64    `json:"server_cpu_us_per_delivery"`
	TotalUsPerDel  float64    `json:"server_plus_redis_cpu_us_per_delivery"`
	Restarted      bool       `json:"server_processes_changed,omitempty"`
	OK             bool       `json:"ok"`
}

type result struct {
	Tool       string             `json:"tool"`
	Label      string             `json:"label"`
	Scenario   string             `json:"scenario"`
	RunID      string             `json:"run_id"`
	Start      string             `json:"start"`
	N          int                `json:"n"`
	Channels   int                `json:"channels"`
	ReadyMode  string             `json:"ready_mode"`
	Pub        string             `json:"pub_method"`
	Connect    *connectResult     `json:"connect,omitempty"`
	Idle       *idleResult        `json:"idle,omitempty"`
	Steps      []stepResult       `json:"steps,omitempty"`
	MaxOKDelPS float64            `json:"max_ok_deliveries_per_s,omitempty"`
	MaxOKRate  float64            `json:"max_ok_rate,omitempty"`
	ChansPer   int                `json:"chans_per_sub"`
	Storm      *stormResult       `json:"storm,omitempty"`
	StopReason string             `json:"stop_reason,omitempty"`
	Samples    map[string]*sample `json:"samples"`
	DropErrors map[string]int     `json:"drop_errors,omitempty"`
	Comments   int64              `json:"comments_seen"`
	Unparsed   int64              `json:"events_unparsed"`
	Primers    int64              `json:"primer_events_seen"`
	Aborted    string             `json:"aborted,omitempty"`
	WallS      float64            `json:"wall_s"`
	GenCPU     float64            `json:"gen_cpu_s_total"`
}

func emit(cfg *config, v interface{}) {
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
	if cfg.out != "" {
		os.MkdirAll(filepath.Dir(cfg.out), 0o755)
		if f, err := os.OpenFile(cfg.out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err == nil {
			f.Write(append(b, '\n'))
			f.Close()
		}
	}
}

func logf(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "[ssebench %s] %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, a...))
}

// ---------------------------------------------------------------- modes

func newRunner(cfg *config) *runner {
	r := &runner{cfg: cfg, errs: map[string]int{}, dropErrs: map[string]int{}}
	r.subURL = compile(cfg.subURL)
	r.chanT = compile(cfg.chanTmpl)
	r.payloadT = compile(cfg.payload)
	r.pubURLT = compile(cfg.pubURL)
	r.padStr = strings.Repeat("x", cfg.pad)
	for c := 0; c < cfg.channels; c++ {
		r.chans = append(r.chans, string(render(nil, r.chanT, &vars{c: int64(c), run: cfg.runID})))
	}
	r.deadline = time.Now().Add(cfg.maxTime)
	return r
}

func parseRates(s string) []float64 {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		v, err := strconv.ParseFloat(f, 64)
		if err == nil && v > 0 {
			out = append(out, v)
		}
	}
	return out
}

// primeAll publishes one priming event (seq 0) to every channel; returns how many.
func (r *runner) primeAll(pub publisher) int {
	for ch := range r.chans {
		pub.publish(ch, 0)
	}
	pub.flush()
	return len(r.chans)
}

func (r *runner) connectAll(pub publisher) *connectResult {
	cfg := r.cfg
	res := &connectResult{Requested: cfg.n}
	t0 := time.Now()
	sem := make(chan struct{}, cfg.connConc)
	r.conns = make([]*subConn, cfg.n)
	for i := 0; i < cfg.n; i++ {
		x := cfg.first + i // the subscriber's index over every process of a -procs run
		r.conns[i] = &subConn{idx: x, ch: x % cfg.channels}
		if cfg.chansPerSub > 1 {
			for j := 0; j < cfg.chansPerSub; j++ {
				r.conns[i].chs = append(r.conns[i].chs, (x*cfg.chansPerSub+j)%cfg.channels)
			}
			r.conns[i].ch = r.conns[i].chs[0]
		} else {
			r.conns[i].chs = []int{r.conns[i].ch}
		}
	}
	go func() {
		for _, c := range r.conns {
			if r.closing.Load() {
				return
			}
			sem <- struct{}{}
			go r.subscribe(c, sem)
		}
	}()
	end := t0.Add(cfg.connTimeout)
	if end.After(r.deadline) {
		end = r.deadline
	}
	lastPrime := time.Time{}
	lastLog := time.Now()
	for time.Now().Before(end) {
		ready, notFinal := 0, 0
		for _, c := range r.conns {
			if r.isReady(c) {
				ready++
			} else if st := c.state.Load(); st != stFailed && st != stDropped {
				notFinal++
			}
		}
		if notFinal == 0 {
			break
		}
		// prime once every connection has at least sent its request
		// Re-send the priming event every -prime-every, but only once the
		// previous one has stopped arriving (nothing received for 300 ms), so a
		// slow server is not flooded with primers while fanning out the last one.
		quiet := time.Since(time.Unix(0, r.lastAny.Load())) > 300*time.Millisecond
		if cfg.ready == "prime" && pub != nil && time.Since(lastPrime) >= cfg.primeEvery && quiet {
			s, h, p, f, d, pend := r.counts()
			_ = p
			if pend == 0 && (s+h+p+f+d) == cfg.n {
				res.PrimerSent += r.primeAll(pub)
				lastPrime = time.Now()
			} else if pend > 0 {
				_ = s
				_ = h
			}
		}
		if time.Since(lastLog) > 5*time.Second {
			s, h, p, f, d, pend := r.counts()
			logf("connecting: pending=%d sent=%d headers=%d primed=%d failed=%d dropped=%d", pend, s, h, p, f, d)
			lastLog = time.Now()
		}
		time.Sleep(20 * time.Millisecond)
	}
	res.Seconds = round3(time.Since(t0).Seconds())
	for _, c := range r.conns {
		st := c.state.Load()
		switch {
		case r.isReady(c):
			res.Ready++
		case st == stFailed:
			res.Failed++
		case st == stDropped:
			res.Dropped++
		default:
			res.NotReady++
		}
	}
	r.errMu.Lock()
	if len(r.errs) > 0 {
		res.Errors = map[string]int{}
		for k, v := range r.errs {
			res.Errors[k] = v
		}
	}
	r.errMu.Unlock()
	return res
}

func (r *runner) closeAll() {
	r.closing.Store(true)
	for _, c := range r.conns {
		c.mu.Lock()
		if c.nc != nil {
			c.nc.Close()
		}
		c.mu.Unlock()
		if st := c.state.Load(); st == stSent || st == stHeaders || st == stPrimed {
			c.state.Store(stClosed)
		}
	}
}

func (r *runner) runStep(k int, rate float64, pub publisher, t0 time.Time) stepResult {
	cfg := r.cfg
	st := r.steps[k]
	res := stepResult{Rate: rate}
	aliveStart := map[int]int{} // channel -> alive subscribers
	for _, c := range r.conns {
		s := c.state.Load()
		if s == stSent || s == stHeaders || s == stPrimed {
			for _, ch := range c.chs {
				aliveStart[ch]++
			}
			res.AliveStart++
		}
	}
	before := r.sample(t0)
	seqN := make([]int64, len(r.chans))
	rng := rand.New(rand.NewSource(int64(k) + 1))
	var pubCalls int64
	start := time.Now()
	dur := cfg.duration
	if rem := time.Until(r.deadline) - cfg.drainMax; rem < dur {
		dur = rem
	}
	nextLog := start.Add(5 * time.Second)
	for {
		el := time.Since(start)
		if el >= dur {
			break
		}
		due := int64(el.Seconds()*rate) + 1
		for pubCalls < due {
			ch := int(pubCalls % int64(len(r.chans)))
			if cfg.pubRandom {
				ch = rng.Intn(len(r.chans))
			}
			seqN[ch]++
			pub.publish(ch, int64(k+1)*stepMul+seqN[ch])
			pubCalls++
			if time.Since(start) >= dur {
				break
			}
		}
		pub.flush()
		if time.Now().After(nextLog) {
			logf("step %d rate %.0f: published %d, deliveries %d", k+1, rate, pubCalls, st.deliveries.Load())
			nextLog = nextLog.Add(5 * time.Second)
		}
		next := start.Add(time.Duration(float64(pubCalls) / rate * 1e9))
		if d := time.Until(next); d > 0 {
			if d > 50*time.Millisecond {
				d = 50 * time.Millisecond
			}
			time.Sleep(d)
		}
	}
	pubEnd := time.Now()
	pub.finish(5 * time.Second)
	res.DurationS = round3(pubEnd.Sub(start).Seconds())
	for ch, n := range seqN {
		res.Expected += n * int64(aliveStart[ch])
	}
	// drain
	drainStart := time.Now()
	for time.Since(drainStart) < cfg.drainMax && time.Now().Before(r.deadline) {
		if st.deliveries.Load() >= res.Expected {
			break
		}
		la := r.lastAny.Load()
		if la > 0 && time.Since(time.Unix(0, la)) > cfg.drainIdle && time.Since(drainStart) > cfg.drainIdle {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	res.DrainS = round3(time.Since(drainStart).Seconds())
	after := r.sample(t0)
	res.ServerCPU, res.RedisCPU, res.GenCPU = cpuDelta(before, after)
	res.RedisNodeCPU = nodeCPUDelta(before, after)
	if !samePids(before, after) {
		// a worker died or was replaced: its CPU time is lost, the delta is meaningless
		res.Restarted = true
		res.ServerCPU = -1
	}
	res.Pub = pub.stats()
	res.PubRate = round3(float64(pubCalls) / res.DurationS)
	res.Deliveries = st.deliveries.Load()
	var subsPerChan int
	for _, n := range aliveStart {
		subsPerChan += n
	}
	res.OfferedPerS = round3(rate * float64(subsPerChan) / float64(len(r.chans)))
	if fr, lr := st.firstRecv.Load(), st.lastRecv.Load(); fr > 0 && lr > 0 {
		span := float64(lr-start.UnixNano()) / 1e9
		if span < res.DurationS {
			span = res.DurationS
		}
		res.DeliveriesPerS = round3(float64(res.Deliveries) / span)
	}
	// out-of-order arrivals are still counted as deliveries; duplicates would
	// hide misses, but none of the systems measured re-sends on one stream.
	res.Missed = res.Expected - res.Deliveries
	if res.Missed < 0 {
		res.Missed = 0
	}
	res.Gaps = st.gaps.Load()
	res.OutOfOrder = st.late.Load()
	res.Lat = st.h.summary()
	res.AliveEnd = r.alive()
	if res.Deliveries > 0 && !res.Restarted {
		res.ServerUsPerDel = round3(res.ServerCPU * 1e6 / float64(res.Deliveries))
		res.TotalUsPerDel = round3((res.ServerCPU + res.RedisCPU) * 1e6 / float64(res.Deliveries))
	}
	res.OK = res.AliveStart > 0 && res.Deliveries > 0 && res.Missed == 0 && !res.Restarted && res.AliveEnd == res.AliveStart && res.Pub.Errors == 0 &&
		(cfg.stopP99 == 0 || res.Lat.P99 <= float64(cfg.stopP99)/1e6) &&
		res.PubRate >= 0.95*rate
	return res
}

func modeRun(cfg *config, subOnly bool) {
	t0 := time.Now()
	r := newRunner(cfg)
	res := &result{Tool: "ssebench", Label: cfg.label, Scenario: cfg.scenario, RunID: cfg.runID,
		Start: t0.UTC().Format(time.RFC3339), N: cfg.n, Channels: cfg.channels, ChansPer: cfg.chansPerSub, ReadyMode: cfg.ready, Pub: cfg.pub,
		Samples: map[string]*sample{}}
	// hard cap
	go func() {
		time.Sleep(cfg.maxTime + 30*time.Second)
		logf("hard max-time exceeded; exiting")
		os.Exit(3)
	}()
	if subOnly {
		cfg.pub = "none"
		res.Pub = "none"
		r.external = !cfg.child // a -procs helper: its parent's primers (seq 0) prime its streams
		r.steps = []*stepStats{{}}
		if cfg.ready == "prime" && !cfg.child {
			cfg.ready = "headers"
			res.ReadyMode = "headers"
		}
	}
	rates := parseRates(cfg.rates)
	if !subOnly {
		for _, rt := range rates {
			r.steps = append(r.steps, &stepStats{rate: rt, base: int64(len(r.steps)+1) * stepMul})
		}
	}
	var pub publisher
	var err error
	if !subOnly && cfg.pub != "none" {
		pub, err = r.newPublisher()
		if err != nil {
			logf("publisher: %v", err)
			os.Exit(2)
		}
	}
	if cfg.ready == "prime" && pub == nil && !cfg.child {
		cfg.ready = "headers"
		res.ReadyMode = "headers"
	}
	res.Samples["before"] = r.sample(t0)
	var helpers []*helper
	var queries <-chan int
	var helperCPU float64
	total := cfg.n
	if cfg.child {
		queries = childQueries() // from the start: the parent's end is this process's end
	}
	if cfg.procs > 1 && !cfg.child {
		if subOnly || cfg.hold == 0 || len(rates) > 0 || cfg.stormBack > 0 {
			logf("-procs splits an idle hold only (run mode, -hold, no -rates or -storm-back)")
			os.Exit(2)
		}
		own, counts, firsts := shares(cfg.n, cfg.procs, cfg.first)
		conc := cfg.connConc / cfg.procs
		if conc < 1 {
			conc = 1
		}
		cfg.connConc = conc
		helpers, err = startHelpers(cfg, os.Args[2:], counts, firsts, conc)
		defer func() { stopHelpers(helpers) }()
		if err != nil {
			logf("helpers: %v", err)
			stopHelpers(helpers)
			os.Exit(2)
		}
		cfg.n = own
		logf("%d subscribers here, %v in %d helper processes", own, counts, len(helpers))
	}
	logf("connecting %d subscribers (%s) ready=%s", cfg.n, cfg.subURL, cfg.ready)
	res.Connect = r.connectAll(pub)
	logf("connect: ready=%d failed=%d dropped=%d not_ready=%d in %.1fs", res.Connect.Ready, res.Connect.Failed, res.Connect.Dropped, res.Connect.NotReady, res.Connect.Seconds)
	if cfg.child {
		serveAsChild(r, res.Connect, queries)
	}
	prime := func() { // the helpers' streams are primed by this process's publisher, as its own were
		if cfg.ready == "prime" && pub != nil {
			res.Connect.PrimerSent += r.primeAll(pub)
		}
	}
	for _, h := range helpers {
		v, err := h.expectTicking("READY", cfg.connTimeout+30*time.Second, cfg.primeEvery, prime)
		if err != nil {
			logf("helpers: %v", err)
			stopHelpers(helpers)
			os.Exit(2)
		}
		res.Connect.Requested += h.n
		res.Connect.Ready += v[0]
		res.Connect.Failed += v[1]
		res.Connect.Dropped += v[2]
		res.Connect.NotReady += v[3]
	}
	if len(helpers) > 0 {
		cfg.n = total
		res.Connect.Seconds = round3(time.Since(t0).Seconds()) // until the last process was ready
		logf("connect, all processes: ready=%d failed=%d dropped=%d not_ready=%d in %.1fs", res.Connect.Ready, res.Connect.Failed, res.Connect.Dropped, res.Connect.NotReady, res.Connect.Seconds)
	}
	time.Sleep(cfg.settle)
	res.Samples["ready"] = r.sample(t0)
	res.Connect.ServerCPU, res.Connect.RedisCPU, res.Connect.GenCPU = cpuDelta(res.Samples["before"], res.Samples["ready"])
	helpersAlive, known := 0, true // known: every process could say how many of its streams are open
	if len(helpers) > 0 {
		if helpersAlive, known = aliveInHelpers(helpers); known {
			res.Samples["ready"].Alive += helpersAlive
		} else {
			res.Samples["ready"].Alive = -1
		}
	}

	if cfg.hold > 0 {
		hold := cfg.hold
		if rem := time.Until(r.deadline); rem < hold {
			hold = rem
		}
		idle := &idleResult{HoldS: hold.Seconds(), AliveStart: r.alive() + helpersAlive}
		logf("holding %d connections for %s", idle.AliveStart, hold)
		if subOnly {
			end := time.Now().Add(hold)
			for time.Now().Before(end) {
				time.Sleep(100 * time.Millisecond)
			}
		} else {
			time.Sleep(hold)
		}
		res.Samples["after_hold"] = r.sample(t0)
		idle.AliveEnd = res.Samples["after_hold"].Alive
		if len(helpers) > 0 {
			// the server's memory is sampled with every helper's streams still open
			n, ok := aliveInHelpers(helpers)
			idle.AliveEnd += n
			known = known && ok
			res.Samples["after_hold"].Alive = idle.AliveEnd
		}
		if !known { // a per-stream figure over a wrong count would be wrong: none is given
			logf("a helper could not say how many streams it holds: no per-stream memory figure")
			res.Aborted = "a -procs helper failed; stream counts unknown"
			idle.AliveStart, idle.AliveEnd = -1, -1
			res.Samples["after_hold"].Alive = -1
		}
		idle.AllStayed = known && idle.AliveStart == cfg.n && idle.AliveEnd == cfg.n
		b, a := res.Samples["before"], res.Samples["after_hold"]
		if b.Server != nil && a.Server != nil && idle.AliveEnd > 0 {
			idle.RSSKiBPerConn = round3(float64(a.Server.RSSKiB-b.Server.RSSKiB) / float64(idle.AliveEnd))
			idle.PSSKiBPerConn = round3(float64(a.Server.PSSKiB-b.Server.PSSKiB) / float64(idle.AliveEnd))
		}
		if b.Redis != nil && a.Redis != nil && idle.AliveEnd > 0 {
			idle.RedisKiBPerCon = round3(float64(a.Redis.RSSKiB-b.Redis.RSSKiB) / float64(idle.AliveEnd))
		}
		idle.ServerCPU, idle.RedisCPU, idle.GenCPU = cpuDelta(res.Samples["ready"], a)
		res.Idle = idle
	}

	if subOnly {
		st := r.steps[0]
		sr := stepResult{Deliveries: st.deliveries.Load(), Gaps: st.gaps.Load(), OutOfOrder: st.late.Load(), Lat: st.h.summary(), AliveEnd: r.alive()}
		res.Steps = append(res.Steps, sr)
	}

	for k, rt := range rates {
		if subOnly || pub == nil || time.Until(r.deadline) < cfg.drainMax+2*time.Second {
			if !subOnly && pub != nil {
				res.Aborted = "max-time reached before all steps"
			}
			break
		}
		if k > 0 {
			time.Sleep(cfg.pause)
		}
		logf("step %d: rate %.0f/s for %s", k+1, rt, cfg.duration)
		sr := r.runStep(k, rt, pub, t0)
		logf("step %d: delivered %d/%d (%.0f/s) p50=%.1fms p99=%.1fms missed=%d ok=%v", k+1, sr.Deliveries, sr.Expected, sr.DeliveriesPerS, sr.Lat.P50, sr.Lat.P99, sr.Missed, sr.OK)
		res.Steps = append(res.Steps, sr)
		if sr.OK && sr.DeliveriesPerS > res.MaxOKDelPS {
			res.MaxOKDelPS = sr.DeliveriesPerS
			res.MaxOKRate = rt
		}
		if !sr.OK && (cfg.stopP99 > 0 || cfg.stopOnMiss) {
			switch {
			case sr.Missed > 0:
				res.StopReason = fmt.Sprintf("missed %d events at rate %.0f", sr.Missed, rt)
			case sr.AliveEnd < sr.AliveStart:
				res.StopReason = fmt.Sprintf("%d connections dropped at rate %.0f", sr.AliveStart-sr.AliveEnd, rt)
			case cfg.stopP99 > 0 && sr.Lat.P99 > float64(cfg.stopP99)/1e6:
				res.StopReason = fmt.Sprintf("p99 %.1f ms > %s at rate %.0f", sr.Lat.P99, cfg.stopP99, rt)
			case sr.PubRate < 0.95*rt:
				res.StopReason = fmt.Sprintf("publisher achieved only %.0f/s of %.0f/s", sr.PubRate, rt)
			default:
				res.StopReason = fmt.Sprintf("publish errors at rate %.0f", rt)
			}
			break
		}
	}
	if cfg.stormBack > 0 && pub != nil && !subOnly {
		res.Storm = r.runStorm(pub, t0)
	}
	if pub != nil {
		pub.close()
	}
	helperCPU = stopHelpers(helpers)
	helpers = nil
	r.closeAll()
	time.Sleep(cfg.settle)
	res.Samples["after_close"] = r.sample(t0)
	r.errMu.Lock()
	if len(r.dropErrs) > 0 {
		res.DropErrors = r.dropErrs
	}
	r.errMu.Unlock()
	res.Comments = r.comments.Load()
	res.Unparsed = r.unparsed.Load()
	res.Primers = r.primer.Load()
	res.WallS = round3(time.Since(t0).Seconds())
	res.GenCPU = round3(selfCPU() + helperCPU) // the samples' gen_cpu_s are the parent's alone
	emit(cfg, res)
}

func modePub(cfg *config) {
	r := newRunner(cfg)
	rates := parseRates(cfg.rates)
	if len(rates) == 0 {
		rates = []float64{100}
	}
	pub, err := r.newPublisher()
	if err != nil || pub == nil {
		logf("publisher: %v (use -pub http|redis)", err)
		os.Exit(2)
	}
	rate := rates[0]
	start := time.Now()
	dur := cfg.duration
	if dur > cfg.maxTime {
		dur = cfg.maxTime
	}
	seqN := make([]int64, len(r.chans))
	var calls int64
	for time.Since(start) < dur {
		due := int64(time.Since(start).Seconds()*rate) + 1
		for calls < due {
			ch := int(calls % int64(len(r.chans)))
			seqN[ch]++
			pub.publish(ch, seqN[ch])
			calls++
		}
		pub.flush()
		if d := time.Until(start.Add(time.Duration(float64(calls) / rate * 1e9))); d > 0 {
			time.Sleep(d)
		}
	}
	el := time.Since(start).Seconds()
	pub.finish(5 * time.Second)
	st := pub.stats()
	pub.close()
	emit(cfg, map[string]interface{}{"tool": "ssebench", "mode": "pub", "label": cfg.label, "rate": rate, "publish_s": round3(el),
		"publisher": st, "publish_rate_achieved": round3(float64(calls) / el), "channels": r.chans})
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: ssebench run|sub|pub [flags]   (ssebench run -h for flags)")
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	mode := os.Args[1]
	cfg := parseFlags(mode, os.Args[2:])
	switch mode {
	case "run":
		modeRun(cfg, false)
	case "sub":
		modeRun(cfg, true)
	case "pub":
		modePub(cfg)
	default:
		usage()
	}
}

// ---------------------------------------------------------------- resume storm

type stormResult struct {
	Back            int            `json:"back"`
	Streams         int            `json:"streams"`
	WithCursor      int            `json:"with_cursor"`
	LiveDelivered   int64          `json:"published_delivered_live"`
	LiveExpected    int64          `json:"published_expected_live"`
	Reconnected     int            `json:"reconnected"`
	Failed          int            `json:"failed"`
	ReplayComplete  int            `json:"replay_complete"`
	ReplayDelivered int64          `json:"replay_delivered"`
	ReplayExpected  int64          `json:"replay_expected"`
	ReplayP50S      float64        `json:"replay_p50_s"`
	ReplayMaxS      float64        `json:"replay_max_s"`
	AllReplayedS    float64        `json:"all_replayed_s"` // -1: not every stream got its events back
	Live            int            `json:"live"`
	LiveP50S        float64        `json:"live_p50_s"`
	AllLiveS        float64        `json:"all_live_s"` // -1: not every stream saw a live event within -storm-max
	ServerCPU       float64        `json:"server_cpu_s"`
	RedisCPU        float64        `json:"redis_cpu_s"`
	Errors          map[string]int `json:"errors,omitempty"`
}

func quantileS(v []int64, q float64) float64 {
	if len(v) == 0 {
		return -1
	}
	c := append([]int64(nil), v...)
	for i := 1; i < len(c); i++ { // insertion sort: a few thousand values
		for j := i; j > 0 && c[j] < c[j-1]; j-- {
			c[j], c[j-1] = c[j-1], c[j]
		}
	}
	i := int(math.Ceil(q*float64(len(c)))) - 1
	if i < 0 {
		i = 0
	}
	return round3(float64(c[i]) / 1e9)
}

// runStorm: remember every stream's last event id, publish -storm-back events
// per channel (delivered live), drop every stream, then reconnect them all at
// once with Last-Event-ID = the remembered id.  A stream has "replayed" when
// all of those events came back; it is "live" once it receives a probe event
// published after the storm began (probes go to every channel every 0.5 s
// while any stream still waits for one).
func (r *runner) runStorm(pub publisher, t0 time.Time) *stormResult {
	cfg := r.cfg
	k := int64(len(r.steps) + 1)
	res := &stormResult{Back: cfg.stormBack, Streams: len(r.conns)}
	r.stormSeqLo = k * stepMul
	r.stormSeqHi = k*stepMul + int64(cfg.stormBack)
	r.probeLo = (k + 1) * stepMul
	resume := make([]string, len(r.conns))
	for i, c := range r.conns {
		if v, ok := c.lastID.Load().(string); ok && v != "" {
			resume[i] = v
			res.WithCursor++
		}
	}
	// 1. publish `back` events per channel while everybody listens (not counted as replay)
	alive := 0
	for _, c := range r.conns {
		if s := c.state.Load(); s == stSent || s == stHeaders || s == stPrimed {
			alive += len(c.chs)
		}
	}
	res.LiveExpected = int64(cfg.stormBack) * int64(alive)
	var liveGot atomic.Int64 // storm events delivered live (before the drop)
	r.stormWant.Store(-1)    // count live deliveries of storm events through replayN without completing anyone
	logf("storm: publishing %d events on each of %d channels", cfg.stormBack, len(r.chans))
	for n := int64(1); n <= int64(cfg.stormBack); n++ {
		for ch := range r.chans {
			pub.publish(ch, r.stormSeqLo+n)
		}
		pub.flush()
		time.Sleep(2 * time.Millisecond)
	}
	pub.finish(10 * time.Second)
	end := time.Now().Add(20 * time.Second)
	for time.Now().Before(end) {
		var got int64
		for _, c := range r.conns {
			got += c.replayN.Load()
		}
		liveGot.Store(got)
		if got >= res.LiveExpected {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	res.LiveDelivered = liveGot.Load()
	// 2. drop everybody, then reconnect all at once
	r.closeAll()
	time.Sleep(time.Second)
	old := r.conns
	fresh := make([]*subConn, len(old))
	for i, c := range old {
		fresh[i] = &subConn{idx: c.idx, ch: c.ch, chs: c.chs, resume: resume[i]}
	}
	r.stormWant.Store(int64(cfg.stormBack) * int64(len(old[0].chs)))
	r.conns = fresh
	r.closing.Store(false)
	before := r.sample(t0)
	start := time.Now()
	logf("storm: reconnecting %d streams at once", len(fresh))
	for _, c := range fresh {
		go r.subscribe(c, nil)
	}
	deadline := start.Add(cfg.stormMax)
	if deadline.After(r.deadline) {
		deadline = r.deadline
	}
	var probeN int64
	lastProbe := time.Time{}
	lastLog := time.Now()
	for time.Now().Before(deadline) {
		live, replayed, final := 0, 0, 0
		for _, c := range fresh {
			if c.probeT.Load() > 0 {
				live++
			}
			if c.replayT.Load() > 0 {
				replayed++
			}
			if st := c.state.Load(); st == stFailed || st == stDropped {
				final++
			}
		}
		if live+final >= len(fresh) {
			// everybody is live; give replays (which precede live frames) a moment
			// to finish when a target does not resume at all
			if replayed+final >= len(fresh) || time.Since(time.Unix(0, r.lastAny.Load())) > 3*time.Second {
				break
			}
		}
		if time.Since(lastProbe) >= 500*time.Millisecond {
			probeN++
			for ch := range r.chans {
				pub.publish(ch, r.probeLo+probeN)
			}
			pub.flush()
			lastProbe = time.Now()
		}
		if time.Since(lastLog) > 5*time.Second {
			logf("storm: live=%d replayed=%d failed/dropped=%d of %d", live, replayed, final, len(fresh))
			lastLog = time.Now()
		}
		time.Sleep(10 * time.Millisecond)
	}
	after := r.sample(t0)
	res.ServerCPU, res.RedisCPU, _ = cpuDelta(before, after)
	var replayTimes, liveTimes []int64
	for _, c := range fresh {
		st := c.state.Load()
		if st == stFailed {
			res.Failed++
		} else if st == stHeaders || st == stPrimed || st == stDropped {
			res.Reconnected++
		}
		res.ReplayDelivered += c.replayN.Load()
		if t := c.replayT.Load(); t > 0 {
			replayTimes = append(replayTimes, t-start.UnixNano())
		}
		if t := c.probeT.Load(); t > 0 {
			liveTimes = append(liveTimes, t-start.UnixNano())
		}
	}
	res.ReplayExpected = r.stormWant.Load() * int64(len(fresh))
	res.ReplayComplete, res.Live = len(replayTimes), len(liveTimes)
	res.ReplayP50S, res.ReplayMaxS = quantileS(replayTimes, 0.5), quantileS(replayTimes, 1)
	res.AllReplayedS, res.AllLiveS = -1, -1
	if res.ReplayComplete == len(fresh) {
		res.AllReplayedS = res.ReplayMaxS
	}
	res.LiveP50S = quantileS(liveTimes, 0.5)
	if res.Live == len(fresh) {
		res.AllLiveS = quantileS(liveTimes, 1)
	}
	r.errMu.Lock()
	if len(r.errs) > 0 {
		res.Errors = map[string]int{}
		for k, v := range r.errs {
			res.Errors[k] = v
		}
	}
	r.errMu.Unlock()
	logf("storm: live %d/%d (all in %.2fs), replayed %d/%d (all in %.2fs)", res.Live, len(fresh), res.AllLiveS, res.ReplayComplete, len(fresh), res.AllReplayedS)
	return res
}
