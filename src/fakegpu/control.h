// Functions the fake libraries export for tests, beside the driver and NVML APIs. Declare-only:
// a test links libcuda.so.1 (target tessera_fakegpu_cuda) or libnvidia-ml.so.1 and calls them.
#ifndef TESSERA_FAKEGPU_CONTROL_H_
#define TESSERA_FAKEGPU_CONTROL_H_

#ifdef __cplusplus
extern "C" {
#endif

// libcuda.so.1. Restarts every device's peak (high-water mark) at its current use in the state
// file in use (or TESSERA_FAKEGPU_STATE's when the driver is not initialised). 0, or -1 when there
// is no state file.
int tesseraFakeResetPeaks(void);

// libcuda.so.1. Replaces the fault rules (TESSERA_FAKEGPU_FAULTS syntax; NULL or "" disarms) and
// restarts the call counts. 0, or -1 after printing why the spec is bad (the old rules stay).
int tesseraFakeSetFaults(const char* spec);

// libcuda.so.1. Driver teardown without exiting: gives back everything the process holds,
// destroys its handles and forgets the configuration; the next cuInit reads the environment
// (TESSERA_FAKEGPU_CONFIG, TESSERA_FAKEGPU_STATE) again. 0, or -1 after printing why the memory
// could not be given back to the state file (its lock is unrecoverable); the rest is done all the
// same. REQUIRES: no other thread is inside the driver, and no handle from before is used
// afterwards.
int tesseraFakeShutdown(void);

// libnvidia-ml.so.1. tesseraFakeSetFaults for NVML's functions.
int tesseraFakeNvmlSetFaults(const char* spec);

// libnvidia-ml.so.1. Raises Xid `xid` (1 to 999) on GPU `index` of the node (its line in the
// config, whatever NVIDIA_VISIBLE_DEVICES shows), as `tessera-fakegpu fault raise` does: in the
// state file in use (TESSERA_FAKEGPU_STATE's when NVML is not initialised), delivered to every
// event set of any process registered for the GPU, and reported by the GPU until cleared.
// 0, or -1 after printing why.
int tesseraFakeNvmlRaiseXid(unsigned int index, unsigned int xid);

// libnvidia-ml.so.1. Clears GPU `index`'s fault: healthy again. 0, or -1 after printing why.
int tesseraFakeNvmlClearFault(unsigned int index);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // TESSERA_FAKEGPU_CONTROL_H_
