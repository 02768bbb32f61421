package main

// The runtime service: the kubelet's fake runtime keeps the sandbox and container records (and
// answers the calls that need nothing more: Version, Status, sandbox status and lists,
// container lists and status); this file overrides the calls that create, start, stop and
// remove things, to run real processes, and keeps the records true to them.
//
// Locking: runtime.mu guards the runtime's own maps; the fake's own mutex guards its records.
// runtime.mu is always taken first. Nothing blocks on a process while holding either.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io/ioutil"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1alpha2"
	apitest "k8s.io/cri-api/pkg/apis/testing"
	"k8s.io/kubernetes/pkg/kubelet/cri/remote/fake"
	"k8s.io/kubernetes/pkg/kubelet/cri/remote/util"
)

type options struct {
	listen        string
	stateDir      string
	nodeName      string
	podIP         string
	fakeGPULibDir string
	fakeGPUConfig string
	fakeGPUState  string
}

// sandboxInfo is what the runtime remembers of a sandbox beyond the fake's record.
type sandboxInfo struct {
	LogDirectory string `json:"log_directory"`
	Hostname     string `json:"hostname"`
	Display      string `json:"display"` // namespace/pod
}

// containerInfo is what the runtime remembers of a container beyond the fake's record.
type containerInfo struct {
	SandboxID  string `json:"sandbox_id"`
	Dir        string `json:"dir"`
	Display    string `json:"display"`
	InitPID    int    `json:"init_pid,omitempty"` // host pid of the container's init (its pid 1)
	InitTicks  uint64 `json:"init_ticks,omitempty"`
	StartError string `json:"start_error,omitempty"`

	spec containerSpec
	// Closed once the container has exited and its record says so; nil unless it was started.
	exited chan struct{}
}

// markExited closes `exited` once (a container's end can be learnt twice: from its init and at a
// failed start). REQUIRES: the runtime's lock.
func (c *containerInfo) markExited() {
	if c.exited == nil {
		return
	}
	select {
	case <-c.exited:
	default:
		close(c.exited)
	}
}

// persistedState is state.json: enough to carry on after a restart of the runtime.
type persistedState struct {
	Sandboxes     map[string]*apitest.FakePodSandbox `json:"sandboxes"`
	Containers    map[string]*apitest.FakeContainer  `json:"containers"`
	Images        map[string]*runtimeapi.Image       `json:"images"`
	SandboxInfo   map[string]*sandboxInfo            `json:"sandbox_info"`
	ContainerInfo map[string]*containerInfo          `json:"container_info"`
}

type runtime struct {
	*fake.RemoteRuntime
	opts    options
	nsenter string
	log     *log.Logger

	mu         sync.Mutex
	sandboxes  map[string]*sandboxInfo
	containers map[string]*containerInfo
}

