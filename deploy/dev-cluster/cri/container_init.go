package main

// The init process of a container (`tessera-cri init DIR`), started by the runtime with new
// mount, pid and UTS namespaces: pid 1 of the container. It makes the namespace's mounts
// private, sets the pod's hostname, makes the container's bind mounts and devices, starts the
// command (pid 2) and reports "ok <host pid>" or "error <why>" on descriptor 3, copies the
// command's stdout and stderr into the CRI log, forwards termination signals to the command,
// reaps orphans, and when the command exits kills what is left in the namespace and writes
// exit.json. It needs no connection to the runtime after the start, so containers outlive a
// restart of tessera-cri, which then learns their end from exit.json.
//
// The container keeps the host's /proc: the fake GPU names processes by pid and judges their
// liveness through /proc, and tessera-node maps GPU processes to pods by host pid, as on a real
// node where NVML reports host pids.

import (
	"encoding/json"
	"fmt"
	"io/ioutil"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// containerSpec is what the runtime hands the init process (spec.json in the container's dir).
type containerSpec struct {
	ID         string     `json:"id"`
	Display    string     `json:"display"` // namespace/pod/container, for messages
	Argv       []string   `json:"argv"`
	Env        []string   `json:"env"`
	WorkingDir string     `json:"working_dir"`
	Hostname   string     `json:"hostname"`
	Mounts     []bindSpec `json:"mounts"`
	LogDir     string     `json:"log_dir"`
	LogFile    string     `json:"log_file"` // relative to LogDir
	Scratch    string     `json:"scratch"`
	// The pod's securityContext: runAsUser/runAsGroup/supplementalGroups (nil: root).
	User *userSpec `json:"user,omitempty"`
}

type userSpec struct {
	UID    uint32   `json:"uid"`
	GID    uint32   `json:"gid"`
	Groups []uint32 `json:"groups,omitempty"`
}

// exitRecord is how the init process tells the runtime how the command ended (exit.json).
type exitRecord struct {
	ExitCode   int32  `json:"exit_code"`
	FinishedAt int64  `json:"finished_at"` // ns since the epoch
	Reason     string `json:"reason"`
	Message    string `json:"message,omitempty"`
}

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func containerInitMain(dir string) int {
	status := os.NewFile(3, "status")
	fail := func(format string, args ...interface{}) int {
		message := fmt.Sprintf(format, args...)
		fmt.Fprintf(os.Stderr, "tessera-cri init: %s\n", message)
		fmt.Fprintf(status, "error %s\n", strings.ReplaceAll(message, "\n", " "))
		status.Close()
		return 1
	}
	// Before anything else: a SIGTERM that arrives while mounting is handled below.
	signals := make(chan os.Signal, 16)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT,
		syscall.SIGUSR1, syscall.SIGUSR2)

	var spec containerSpec
	data, err := ioutil.ReadFile(filepath.Join(dir, "spec.json"))
	if err == nil {
		err = json.Unmarshal(data, &spec)
	}
	if err != nil {
		return fail("reading the container's spec: %v", err)
	}
	if err := makePrivate(); err != nil {
		return fail("%v", err)
	}
	if spec.Hostname != "" {
		if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
			return fail("setting the hostname %q: %v", spec.Hostname, err)
		}
	}
	// The log directory is opened before the container's mounts could cover its path.
	logDir, err := unix.Open(spec.LogDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fail("opening the log directory %s: %v", spec.LogDir, err)
	}
	criLog, err := openCRILog(logDir, spec.LogFile)
	if err != nil {
		return fail("opening the log file %s in %s: %v", spec.LogFile, spec.LogDir, err)
	}
	m := newMounter(spec.Scratch)
	for _, b := range spec.Mounts {
		if err := m.Bind(b); err != nil {
			return fail("%v", err)
		}
	}
	workingDir := spec.WorkingDir
	if workingDir == "" {
		workingDir = "/"
	}
	if info, err := os.Stat(workingDir); err != nil || !info.IsDir() {
		return fail("working directory %s does not exist on the node (tessera-cri runs containers "+
			"on the node's filesystem and creates no directories there)", workingDir)
	}
	program, err := lookPath(spec.Argv[0], workingDir, spec.Env)
	if err != nil {
		return fail("%v", err)
	}

	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return fail("%v", err)
	}
	stdoutRead, stdoutWrite, err := os.Pipe()
	if err != nil {
		return fail("%v", err)
	}
	stderrRead, stderrWrite, err := os.Pipe()
	if err != nil {
		return fail("%v", err)
	}
	attributes := &os.ProcAttr{
		Dir:   workingDir,
		Env:   spec.Env,
		Files: []*os.File{devNull, stdoutWrite, stderrWrite},
	}
	if spec.User != nil {
		attributes.Sys = &syscall.SysProcAttr{Credential: &syscall.Credential{
			Uid: spec.User.UID, Gid: spec.User.GID, Groups: spec.User.Groups}}
	}
	command, err := os.StartProcess(program, spec.Argv, attributes)
	stdoutWrite.Close()
	stderrWrite.Close()
	devNull.Close()
	if err != nil {
		return fail("starting %q: %v", spec.Argv[0], err)
	}
	// The command's pid in the container (2, as we are 1); the runtime knows our host pid.
	fmt.Fprintf(status, "ok %d\n", command.Pid)
	status.Close()

	var pumps sync.WaitGroup
	pumps.Add(2)
	go func() { defer pumps.Done(); criLog.Pump("stdout", stdoutRead) }()
	go func() { defer pumps.Done(); criLog.Pump("stderr", stderrRead) }()

	// Reap every process of the namespace (pid 1's duty); report the command's end.
	commandEnded := make(chan syscall.WaitStatus, 1)
	allReaped := make(chan struct{})
	go func() {
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, 0, nil)
			if err == syscall.EINTR {
				continue
			}
			if err != nil { // ECHILD: nobody left
				close(allReaped)
				return
			}
			if pid == command.Pid {
				commandEnded <- ws
			}
		}
	}()

	var ended syscall.WaitStatus
