package main

// Unit tests of the pieces that need no namespaces. Run inside the Kubernetes tree:
//   cd ~/.cache/tessera/kubernetes-1.20.2/gopath/src/k8s.io/kubernetes &&
//   GOPATH=$PWD/../../.. GO111MODULE=off go test ./cmd/tessera-cri/

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1alpha2"
)

func readLog(t *testing.T, stdout, stderr string) []string {
	t.Helper()
	dir := t.TempDir()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	l, err := openCRILog(fd, "0.log")
	if err != nil {
		t.Fatal(err)
	}
	l.now = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC) }
	l.Pump("stdout", strings.NewReader(stdout))
	l.Pump("stderr", strings.NewReader(stderr))
	l.Close()
	data, err := os.ReadFile(filepath.Join(dir, "0.log"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

func TestLogWritesEachLineAsAFullRecord(t *testing.T) {
	got := readLog(t, "hello\nworld\n", "oops\n")
	want := []string{
		"2026-01-02T03:04:05.0000006Z stdout F hello",
		"2026-01-02T03:04:05.0000006Z stdout F world",
		"2026-01-02T03:04:05.0000006Z stderr F oops",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestLogSplitsLongLinesAndMarksAnUnfinishedLastLinePartial(t *testing.T) {
	long := strings.Repeat("x", maxLogLine+10)
	got := readLog(t, long+"\ntail", "")
	if len(got) != 3 {
		t.Fatalf("want 3 records, got %d: %q", len(got), got)
	}
	prefix := "2026-01-02T03:04:05.0000006Z stdout "
	if got[0] != prefix+"P "+strings.Repeat("x", maxLogLine) {
		t.Errorf("first record is not the first %d bytes as P", maxLogLine)
	}
	if got[1] != prefix+"F "+strings.Repeat("x", 10) {
		t.Errorf("second record %q is not the rest of the line as F", got[1])
	}
	if got[2] != prefix+"P tail" {
		t.Errorf("last record %q is not the unfinished line as P", got[2])
	}
}

func TestEnvGivesTheNodesFakeGPUAndVoidWithoutVisibleDevices(t *testing.T) {
	r := &runtime{opts: options{fakeGPULibDir: "/lib/fake", fakeGPUConfig: "/n/gpu.conf", fakeGPUState: "/n/gpu.state"}}
	env := r.containerEnv([]*runtimeapi.KeyValue{{Key: "LD_LIBRARY_PATH", Value: "/opt/lib"}, {Key: "A", Value: "1"}}, "pod")
	want := map[string]string{
		"LD_LIBRARY_PATH": "/lib/fake:/opt/lib", "A": "1", "PATH": defaultPath, "HOSTNAME": "pod",
		"TESSERA_FAKEGPU_CONFIG": "/n/gpu.conf", "TESSERA_FAKEGPU_STATE": "/n/gpu.state",
		"NVIDIA_VISIBLE_DEVICES": "void",
	}
	if len(env) != len(want) {
		t.Fatalf("env %q: want %d entries", env, len(want))
	}
	for _, kv := range env {
		parts := strings.SplitN(kv, "=", 2)
		if want[parts[0]] != parts[1] {
			t.Errorf("%s: got %q, want %q", parts[0], parts[1], want[parts[0]])
		}
	}
	env = r.containerEnv([]*runtimeapi.KeyValue{{Key: "NVIDIA_VISIBLE_DEVICES", Value: "GPU-1,GPU-2"}}, "")
	if v := envValue(env, "NVIDIA_VISIBLE_DEVICES"); v != "NVIDIA_VISIBLE_DEVICES=GPU-1,GPU-2" {
		t.Errorf("the container's NVIDIA_VISIBLE_DEVICES was not passed on: %s", v)
	}
}

func TestLookPathUsesTheContainersPath(t *testing.T) {
	if _, err := lookPath("sh", "/", []string{"PATH=/nonexistent"}); err == nil {
		t.Error("found sh in a PATH that does not hold it")
	}
	if path, err := lookPath("sh", "/", []string{"PATH=/nonexistent:/bin"}); err != nil || path != "/bin/sh" {
		t.Errorf("got %q, %v; want /bin/sh", path, err)
	}
}