func serveMain(args []string) error {
	var o options
	fs := flag.NewFlagSet("tessera-cri serve", flag.ContinueOnError)
	fs.StringVar(&o.listen, "listen", "", "unix socket to serve CRI on (path)")
	fs.StringVar(&o.stateDir, "state-dir", "", "directory for containers and state.json")
	fs.StringVar(&o.nodeName, "node-name", "", "node name, for the log")
	fs.StringVar(&o.podIP, "pod-ip", "127.0.0.1", "IP reported for every pod (containers use the node's network)")
	fs.StringVar(&o.fakeGPULibDir, "fakegpu-lib-dir", "", "directory of the fake libcuda.so.1/libnvidia-ml.so.1, put first in LD_LIBRARY_PATH")
	fs.StringVar(&o.fakeGPUConfig, "fakegpu-config", "", "the node's fake GPU device file (TESSERA_FAKEGPU_CONFIG)")
	fs.StringVar(&o.fakeGPUState, "fakegpu-state", "", "the node's fake GPU state file (TESSERA_FAKEGPU_STATE)")
	fs.Usage = usage
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.listen == "" || o.stateDir == "" {
		usage()
		return fmt.Errorf("--listen and --state-dir are required")
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return fmt.Errorf("nsenter (util-linux) is needed for ExecSync: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(o.stateDir, "containers"), 0755); err != nil {
		return err
	}

	apitest.FakeRuntimeName = "tessera"
	apitest.FakeVersion = "0.1.0"
	apitest.FakePodSandboxIPs = []string{o.podIP}
	r := &runtime{
		RemoteRuntime: fake.NewFakeRemoteRuntime(),
		opts:          o,
		nsenter:       nsenter,
		log:           log.New(os.Stderr, "tessera-cri["+o.nodeName+"] ", log.LstdFlags|log.Lmicroseconds),
		sandboxes:     map[string]*sandboxInfo{},
		containers:    map[string]*containerInfo{},
	}
	r.ImageService.SetFakeImageSize(fakeImageSize)
	r.RuntimeService.FakeStatus = &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{
		{Type: runtimeapi.RuntimeReady, Status: true},
		{Type: runtimeapi.NetworkReady, Status: true},
	}}
	if err := r.load(); err != nil {
		return err
	}

	listener, err := util.CreateListener("unix://" + o.listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %v", o.listen, err)
	}
	server := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(server, r)
	runtimeapi.RegisterImageServiceServer(server, r)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		sig := <-stop
		// Containers keep running: a restarted runtime adopts them from state.json.
		r.log.Printf("%v: stopping; containers keep running", sig)
		server.Stop()
	}()
	r.log.Printf("serving CRI v1alpha2 on %s (state in %s, %d containers known)", o.listen, o.stateDir, len(r.containers))
	err = server.Serve(listener)
	if err == grpc.ErrServerStopped {
		err = nil
	}
	return err
}

// ---- Sandboxes ------------------------------------------------------------------------------

func (r *runtime) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	resp, err := r.RemoteRuntime.RunPodSandbox(ctx, req)
	if err != nil {
		return nil, err
	}
	meta := req.GetConfig().GetMetadata()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sandboxes[resp.PodSandboxId] = &sandboxInfo{
		LogDirectory: req.GetConfig().GetLogDirectory(),
		Hostname:     req.GetConfig().GetHostname(),
		Display:      meta.GetNamespace() + "/" + meta.GetName(),
	}
	r.persistLocked()
	return resp, nil
}

