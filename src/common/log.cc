#include "common/log.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace tessera::log {
namespace {

std::atomic<int> g_level{-1};

int ReadLevel() {
  const char* text = std::getenv("TESSERA_LOG_LEVEL");
  if (text == nullptr || *text == '\0') return static_cast<int>(Level::kWarn);
  constexpr const char* kNames[] = {"error", "warn", "info", "debug"};
  for (int i = 0; i < 4; ++i) {
    if (std::strcmp(text, kNames[i]) == 0) return i;
  }
  if (text[0] >= '0' && text[0] <= '3' && text[1] == '\0') return text[0] - '0';
  char line[256];
  int length = std::snprintf(line, sizeof line,
                             "tessera: TESSERA_LOG_LEVEL=\"%.64s\" is not a log level; expected "
                             "error, warn, info or debug; using warn\n",
                             text);
  if (length > 0) {
    ssize_t ignored = ::write(STDERR_FILENO, line, static_cast<size_t>(length));
    (void)ignored;
  }
  return static_cast<int>(Level::kWarn);
}

}  // namespace

Level CurrentLevel() {
  int level = g_level.load(std::memory_order_relaxed);
  if (level < 0) {
    level = ReadLevel();
    g_level.store(level, std::memory_order_relaxed);
  }
  return static_cast<Level>(level);
}

void Write(Level level, const char* component, const char* format, ...) {
  if (!Enabled(level)) return;
  int saved_errno = errno;
  constexpr const char* kTags[] = {"error", "warning", "info", "debug"};
  char line[1024];
  int prefix = std::snprintf(line, sizeof line, "tessera[%s] %s: ", component,
                             kTags[static_cast<int>(level)]);
  if (prefix < 0) prefix = 0;
  va_list args;
  va_start(args, format);
  int body =
      std::vsnprintf(line + prefix, sizeof line - static_cast<size_t>(prefix) - 1, format, args);
  va_end(args);
  size_t length = static_cast<size_t>(prefix) + (body < 0 ? 0 : static_cast<size_t>(body));
  if (length > sizeof line - 2) length = sizeof line - 2;
  line[length++] = '\n';
  ssize_t ignored = ::write(STDERR_FILENO, line, length);
  (void)ignored;
  errno = saved_errno;
}

}  // namespace tessera::log
