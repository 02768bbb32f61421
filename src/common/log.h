// Logging to stderr, one line per message, prefixed "tessera[<component>]". The level comes from
// TESSERA_LOG_LEVEL (error, warn, info, debug; default warn) and is read once. Safe to call from
// any thread; writes with one write(2) so lines from processes sharing stderr do not interleave.
#ifndef TESSERA_COMMON_LOG_H_
#define TESSERA_COMMON_LOG_H_

namespace tessera::log {

enum class Level { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

// The level in force (first call reads TESSERA_LOG_LEVEL).
Level CurrentLevel();
inline bool Enabled(Level level) {
  return static_cast<int>(level) <= static_cast<int>(CurrentLevel());
}

// printf-style; does nothing when `level` is not enabled. Keeps errno unchanged.
void Write(Level level, const char* component, const char* format, ...)
    __attribute__((format(printf, 3, 4)));

}  // namespace tessera::log

#endif  // TESSERA_COMMON_LOG_H_