func (r *runtime) StopPodSandbox(ctx context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	// kubelet stops the containers first, with their grace periods; whatever still runs dies now.
	for _, id := range r.containersOf(req.PodSandboxId) {
		r.stop(id, 0)
	}
	r.RuntimeService.Lock()
	if s, ok := r.RuntimeService.Sandboxes[req.PodSandboxId]; ok {
		s.State = runtimeapi.PodSandboxState_SANDBOX_NOTREADY
	}
	r.RuntimeService.Unlock()
	r.persist()
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

func (r *runtime) RemovePodSandbox(ctx context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	for _, id := range r.containersOf(req.PodSandboxId) {
		if err := r.remove(id); err != nil {
			return nil, err
		}
	}
	r.RuntimeService.Lock()
	delete(r.RuntimeService.Sandboxes, req.PodSandboxId)
	r.RuntimeService.Unlock()
	r.mu.Lock()
	delete(r.sandboxes, req.PodSandboxId)
	r.persistLocked()
	r.mu.Unlock()
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

func (r *runtime) containersOf(sandboxID string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for id, c := range r.containers {
		if c.SandboxID == sandboxID {
			ids = append(ids, id)
		}
	}
	return ids
}

// ---- Containers -----------------------------------------------------------------------------

func (r *runtime) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	r.mu.Lock()
	sandbox, ok := r.sandboxes[req.PodSandboxId]
	r.mu.Unlock()
	if !ok {
		return nil, status.Errorf(codes.NotFound, "pod sandbox %q not found", req.PodSandboxId)
	}
	config := req.GetConfig()
	resp, err := r.RemoteRuntime.CreateContainer(ctx, req)
	if err != nil {
		return nil, err
	}
	id := resp.ContainerId
	dir := filepath.Join(r.opts.stateDir, "containers", id)
	_ = os.RemoveAll(dir) // a stale directory of an earlier runtime with the same id
	if err := os.MkdirAll(dir, 0755); err != nil {
		return nil, err
	}
	spec := containerSpec{
		ID:         id,
		Display:    sandbox.Display + "/" + config.GetMetadata().GetName(),
		Argv:       append(append([]string{}, config.Command...), config.Args...),
		Env:        r.containerEnv(config.Envs, sandbox.Hostname),
		WorkingDir: config.WorkingDir,
		Hostname:   sandbox.Hostname,
		LogDir:     sandbox.LogDirectory,
		LogFile:    config.LogPath,
		Scratch:    filepath.Join(dir, "scratch"),
	}
	if sc := config.GetLinux().GetSecurityContext(); sc.GetRunAsUser() != nil || sc.GetRunAsGroup() != nil {
		user := &userSpec{}
		if sc.GetRunAsUser() != nil {
			user.UID = uint32(sc.GetRunAsUser().GetValue())
		}
		if sc.GetRunAsGroup() != nil {
			user.GID = uint32(sc.GetRunAsGroup().GetValue())
		}
		for _, g := range sc.GetSupplementalGroups() {
			user.Groups = append(user.Groups, uint32(g))
		}
		spec.User = user
	}
	for _, m := range config.Mounts {
		spec.Mounts = append(spec.Mounts, bindSpec{Source: m.HostPath, Target: m.ContainerPath, ReadOnly: m.Readonly})
	}
	for _, d := range config.Devices {
		spec.Mounts = append(spec.Mounts, bindSpec{Source: d.HostPath, Target: d.ContainerPath})
	}
	if err := writeJSONFile(filepath.Join(dir, "spec.json"), spec); err != nil {
		return nil, err
	}
	imageName := r.imageName(config.GetImage().GetImage())

	r.mu.Lock()
	defer r.mu.Unlock()
	r.RuntimeService.Lock()
	if c, ok := r.RuntimeService.Containers[id]; ok {
		if sandbox.LogDirectory != "" && config.LogPath != "" {
			c.LogPath = filepath.Join(sandbox.LogDirectory, config.LogPath)
		}
		c.Mounts = config.Mounts
		c.ImageRef = config.GetImage().GetImage()
		c.Image = &runtimeapi.ImageSpec{Image: imageName}
	}
	r.RuntimeService.Unlock()
	r.containers[id] = &containerInfo{SandboxID: req.PodSandboxId, Dir: dir, Display: spec.Display, spec: spec}
	r.persistLocked()
	return resp, nil
}

// containerEnv is kubelet's environment for the container plus what the NVIDIA container
// toolkit would add on a GPU node: the node's (fake) driver libraries first in
// LD_LIBRARY_PATH, the fake GPU's device and state files, and NVIDIA_VISIBLE_DEVICES=void
// (no GPU) when the container asked for none; a value the container has is passed on as is.
func (r *runtime) containerEnv(kubeEnv []*runtimeapi.KeyValue, hostname string) []string {
	var keys []string
	values := map[string]string{}
	set := func(key, value string) {
		if _, ok := values[key]; !ok {
			keys = append(keys, key)
		}
		values[key] = value
	}
	for _, kv := range kubeEnv {
		set(kv.Key, kv.Value)
	}
	if _, ok := values["PATH"]; !ok {
		set("PATH", defaultPath)
	}
	if _, ok := values["HOSTNAME"]; !ok && hostname != "" {
		set("HOSTNAME", hostname)
	}
	if dir := r.opts.fakeGPULibDir; dir != "" {
		if old := values["LD_LIBRARY_PATH"]; old != "" {
			set("LD_LIBRARY_PATH", dir+":"+old)
		} else {
			set("LD_LIBRARY_PATH", dir)
		}
	}
	if r.opts.fakeGPUConfig != "" {
		set("TESSERA_FAKEGPU_CONFIG", r.opts.fakeGPUConfig)
	}
	if r.opts.fakeGPUState != "" {
		set("TESSERA_FAKEGPU_STATE", r.opts.fakeGPUState)
	}
	if _, ok := values["NVIDIA_VISIBLE_DEVICES"]; !ok {
		set("NVIDIA_VISIBLE_DEVICES", "void")
	}
	env := make([]string, 0, len(keys))
	for _, key := range keys {
		env = append(env, key+"="+values[key])
	}
	return env
}

func (r *runtime) StartContainer(ctx context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	id := req.ContainerId
	r.mu.Lock()
	c, ok := r.containers[id]
	if ok && c.exited != nil {
		r.mu.Unlock()
		return nil, status.Errorf(codes.FailedPrecondition, "container %s was already started", id)
	}
	if ok {
		c.exited = make(chan struct{})
	}
	r.mu.Unlock()
	if !ok {
		return nil, status.Errorf(codes.NotFound, "container %q not found", id)
	}
	if len(c.spec.Argv) == 0 {
		return nil, r.startFailed(id, c, fmt.Sprintf("container %s has no command: tessera-cri runs "+
			"the pod's command and args on the node and images have no entrypoint here; give the "+
			"container a command", c.Display))
	}

	statusRead, statusWrite, err := os.Pipe()
	if err != nil {
		return nil, r.startFailed(id, c, err.Error())
	}
	defer statusRead.Close()
	initLog, err := os.OpenFile(filepath.Join(c.Dir, "init.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0644)
	if err != nil {
		statusWrite.Close()
		return nil, r.startFailed(id, c, err.Error())
	}
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{"tessera-cri", "init", c.Dir},
		Env:        []string{"PATH=" + defaultPath},
		Dir:        "/",
		Stdout:     initLog,
		Stderr:     initLog,
		ExtraFiles: []*os.File{statusWrite},
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWUTS,
			Setsid:     true,
		},
	}
	err = cmd.Start()
	statusWrite.Close()
	initLog.Close()
	if err != nil {
		return nil, r.startFailed(id, c, fmt.Sprintf("starting the container's init: %v", err))
	}
	line := make(chan string, 1)
	go func() {
		text, _ := bufio.NewReader(statusRead).ReadString('\n')
		line <- strings.TrimSpace(text)
	}()
	var report string
	select {
	case report = <-line:
	case <-time.After(60 * time.Second):
		report = "error the container's init did not start the command within 60 s"
		_ = cmd.Process.Kill()
	}
	if !strings.HasPrefix(report, "ok ") {
		_ = cmd.Wait()
		message := strings.TrimPrefix(report, "error ")
		if report == "" {
			message = "the container's init exited before starting the command: " + tail(filepath.Join(c.Dir, "init.log"))
		}
		return nil, r.startFailed(id, c, message)
	}
	commandPID := strings.TrimPrefix(report, "ok ")
	pid := cmd.Process.Pid
	ticks := processStartTicks(pid)
	r.mu.Lock()
	c.InitPID, c.InitTicks = pid, ticks
	r.RuntimeService.Lock()
	if fc, ok := r.RuntimeService.Containers[id]; ok {
		fc.State = runtimeapi.ContainerState_CONTAINER_RUNNING
		fc.StartedAt = time.Now().UnixNano()
	}
	r.RuntimeService.Unlock()
	r.persistLocked()
	r.mu.Unlock()
	r.log.Printf("start %s id=%s init-pid=%d command-pid-in-container=%s argv=%q %s", c.Display, id, pid,
		commandPID, c.spec.Argv, envValue(c.spec.Env, "NVIDIA_VISIBLE_DEVICES"))
	go func() {
		_ = cmd.Wait()
		ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
		r.finish(id, &ws)
	}()
	return &runtimeapi.StartContainerResponse{}, nil
}

// startFailed records a container that could not start as exited with code 128 (StartError),
// as containerd does, so that a pod that never restarts fails instead of retrying forever.
func (r *runtime) startFailed(id string, c *containerInfo, message string) error {
	r.mu.Lock()
	c.StartError = message
	r.RuntimeService.Lock()
	if fc, ok := r.RuntimeService.Containers[id]; ok {
		fc.State = runtimeapi.ContainerState_CONTAINER_EXITED
		fc.FinishedAt = time.Now().UnixNano()
		fc.ExitCode = 128
		fc.Reason = "StartError"
		fc.Message = message
	}
	r.RuntimeService.Unlock()
	c.markExited()
	r.persistLocked()
	r.mu.Unlock()
	r.log.Printf("start %s id=%s failed: %s", c.Display, id, message)
	// `kubectl logs` says why, too.
	if c.spec.LogDir != "" && c.spec.LogFile != "" {
		if dir, err := unix.Open(c.spec.LogDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
			if l, err := openCRILog(dir, c.spec.LogFile); err == nil {
				l.write("stderr", 'F', []byte("tessera-cri: "+message))
				l.Close()
			}
			unix.Close(dir)
		}
	}
	return status.Error(codes.Unknown, message)
}

// finish records the end of a started container: from exit.json, which the container's init
// writes after the command ended and its output was logged, or, when the init itself was
// killed (StopContainer's SIGKILL, or someone else), from how the init ended.
func (r *runtime) finish(id string, ws *syscall.WaitStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[id]
	if !ok {
		return
	}
	var record exitRecord
	data, err := ioutil.ReadFile(filepath.Join(c.Dir, "exit.json"))
	if err == nil {
		err = json.Unmarshal(data, &record)
	}
	if err != nil {
		record = exitRecord{FinishedAt: time.Now().UnixNano(), ExitCode: 137, Reason: "Error"}
		switch {
		case ws != nil && ws.Signaled():
			record.ExitCode = 128 + int32(ws.Signal())
			record.Message = fmt.Sprintf("the container was killed (signal %d, %v, to its init)", int(ws.Signal()), ws.Signal())
		case ws != nil:
			record.ExitCode = 255
			record.Message = "the container's init failed: " + tail(filepath.Join(c.Dir, "init.log"))
		default:
			record.Message = "the container's processes were gone and left no exit status (killed while tessera-cri was not watching)"
		}
	}
	var ran time.Duration
	r.RuntimeService.Lock()
	if fc, ok := r.RuntimeService.Containers[id]; ok {
		fc.State = runtimeapi.ContainerState_CONTAINER_EXITED
		fc.FinishedAt = record.FinishedAt
		fc.ExitCode = record.ExitCode
		fc.Reason = record.Reason
		fc.Message = record.Message
		ran = time.Duration(fc.FinishedAt - fc.StartedAt)
	}
	r.RuntimeService.Unlock()
	c.markExited()
	r.persistLocked()
	r.log.Printf("exit %s id=%s code=%d reason=%s after %.3fs %s", c.Display, id, record.ExitCode,
		record.Reason, ran.Seconds(), record.Message)
}

func (r *runtime) StopContainer(ctx context.Context, req *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	r.mu.Lock()
	_, ok := r.containers[req.ContainerId]
	r.mu.Unlock()
	if !ok {
		return nil, status.Errorf(codes.NotFound, "container %q not found", req.ContainerId)
	}
	r.stop(req.ContainerId, req.Timeout)
	return &runtimeapi.StopContainerResponse{}, nil
}

// stop sends the command SIGTERM (through its init), waits up to timeout seconds, then kills the
// init, which takes every process of the container's pid namespace with it; it returns once
// the record says exited.
func (r *runtime) stop(id string, timeout int64) {
	r.mu.Lock()
	c, ok := r.containers[id]
	var exited chan struct{}
	pid, ticks := 0, uint64(0)
	if ok {
		exited, pid, ticks = c.exited, c.InitPID, c.InitTicks
	}
	r.mu.Unlock()
	if !ok || exited == nil || pid == 0 {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	alive := func() bool { return processStartTicks(pid) == ticks }
	if timeout > 0 && alive() {
		r.log.Printf("stop %s id=%s: SIGTERM, %d s to exit", c.Display, id, timeout)
		_ = syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-exited:
			return
		case <-time.After(time.Duration(timeout) * time.Second):
		}
	}
	if alive() {
		r.log.Printf("stop %s id=%s: SIGKILL", c.Display, id)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		r.log.Printf("stop %s id=%s: init pid %d did not exit within 30 s of SIGKILL", c.Display, id, pid)
	}
}

func (r *runtime) RemoveContainer(ctx context.Context, req *runtimeapi.RemoveContainerRequest) (*runtimeapi.RemoveContainerResponse, error) {
	if err := r.remove(req.ContainerId); err != nil {
		return nil, err
	}
	return &runtimeapi.RemoveContainerResponse{}, nil
}

func (r *runtime) remove(id string) error {
	r.stop(id, 0)
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[id]
	if ok {
		if err := os.RemoveAll(c.Dir); err != nil {
			return status.Errorf(codes.Internal, "removing %s: %v", c.Dir, err)
		}
		delete(r.containers, id)
	}
	r.RuntimeService.Lock()
	delete(r.RuntimeService.Containers, id)
	r.RuntimeService.Unlock()
	r.persistLocked()
	return nil
}

func (r *runtime) ReopenContainerLog(ctx context.Context, req *runtimeapi.ReopenContainerLogRequest) (*runtimeapi.ReopenContainerLogResponse, error) {
	pid, err := r.runningInit(req.ContainerId)
	if err != nil {
		return nil, err
	}
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		return nil, status.Errorf(codes.Internal, "signalling the container's init: %v", err)
	}
	return &runtimeapi.ReopenContainerLogResponse{}, nil
}

