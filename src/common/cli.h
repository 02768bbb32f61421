// Command lines through CLI11, the same way in every command: a command's Parse…Options(argc,
// argv) builds its CLI::App and calls ParseCommandLine, which turns CLI11's exceptions into a
// Status (the message names the flag and what was wrong) or the --help text.
#ifndef TESSERA_COMMON_CLI_H_
#define TESSERA_COMMON_CLI_H_

#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <string>
#include <utility>

#include "common/status.h"

namespace tessera {

// Parses argv (argv[0] is the command's name) into `app`'s options. On --help, `*help` is the
// usage text and the status OK; `*help` stays empty otherwise.
inline Status ParseCommandLine(CLI::App& app, int argc, char** argv, std::string* help) {
  help->clear();
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    *help = app.help();
  } catch (const CLI::CallForAllHelp&) {
    *help = app.help("", CLI::AppFormatMode::All);
  } catch (const CLI::ParseError& e) {
    return Status::Error(e.what());
  }
  return Status::Ok();
}

// The usage error every command prints: "<command>: <message>" and where to read more; returns
// the exit code for bad usage, 2.
inline int ReportUsageError(const std::string& command, const std::string& message) {
  std::fprintf(stderr, "%s: %s\nRun `%s --help` for usage.\n", command.c_str(), message.c_str(),
               command.c_str());
  return 2;
}

// A command's whole run: `parse(argc, argv)` gives a Result of options with a `help` member;
// a bad command line is reported (exit 2), --help is printed (exit 0), else `run(options)` gives
// the exit code.
template <typename Parse, typename Run>
int RunCommandLine(const std::string& command, int argc, char** argv, Parse parse, Run run) {
  auto options = parse(argc, argv);
  if (!options.ok()) return ReportUsageError(command, options.status().message());
  if (!options->help.empty()) {
    std::fputs(options->help.c_str(), stdout);
    return 0;
  }
  return run(std::move(*options));
}

// A program's main: runs `body`, and an exception that reaches it (a bug, or memory exhausted) is
// said on stderr as "<program>: <what>" and exits 70 (sysexits' EX_SOFTWARE), rather than
// std::terminate's abort with no word of what happened.
template <typename Body>
int RunMain(const char* program, Body body) noexcept {
  try {
    return body();
  } catch (const std::exception& error) {
    std::fprintf(stderr, "%s: %s\n", program, error.what());
  } catch (...) {
    std::fprintf(stderr, "%s: an exception that is not a std::exception\n", program);
  }
  return 70;
}

}  // namespace tessera

#endif  // TESSERA_COMMON_CLI_H_
