// Command writefloor measures the floor under "server CPU per delivery" on
// this machine: the CPU a process spends to write one small WebSocket frame
// to one loopback TCP socket, woken the way a server is woken by a broadcast
// (BATCH frames to BATCH different sockets per wake-up), and nothing else: no
// parsing, no routing, no encoding, no Redis, no HTTP. What a server does per
// delivery costs at least this much, whatever it is written in.
//
//	go run ./bench/writefloor                     # defaults below
//	go run ./bench/writefloor -rates 15000,60000 -batch 10 -conns 1000
//
// The reading side runs in a child process (this binary with -reader), as the
// load generator does in bench/compare.sh, so the receiver's own user-space
// work is not counted; the kernel's loopback delivery that runs in the
// writer's context is counted, as it is for a server. It prints one line per
// rate: writes/s reached and the writer's user+system CPU per write.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	reader := flag.Bool("reader", false, "internal: run as the reading child process")
	conns := flag.Int("conns", 1000, "loopback connections written to")
	rates := flag.String("rates", "15000,30000,60000,0", "writes a second to measure, comma-separated; 0: as fast as one goroutine can")
	batch := flag.Int("batch", 10, "frames written per wake-up (one broadcast's local members)")
	size := flag.Int("size", 180, "bytes per frame (a bench event of the fan-out shape is about 180)")
	dur := flag.Duration("dur", 5*time.Second, "time per rate")
	flag.Parse()
	if *reader {
		fmt.Fprintln(os.Stderr, "writefloor reader:", runReader())
		os.Exit(1)
	}
	if err := run(*conns, *rates, *batch, *size, *dur); err != nil {
		fmt.Fprintln(os.Stderr, "writefloor:", err)
		os.Exit(1)
	}
}

// runReader accepts connections and reads everything sent, one goroutine per
// connection (its cost is not measured); the process exits when its stdin
// closes. It returns only on an error.
func runReader() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr().String())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			_, _ = io.Copy(io.Discard, c)
			_ = c.Close()
		}()
	}
}

func run(nconns int, rateList string, batch, size int, dur time.Duration) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	child := exec.Command(self, "-reader")
	child.Stderr = os.Stderr
	stdin, err := child.StdinPipe()
	if err != nil {
		return err
	}
	out, err := child.StdoutPipe()
	if err != nil {
		return err
	}
	if err := child.Start(); err != nil {
		return err
	}
	defer func() { _ = stdin.Close(); _ = child.Wait() }()
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return fmt.Errorf("reader's address: %w", err)
	}
	addr = strings.TrimSpace(addr)

	fds := make([]int, 0, nconns)
	var keep []net.Conn
	for i := 0; i < nconns; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		keep = append(keep, c)
		fd, err := rawFd(c.(*net.TCPConn))
		if err != nil {
			return err
		}
		fds = append(fds, fd)
	}
	defer func() {
		for _, c := range keep {
			_ = c.Close()
		}
	}()

	frame := make([]byte, size)
	frame[0], frame[1] = 0x81, 126 // a text frame with a 16-bit length, as a server sends
	frame[2], frame[3] = byte((size-4)>>8), byte(size-4)
	for i := 4; i < size; i++ {
		frame[i] = 'x'
	}

	fmt.Printf("# %d loopback connections, %d-byte frames, %d per wake-up, %s per rate, GOMAXPROCS=%s\n",
		nconns, size, batch, dur, os.Getenv("GOMAXPROCS"))
	fmt.Printf("%-12s %-12s %-14s %s\n", "rate", "writes/s", "CPU/write µs", "of which system µs")
	for _, f := range strings.Split(rateList, ",") {
		rate, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return fmt.Errorf("rate %q: %w", f, err)
		}
		n, user, sys, elapsed, err := measure(fds, frame, rate, batch, dur)
		if err != nil {
			return err
		}
		label := strconv.Itoa(rate)
		if rate == 0 {
			label = "unpaced"
		}
		fmt.Printf("%-12s %-12.0f %-14.2f %.2f\n", label, float64(n)/elapsed.Seconds(),
			float64((user+sys).Nanoseconds())/1e3/float64(n), float64(sys.Nanoseconds())/1e3/float64(n))
	}
	return nil
}

// measure writes for dur at rate writes a second (0: unpaced), batch frames
// per wake-up to successive connections, and returns the writes done and this
// process's user and system CPU over that time.
func measure(fds []int, frame []byte, rate, batch int, dur time.Duration) (n int, user, sys, elapsed time.Duration, err error) {
	var before, after syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &before); err != nil {
		return 0, 0, 0, 0, err
	}
	start := time.Now()
	var interval time.Duration
	if rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(batch) / float64(rate))
	}
	next := start
	k := 0
	var mu sync.Mutex // a broadcast takes a lock per member in a server; so does this
	for time.Since(start) < dur {
		if interval > 0 {
			next = next.Add(interval)
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
		}
		for j := 0; j < batch; j++ {
			fd := fds[k%len(fds)]
			k++
			mu.Lock()
			w, werr := unix.Write(fd, frame)
			mu.Unlock()
			if werr != nil && !errors.Is(werr, unix.EAGAIN) {
				return 0, 0, 0, 0, werr
			}
			if w == len(frame) {
				n++
			}
		}
	}
	elapsed = time.Since(start)
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &after); err != nil {
		return 0, 0, 0, 0, err
	}
	user = time.Duration(syscall.TimevalToNsec(after.Utime) - syscall.TimevalToNsec(before.Utime))
	sys = time.Duration(syscall.TimevalToNsec(after.Stime) - syscall.TimevalToNsec(before.Stime))
	return n, user, sys, elapsed, nil
}

// rawFd returns a non-blocking duplicate of the connection's descriptor, as
// pkg/engineio writes to a hijacked connection.
func rawFd(c *net.TCPConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var ferr error
	if err := raw.Control(func(f uintptr) {
		fd, ferr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	if ferr != nil {
		return -1, ferr
	}
	return fd, unix.SetNonblock(fd, true)
}