func (r *runtime) runningInit(id string) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.containers[id]
	if !ok {
		return 0, status.Errorf(codes.NotFound, "container %q not found", id)
	}
	r.RuntimeService.Lock()
	fc := r.RuntimeService.Containers[id]
	running := fc != nil && fc.State == runtimeapi.ContainerState_CONTAINER_RUNNING
	r.RuntimeService.Unlock()
	if !running || c.InitPID == 0 {
		return 0, status.Errorf(codes.FailedPrecondition, "container %q is not running", id)
	}
	return c.InitPID, nil
}

// ExecSync runs a command inside a running container (exec probes): in its mount, UTS and pid
// namespaces, with its environment and working directory.
func (r *runtime) ExecSync(ctx context.Context, req *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	pid, err := r.runningInit(req.ContainerId)
	if err != nil {
		return nil, err
	}
	if len(req.Cmd) == 0 {
		return nil, status.Error(codes.InvalidArgument, "no command")
	}
	r.mu.Lock()
	spec := r.containers[req.ContainerId].spec
	r.mu.Unlock()
	if req.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(req.Timeout)*time.Second)
		defer cancel()
	}
	workingDir := spec.WorkingDir
	if workingDir == "" {
		workingDir = "/"
	}
	args := append([]string{"-t", strconv.Itoa(pid), "-m", "-u", "-p", "--wd=" + workingDir, "--"}, req.Cmd...)
	cmd := exec.CommandContext(ctx, r.nsenter, args...)
	cmd.Env = spec.Env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	resp := &runtimeapi.ExecSyncResponse{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	if exitErr, ok := err.(*exec.ExitError); ok {
		resp.ExitCode = int32(exitErr.ExitCode())
		if ctx.Err() != nil {
			return nil, status.Errorf(codes.DeadlineExceeded, "command %q timed out after %d s", req.Cmd, req.Timeout)
		}
	} else if err != nil {
		return nil, status.Errorf(codes.Internal, "exec in %s: %v", req.ContainerId, err)
	}
	return resp, nil
}

