package main

import (
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestTemplate(t *testing.T) {
	got := string(render(nil, compile(`{"data":{"bseq":{seq},"c":"{chan}"}}`), &vars{seq: 42, ch: "x"}))
	if got != `{"data":{"bseq":42,"c":"x"}}` {
		t.Fatalf("got %s", got)
	}
}

func TestLineReaderEndings(t *testing.T) {
	in := "a\r\nb\nc\rd\r\n\r\ne"
	lr := &lineReader{r: iotest.OneByteReader(strings.NewReader(in)), buf: make([]byte, 2), maxLine: 1 << 10}
	var got []string
	for {
		l, err := lr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(l))
	}
	want := []string{"a", "b", "c", "d", ""}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q want %q", got, want)
	}
}

func TestFindNum(t *testing.T) {
	for _, c := range []struct {
		in  string
		key string
		v   int64
		ok  bool
	}{
		{`{"bseq":12,"bts":34}`, "bseq", 12, true},
		{`{"bseq": 12, "bts": 34}`, "bts", 34, true},
		{`bseq=7`, "bseq", 7, true},
		{`{"x":1}`, "bseq", 0, false},
	} {
		v, ok := findNum([]byte(c.in), c.key)
		if v != c.v || ok != c.ok {
			t.Errorf("%s: got %d %v", c.in, v, ok)
		}
	}
}

func TestHistogram(t *testing.T) {
	var h hist
	for i := 1; i <= 1000; i++ {
		h.add(i, int64(i)*1e6) // 1..1000 ms
	}
	s := h.summary()
	if s.P50 < 495 || s.P50 > 505 || s.P99 < 980 || s.P99 > 995 || s.Max != 1000 {
		t.Fatalf("bad summary %+v", s)
	}
}

func TestTemplateChans(t *testing.T) {
	got := string(render(nil, compile(`/stream?channels={chans}`), &vars{ch: "a", chs: "a,b,c"}))
	if got != `/stream?channels=a,b,c` {
		t.Fatalf("got %s", got)
	}
	if got := string(render(nil, compile(`/s/{chans}`), &vars{ch: "a"})); got != `/s/a` {
		t.Fatalf("single channel: got %s", got)
	}
}

func TestQuantileS(t *testing.T) {
	if q := quantileS([]int64{3e9, 1e9, 2e9}, 1); q != 3 {
		t.Fatalf("max: %v", q)
	}
	if q := quantileS([]int64{3e9, 1e9, 2e9}, 0.5); q != 2 {
		t.Fatalf("median: %v", q)
	}
}

func TestShares(t *testing.T) {
	own, child, first := shares(20000, 2, 0)
	if own != 10000 || len(child) != 1 || child[0] != 10000 || first[0] != 10000 {
		t.Fatalf("20000/2: own %d child %v first %v", own, child, first)
	}
	own, child, first = shares(10001, 3, 0)
	if own+child[0]+child[1] != 10001 || first[0] != own || first[1] != own+child[0] {
		t.Fatalf("10001/3: own %d child %v first %v", own, child, first)
	}
	_, _, first = shares(10, 2, 100)
	if first[0] != 105 {
		t.Fatalf("10/2 from 100: first %v", first)
	}
}
