// What the fake driver's version (config.h, `driver version=`) leaves out: the entry points
// cuda/proc_address.def says came after it.
#ifndef TESSERA_FAKEGPU_PROC_ADDRESS_H_
#define TESSERA_FAKEGPU_PROC_ADDRESS_H_

namespace tessera::fakegpu {

// The CUDA version that introduced the exported function `symbol` (its oldest row in
// cuda/proc_address.def), or 0 when the table has no row for it.
int IntroducedIn(const char* symbol);

// The driver's version: the initialised driver's, or before cuInit the config file's.
int CurrentDriverVersion();

// Whether the driver is older than the export that came with CUDA `introduced`
// (IntroducedIn of its name, which each withdrawn export computes once).
bool DriverLacks(int introduced);

}  // namespace tessera::fakegpu

#endif  // TESSERA_FAKEGPU_PROC_ADDRESS_H_