func (r *runtime) Exec(ctx context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	return nil, status.Error(codes.Unimplemented, "tessera-cri has no streaming server: no kubectl exec/attach/port-forward (exec probes work; use `scripts/cluster/cluster.py exec NODE -- ...` to run things on a node)")
}

func (r *runtime) Attach(ctx context.Context, req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	return nil, status.Error(codes.Unimplemented, "tessera-cri has no streaming server: no kubectl attach")
}

func (r *runtime) PortForward(ctx context.Context, req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	return nil, status.Error(codes.Unimplemented, "tessera-cri has no streaming server: no kubectl port-forward (pods use the node's network)")
}

// Stats: records without usage (no cgroups here), so that kubelet's summary finds every
// running container.
func (r *runtime) ContainerStats(ctx context.Context, req *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	stats := r.stats(&runtimeapi.ContainerStatsFilter{Id: req.ContainerId})
	if len(stats) == 0 {
		return nil, status.Errorf(codes.NotFound, "container %q not found", req.ContainerId)
	}
	return &runtimeapi.ContainerStatsResponse{Stats: stats[0]}, nil
}

func (r *runtime) ListContainerStats(ctx context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	return &runtimeapi.ListContainerStatsResponse{Stats: r.stats(req.Filter)}, nil
}

func (r *runtime) stats(filter *runtimeapi.ContainerStatsFilter) []*runtimeapi.ContainerStats {
	now := time.Now().UnixNano()
	r.RuntimeService.Lock()
	defer r.RuntimeService.Unlock()
	var result []*runtimeapi.ContainerStats
	for id, c := range r.RuntimeService.Containers {
		if filter != nil && ((filter.Id != "" && filter.Id != id) ||
			(filter.PodSandboxId != "" && filter.PodSandboxId != c.SandboxID)) {
			continue
		}
		if filter != nil && len(filter.LabelSelector) > 0 {
			match := true
			for k, v := range filter.LabelSelector {
				if c.Labels[k] != v {
					match = false
				}
			}
			if !match {
				continue
			}
		}
		if c.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			continue
		}
		result = append(result, &runtimeapi.ContainerStats{
			Attributes: &runtimeapi.ContainerAttributes{Id: id, Metadata: c.Metadata, Labels: c.Labels, Annotations: c.Annotations},
			Cpu:        &runtimeapi.CpuUsage{Timestamp: now, UsageCoreNanoSeconds: &runtimeapi.UInt64Value{}},
			Memory:     &runtimeapi.MemoryUsage{Timestamp: now, WorkingSetBytes: &runtimeapi.UInt64Value{}},
			WritableLayer: &runtimeapi.FilesystemUsage{Timestamp: now,
				FsId:      &runtimeapi.FilesystemIdentifier{Mountpoint: r.opts.stateDir},
				UsedBytes: &runtimeapi.UInt64Value{}, InodesUsed: &runtimeapi.UInt64Value{}},
		})
	}
	return result
}

