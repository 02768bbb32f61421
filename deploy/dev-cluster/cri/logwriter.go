package main

// A container's stdout and stderr in the CRI log format that kubelet reads for `kubectl logs`:
//
//	<RFC3339Nano time> <stdout|stderr> <F|P> <content>\n
//
// F ends a line; P is a piece of a longer line (the line goes on in the next record) or the
// last bytes of a stream that did not end with a newline, as containerd writes them.

import (
	"bufio"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// maxLogLine is the longest record content; longer lines are split into P records.
const maxLogLine = 16 * 1024

type criLog struct {
	mu   sync.Mutex
	dir  int    // descriptor of the sandbox's log directory, opened before any mount
	name string // path of the log file relative to dir
	file *os.File
	now  func() time.Time
}

func openCRILog(dir int, name string) (*criLog, error) {
	l := &criLog{dir: dir, name: name, now: time.Now}
	if err := l.Reopen(); err != nil {
		return nil, err
	}
	return l, nil
}

// Reopen starts writing to a new file at the log's path (kubelet renames the file to rotate it
// and then asks the runtime to reopen).
func (l *criLog) Reopen() error {
	fd, err := unix.Openat(l.dir, l.name, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_CLOEXEC, 0640)
	if err != nil {
		return &os.PathError{Op: "open", Path: l.name, Err: err}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.file != nil {
		l.file.Close()
	}
	l.file = os.NewFile(uintptr(fd), l.name)
	return nil
}

func (l *criLog) write(stream string, tag byte, content []byte) {
	record := make([]byte, 0, len(content)+64)
	record = l.now().UTC().AppendFormat(record, time.RFC3339Nano)
	record = append(record, ' ')
	record = append(record, stream...)
	record = append(record, ' ', tag, ' ')
	record = append(record, content...)
	record = append(record, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.file != nil {
		l.file.Write(record) // a full disk loses log lines, never the container
	}
}

// Pump copies r (one of the container's streams) into the log until r ends.
func (l *criLog) Pump(stream string, r io.Reader) {
	reader := bufio.NewReaderSize(r, maxLogLine)
	var line []byte
	for {
		chunk, err := reader.ReadSlice('\n')
		line = append(line, chunk...)
		switch err {
		case nil: // a whole line, newline included
			content := line[:len(line)-1]
			for len(content) > maxLogLine {
				l.write(stream, 'P', content[:maxLogLine])
				content = content[maxLogLine:]
			}
			l.write(stream, 'F', content)
			line = line[:0]
		case bufio.ErrBufferFull:
			for len(line) >= maxLogLine {
				l.write(stream, 'P', line[:maxLogLine])
				line = append(line[:0], line[maxLogLine:]...)
			}
		default: // io.EOF or a read error: what is left did not end with a newline
			if len(line) > 0 {
				l.write(stream, 'P', line)
			}
			return
		}
	}
}

func (l *criLog) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.file != nil {
		l.file.Close()
		l.file = nil
	}
}
