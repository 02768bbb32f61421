// Marks a function as part of a fake library's ABI. Everything else is hidden
// (-fvisibility=hidden), and each library's version script (generated from api.def) lists exactly
// these functions.
#ifndef TESSERA_FAKEGPU_EXPORT_H_
#define TESSERA_FAKEGPU_EXPORT_H_

#define TESSERA_FAKE_EXPORT extern "C" __attribute__((visibility("default")))

#endif  // TESSERA_FAKEGPU_EXPORT_H_