// ---- State ----------------------------------------------------------------------------------

func (r *runtime) statePath() string { return filepath.Join(r.opts.stateDir, "state.json") }

func (r *runtime) persist() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.persistLocked()
}

// REQUIRES: r.mu held.
func (r *runtime) persistLocked() {
	r.RuntimeService.Lock()
	r.ImageService.Lock()
	data, err := json.Marshal(persistedState{
		Sandboxes:     r.RuntimeService.Sandboxes,
		Containers:    r.RuntimeService.Containers,
		Images:        r.ImageService.Images,
		SandboxInfo:   r.sandboxes,
		ContainerInfo: r.containers,
	})
	r.ImageService.Unlock()
	r.RuntimeService.Unlock()
	if err == nil {
		tmp := r.statePath() + ".tmp"
		if err = ioutil.WriteFile(tmp, data, 0644); err == nil {
			err = os.Rename(tmp, r.statePath())
		}
	}
	if err != nil {
		r.log.Printf("saving %s: %v", r.statePath(), err)
	}
}

// load takes up the records of an earlier run: containers whose init still lives are adopted
// (watched until they end), the others are finished from their exit.json.
func (r *runtime) load() error {
	data, err := ioutil.ReadFile(r.statePath())
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	var state persistedState
	if err := json.Unmarshal(data, &state); err != nil {
		return fmt.Errorf("%s: %v", r.statePath(), err)
	}
	if state.Sandboxes != nil {
		r.RuntimeService.Sandboxes = state.Sandboxes
	}
	if state.Containers != nil {
		r.RuntimeService.Containers = state.Containers
	}
	if state.Images != nil {
		r.ImageService.Images = state.Images
	}
	if state.SandboxInfo != nil {
		r.sandboxes = state.SandboxInfo
	}
	if state.ContainerInfo != nil {
		r.containers = state.ContainerInfo
	}
	var adopt, lost []string
	for id, c := range r.containers {
		data, err := ioutil.ReadFile(filepath.Join(c.Dir, "spec.json"))
		if err == nil {
			err = json.Unmarshal(data, &c.spec)
		}
		if err != nil {
			r.log.Printf("container %s: %v", id, err)
		}
		fc := r.RuntimeService.Containers[id]
		if fc == nil || fc.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			if fc != nil && fc.State == runtimeapi.ContainerState_CONTAINER_EXITED {
				c.exited = make(chan struct{})
				close(c.exited)
			}
			continue
		}
		c.exited = make(chan struct{})
		if c.InitPID != 0 && processStartTicks(c.InitPID) == c.InitTicks {
			adopt = append(adopt, id)
		} else {
			lost = append(lost, id)
		}
	}
	for _, id := range lost {
		r.finish(id, nil)
	}
	for _, id := range adopt {
		c := r.containers[id]
		r.log.Printf("adopted %s id=%s init-pid=%d", c.Display, id, c.InitPID)
		go r.watch(id, c.InitPID, c.InitTicks)
	}
	r.persist()
	return nil
}

