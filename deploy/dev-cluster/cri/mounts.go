package main

// Bind mounts inside a private mount namespace whose mount points may not exist on the host
// (/etc/ld.so.preload, /dev/termination-log, a ConfigMap's directory, /var/lib/kubelet/...).
// Creating the missing file or directory on the host would leave it behind for every other
// process of the machine, so a missing mount point is made inside a "shadow" of its nearest
// existing parent directory instead: the parent is covered with a tmpfs that holds a bind mount
// of each of its original entries (symlinks copied), plus the new mount point. Inside the
// namespace the parent looks as before with one entry more; outside, nothing changed. The
// price: each original entry of the shadowed directory is a mount point (renaming one over
// another fails with EBUSY), and new files created there live in memory only.
//
// REQUIRES: the calling process is alone in a mount namespace whose mounts are private.

import (
	"fmt"
	"io/ioutil"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

type unixStat = syscall.Stat_t

// modeSticky gives the sticky, setuid and setgid bits of info in numeric form (for tmpfs mode=).
func modeSticky(info os.FileInfo) uint32 {
	var bits uint32
	if info.Mode()&os.ModeSticky != 0 {
		bits |= 01000
	}
	if info.Mode()&os.ModeSetgid != 0 {
		bits |= 02000
	}
	if info.Mode()&os.ModeSetuid != 0 {
		bits |= 04000
	}
	return bits
}

type bindSpec struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readonly,omitempty"`
}

type mounter struct {
	// Scratch directory (under the cluster's state dir) on which a tmpfs is mounted for the
	// staging copies of shadowed directories.
	scratch        string
	scratchMounted bool
	// Directories that live in our own tmpfs (shadow roots and what we created below them):
	// creating entries there touches nothing outside the namespace.
	private map[string]bool
	staged  int
}

func newMounter(scratch string) *mounter {
	return &mounter{scratch: scratch, private: map[string]bool{}}
}

// makePrivate detaches the namespace's mounts from their peers, so that nothing mounted here
// shows elsewhere (and nothing mounted elsewhere later shows here).
func makePrivate() error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making / private (mount --make-rprivate /): %v", err)
	}
	return nil
}

// Bind mounts b.Source (file or directory) on b.Target, creating the mount point if needed.
func (m *mounter) Bind(b bindSpec) error {
	if !filepath.IsAbs(b.Target) {
		return fmt.Errorf("mount target %q is not an absolute path", b.Target)
	}
	target := filepath.Clean(b.Target)
	info, err := os.Stat(b.Source)
	if err != nil {
		return fmt.Errorf("mount source %s for %s: %v", b.Source, target, err)
	}
	if err := m.ensureMountPoint(target, info.IsDir()); err != nil {
		return err
	}
	if err := unix.Mount(b.Source, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind mount %s on %s: %v", b.Source, target, err)
	}
	if b.ReadOnly {
		flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY)
		if err := unix.Mount("", target, "", flags, ""); err != nil {
			return fmt.Errorf("remount %s read-only: %v", target, err)
		}
	}
	return nil
}

// ensureMountPoint makes target exist as a directory (dir) or a file, without creating
// anything on the host.
func (m *mounter) ensureMountPoint(target string, dir bool) error {
	if info, err := os.Stat(target); err == nil {
		if info.IsDir() != dir {
			kind := map[bool]string{true: "a directory", false: "a file"}
			return fmt.Errorf("cannot mount on %s: the source is %s and the target %s",
				target, kind[dir], kind[info.IsDir()])
		}
		return nil
	}
	// Nearest existing ancestor.
	parent := filepath.Dir(target)
	var missing []string
	for {
		if _, err := os.Lstat(parent); err == nil {
			break
		}
		missing = append([]string{filepath.Base(parent)}, missing...)
		parent = filepath.Dir(parent)
	}
	if !m.private[parent] {
		if parent == "/" {
			return fmt.Errorf("mount point %s does not exist, and its parent is /, which cannot be "+
				"shadowed; use a path under an existing directory", target)
		}
		if err := m.shadow(parent); err != nil {
			return err
		}
	}
	path := parent
	for _, name := range missing {
		path = filepath.Join(path, name)
		if err := os.Mkdir(path, 0755); err != nil {
			return fmt.Errorf("creating mount point directory %s: %v", path, err)
		}
		m.private[path] = true
	}
	if dir {
		if err := os.Mkdir(target, 0755); err != nil {
			return fmt.Errorf("creating mount point %s: %v", target, err)
		}
		m.private[target] = true
		return nil
	}
	f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0644)
	if err != nil {
		return fmt.Errorf("creating mount point %s: %v", target, err)
	}
	return f.Close()
}

