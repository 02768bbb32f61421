package main

// `tessera-cri node-namespace`: run under `unshare -m`, it prepares a node's private mount
// namespace (binds the node's own directories over the paths kubelet 1.20 fixes, such as
// /var/lib/kubelet/device-plugins and /var/log/pods, creating missing mount points without
// touching the host) and then holds the namespace until SIGTERM. The node's kubelet, runtime
// and agent join it with `nsenter -t <pid> -m`. When the holder and they are gone, the
// namespace and all its mounts vanish.

import (
	"flag"
	"fmt"
	"io/ioutil"
	"os"
	"os/signal"
	"syscall"
)

func nodeNamespaceMain(args []string) error {
	var binds bindList
	fs := flag.NewFlagSet("tessera-cri node-namespace", flag.ContinueOnError)
	scratch := fs.String("scratch", "", "directory for staging mounts (a tmpfs is mounted on it)")
	ready := fs.String("ready", "", "file written with our pid once the mounts are made")
	fs.Var(&binds, "bind", "SOURCE:TARGET bind mount (repeatable)")
	fs.Usage = usage
	if err := fs.Parse(args); err != nil {
		return err
	}
	signal.Ignore(syscall.SIGHUP)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	if err := makePrivate(); err != nil {
		return err
	}
	m := newMounter(*scratch)
	for _, b := range binds {
		if err := m.Bind(b); err != nil {
			return err
		}
		fmt.Printf("bound %s on %s\n", b.Source, b.Target)
	}
	if *ready != "" {
		if err := ioutil.WriteFile(*ready, []byte(fmt.Sprintf("%d\n", os.Getpid())), 0644); err != nil {
			return err
		}
	}
	fmt.Printf("holding the mount namespace (pid %d)\n", os.Getpid())
	<-stop
	return nil
}