wait:
	for {
		select {
		case sig := <-signals:
			if sig == syscall.SIGUSR1 {
				if err := criLog.Reopen(); err != nil {
					fmt.Fprintf(os.Stderr, "tessera-cri init: reopening the log: %v\n", err)
				}
				continue
			}
			_ = syscall.Kill(command.Pid, sig.(syscall.Signal))
		case ended = <-commandEnded:
			break wait
		}
	}
	finishedAt := time.Now()
	// As when a container's pid 1 exits: nothing of it survives.
	_ = syscall.Kill(-1, syscall.SIGKILL)
	<-allReaped
	pumps.Wait()
	criLog.Close()

	record := exitRecord{FinishedAt: finishedAt.UnixNano()}
	switch {
	case ended.Exited():
		record.ExitCode = int32(ended.ExitStatus())
	case ended.Signaled():
		record.ExitCode = 128 + int32(ended.Signal())
		record.Message = fmt.Sprintf("killed by signal %d (%v)", int(ended.Signal()), ended.Signal())
	}
	record.Reason = "Completed"
	if record.ExitCode != 0 {
		record.Reason = "Error"
	}
	if err := writeJSONFile(filepath.Join(dir, "exit.json"), record); err != nil {
		fmt.Fprintf(os.Stderr, "tessera-cri init: %v\n", err)
		return 1
	}
	return 0
}

// lookPath finds name as execve would through the container's PATH (not ours).
func lookPath(name, workingDir string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		path := name
		if !filepath.IsAbs(path) {
			path = filepath.Join(workingDir, path)
		}
		if err := checkExecutable(path); err != nil {
			return "", fmt.Errorf("command %q: %v", name, err)
		}
		return path, nil
	}
	searchPath := defaultPath
	for _, kv := range env {
		if strings.HasPrefix(kv, "PATH=") {
			searchPath = kv[len("PATH="):]
		}
	}
	for _, dir := range filepath.SplitList(searchPath) {
		if dir == "" {
			dir = "."
		}
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(workingDir, dir)
		}
		path := filepath.Join(dir, name)
		if checkExecutable(path) == nil {
			return path, nil
		}
	}
	return "", fmt.Errorf("executable %q not found in PATH %s (images mean nothing here: the "+
		"command runs from the node's filesystem)", name, searchPath)
}

func checkExecutable(path string) error {
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	if info.IsDir() {
		return fmt.Errorf("%s is a directory", path)
	}
	if info.Mode()&0111 == 0 {
		return fmt.Errorf("%s is not executable", path)
	}
	return nil
}

// writeJSONFile writes v to path atomically (a reader never sees half a file).
func writeJSONFile(path string, v interface{}) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := ioutil.WriteFile(tmp, append(data, '\n'), 0644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