// watch polls an adopted container's init (not our child: no wait status) until it is gone.
func (r *runtime) watch(id string, pid int, ticks uint64) {
	for processStartTicks(pid) == ticks {
		time.Sleep(200 * time.Millisecond)
	}
	r.finish(id, nil)
}

// processStartTicks is field 22 of /proc/PID/stat (start time since boot), which tells a reused
// pid apart; 0 when the process is gone or a zombie.
func processStartTicks(pid int) uint64 {
	data, err := ioutil.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	text := string(data)
	end := strings.LastIndexByte(text, ')')
	if end < 0 || end+2 >= len(text) {
		return 0
	}
	fields := strings.Fields(text[end+2:]) // fields[0] is field 3, the state
	if len(fields) < 20 || fields[0] == "Z" || fields[0] == "X" {
		return 0
	}
	ticks, _ := strconv.ParseUint(fields[19], 10, 64)
	return ticks
}

func envValue(env []string, key string) string {
	for _, kv := range env {
		if strings.HasPrefix(kv, key+"=") {
			return kv
		}
	}
	return key + " unset"
}

// tail is the last lines of a small file, for error messages.
func tail(path string) string {
	data, _ := ioutil.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 3 {
		lines = lines[len(lines)-3:]
	}
	text := strings.Join(lines, " | ")
	if text == "" {
		return "(" + path + " is empty)"
	}
	return text + " (" + path + ")"
}
