// tessera-cri is the local cluster's container runtime: a CRI v1alpha2 server (the version
// kubelet 1.20 speaks) built on the kubelet's fake runtime, which keeps the sandbox and
// container records, while this program really runs each container's command as a host
// process in its own mount, pid and UTS namespaces. Images mean nothing: a container runs on
// the node's filesystem, and command+args are what runs. In the role of the NVIDIA container
// toolkit it gives every container the node's fake GPU (see gpuEnv).
//
// Subcommands:
//
//	tessera-cri serve --listen SOCKET --state-dir DIR [flags]   the runtime (the default)
//	tessera-cri node-namespace --scratch DIR --bind SRC:DST...  prepares a node's mount
//	    namespace (run it under `unshare -m`) and then holds it until SIGTERM
//	tessera-cri init CONTAINER-DIR                              internal: a container's pid 1
package main

import (
	"flag"
	"fmt"
	"os"
)

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  tessera-cri [serve] --listen SOCKET --state-dir DIR [--node-name NAME] [--pod-ip IP]
              [--fakegpu-lib-dir DIR --fakegpu-config FILE --fakegpu-state FILE]
  tessera-cri node-namespace --scratch DIR [--ready FILE] --bind SRC:DST [--bind SRC:DST...]
  tessera-cri init CONTAINER-DIR   (internal: the init process of a container)
`)
}

func main() {
	args := os.Args[1:]
	command := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		command, args = args[0], args[1:]
	}
	var err error
	switch command {
	case "serve":
		err = serveMain(args)
	case "init":
		if len(args) != 1 {
			usage()
			os.Exit(2)
		}
		os.Exit(containerInitMain(args[0]))
	case "node-namespace":
		err = nodeNamespaceMain(args)
	case "help", "-h", "--help":
		usage()
		return
	default:
		fmt.Fprintf(os.Stderr, "tessera-cri: unknown command %q\n", command)
		usage()
		os.Exit(2)
	}
	if err != nil {
		if err == flag.ErrHelp {
			return
		}
		fmt.Fprintf(os.Stderr, "tessera-cri: %v\n", err)
		os.Exit(1)
	}
}

// bindList collects repeated --bind SRC:DST flags.
type bindList []bindSpec

func (b *bindList) String() string { return fmt.Sprint(*b) }

func (b *bindList) Set(value string) error {
	for i := 0; i < len(value); i++ {
		if value[i] == ':' {
			*b = append(*b, bindSpec{Source: value[:i], Target: value[i+1:]})
			return nil
		}
	}
	return fmt.Errorf("--bind %q: want SOURCE:TARGET", value)
}
