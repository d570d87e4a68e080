package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// usage is what a process tree holds: resident memory and descriptors.
type usage struct {
	procs int
	rssKB int64
	fds   int
}

// measureTree sums the resident memory and open descriptors of pid and all
// its descendants: nginx's connections live in its workers, which are the
// master's children. Memory is Rss from smaps_rollup (VmRSS where that file
// is missing), in KiB.
func measureTree(pid int) (usage, error) {
	pids, err := Descendants(pid)
	if err != nil {
		return usage{}, err
	}
	var u usage
	for _, p := range pids {
		rss, err := rssKB(p)
		if err != nil {
			return usage{}, err
		}
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p))
		if err != nil {
			return usage{}, fmt.Errorf("bench: descriptors of pid %d: %w", p, err)
		}
		u.procs++
		u.rssKB += rss
		u.fds += len(fds)
	}
	return u, nil
}

// Descendants returns pid and every process below it (nginx's workers, for
// its master), from the parent pids in /proc/*/stat.
func Descendants(pid int) ([]int, error) {
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
		return nil, fmt.Errorf("bench: process %d: %w", pid, err)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	children := make(map[int][]int)
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		// The command name in parentheses may hold spaces: the fields
		// after the last ')' are state, then ppid.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 {
			continue
		}
		if pp, err := strconv.Atoi(f[1]); err == nil {
			children[pp] = append(children[pp], p)
		}
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out, nil
}

// rssKB reads a process's resident set size in KiB.
func rssKB(pid int) (int64, error) {
	if v, err := procField(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Rss:"); err == nil {
		return v, nil
	}
	return procField(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:")
}

// procField returns the number after key on its line of a /proc file.
func procField(path, key string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), key); ok {
			if fs := strings.Fields(rest); len(fs) > 0 {
				return strconv.ParseInt(fs[0], 10, 64)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("bench: no %s in %s", key, path)
}