// shadow covers dir with a tmpfs that shows dir's original entries through bind mounts.
func (m *mounter) shadow(dir string) error {
	if err := m.mountScratch(); err != nil {
		return err
	}
	info, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !info.IsDir() {
		return fmt.Errorf("cannot create a mount point below %s: not a directory", dir)
	}
	m.staged++
	staging := filepath.Join(m.scratch, fmt.Sprintf("shadow-%d", m.staged))
	if err := os.Mkdir(staging, 0700); err != nil {
		return err
	}
	if err := unix.Mount(dir, staging, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("shadowing %s: bind mount on %s: %v", dir, staging, err)
	}
	// Reach the original entries through a descriptor: the tmpfs below may hide staging's path
	// when dir is one of its ancestors.
	original, err := os.Open(staging)
	if err != nil {
		return err
	}
	defer original.Close()
	from := fmt.Sprintf("/proc/self/fd/%d", original.Fd())
	entries, err := ioutil.ReadDir(from)
	if err != nil {
		return fmt.Errorf("shadowing %s: %v", dir, err)
	}
	st := info.Sys().(*unixStat)
	options := fmt.Sprintf("mode=%o,uid=%d,gid=%d", uint32(info.Mode().Perm())|modeSticky(info), st.Uid, st.Gid)
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, options); err != nil {
		return fmt.Errorf("shadowing %s: mounting a tmpfs: %v", dir, err)
	}
	for _, entry := range entries {
		source := filepath.Join(from, entry.Name())
		target := filepath.Join(dir, entry.Name())
		if err := recreateEntry(source, target, entry); err != nil {
			return fmt.Errorf("shadowing %s: %v", dir, err)
		}
	}
	// The entries' bind mounts no longer need the staging copy.
	_ = unix.Unmount(from, unix.MNT_DETACH)
	m.private[dir] = true
	return nil
}

func recreateEntry(source, target string, entry os.FileInfo) error {
	st, _ := entry.Sys().(*unixStat)
	switch {
	case entry.Mode()&os.ModeSymlink != 0:
		link, err := os.Readlink(source)
		if err != nil {
			return err
		}
		if err := os.Symlink(link, target); err != nil {
			return err
		}
	case entry.IsDir():
		if err := os.Mkdir(target, entry.Mode().Perm()); err != nil {
			return err
		}
		if err := unix.Mount(source, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind mount of %s: %v", target, err)
		}
	default: // files, devices, sockets, fifos: a bind mount onto an empty file
		f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0600)
		if err != nil {
			return err
		}
		f.Close()
		if err := unix.Mount(source, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind mount of %s: %v", target, err)
		}
	}
	if st != nil {
		_ = os.Lchown(target, int(st.Uid), int(st.Gid))
	}
	return nil
}

// mountScratch puts a tmpfs on the scratch directory once, so that staging directories live in
// memory and vanish with the namespace.
func (m *mounter) mountScratch() error {
	if m.scratchMounted {
		return nil
	}
	if m.scratch == "" {
		return fmt.Errorf("a mount point must be created but no scratch directory was given")
	}
	if err := os.MkdirAll(m.scratch, 0700); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", m.scratch, "tmpfs", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mounting a tmpfs on %s: %v", m.scratch, err)
	}
	m.scratchMounted = true
	return nil
}
