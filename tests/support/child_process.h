// Runs a real process for tests: stdin and stdout (with stderr, when asked) as pipes, and
// waits that end on a condition or a generous deadline (never a bare sleep).
#ifndef TESSERA_TESTS_SUPPORT_CHILD_PROCESS_H_
#define TESSERA_TESTS_SUPPORT_CHILD_PROCESS_H_

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <sstream>
#include <string>
#include <vector>

extern char** environ;

namespace tessera::testing {

class Child {
 public:
  // Starts `argv` (argv[0] is the path) with `environment`; its stderr joins its stdout.
  Child(const std::vector<std::string>& argv, const std::vector<std::string>& environment) {
    std::vector<char*> env;
    for (const auto& e : environment) env.push_back(const_cast<char*>(e.c_str()));
    env.push_back(nullptr);
    Spawn(argv, env.data(), /*capture_stderr=*/true);
  }
  // Starts `argv` with this process's environment; its stderr stays this process's.
  explicit Child(const std::vector<std::string>& argv) {
    Spawn(argv, environ, /*capture_stderr=*/false);
  }
  ~Child() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (stdin_ >= 0) close(stdin_);
    if (stdout_ >= 0) close(stdout_);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& output() const { return output_; }

  // Reads stdout until it contains `marker` or the deadline passes; true if seen.
  bool WaitFor(const std::string& marker,
               std::chrono::seconds deadline = std::chrono::seconds(30)) {
    auto end = std::chrono::steady_clock::now() + deadline;
    while (output_.find(marker) == std::string::npos) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          end - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      if (!ReadSome(static_cast<int>(left.count())))
        return output_.find(marker) != std::string::npos;
    }
    return true;
  }

  void CloseStdin() {
    if (stdin_ >= 0) close(stdin_);
    stdin_ = -1;
  }

  // Closes stdin (a held process then finishes), reads the rest and returns the exit status
  // (-signal when killed).
  int Finish() {
    if (stdin_ >= 0) close(stdin_);
    stdin_ = -1;
    WaitFor("\x01never\x01", std::chrono::seconds(60));
    int status = 0;
    waitpid(pid_, &status, 0);
    reaped_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  }

  // The next line of output not yet returned ("" at end of output or after the deadline).
  std::string ReadLine(std::chrono::milliseconds deadline = std::chrono::seconds(30)) {
    auto end = std::chrono::steady_clock::now() + deadline;
    while (output_.find('\n', consumed_) == std::string::npos) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          end - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !ReadSome(static_cast<int>(left.count()))) return "";
    }
    size_t newline = output_.find('\n', consumed_);
    std::string line = output_.substr(consumed_, newline - consumed_);
    consumed_ = newline + 1;
    return line;
  }

  // Writes `line` and a newline to the child's stdin; false when the child is gone.
  bool WriteLine(const std::string& line) {
    std::string text = line + "\n";
    return write(stdin_, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  }

  // Waits for the child and returns its raw wait status.
  int Wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    reaped_ = true;
    return status;
  }

  void Kill() {
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    reaped_ = true;
  }

 private:
  void Spawn(const std::vector<std::string>& argv, char* const* environment, bool capture_stderr) {
    int to_child[2], from_child[2];
    if (pipe2(to_child, O_CLOEXEC) != 0 || pipe2(from_child, O_CLOEXEC) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, to_child[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&actions, from_child[1], STDOUT_FILENO);
    if (capture_stderr) posix_spawn_file_actions_adddup2(&actions, from_child[1], STDERR_FILENO);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    if (posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environment) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
    close(to_child[0]);
    close(from_child[1]);
    stdin_ = to_child[1];
    stdout_ = from_child[0];
  }

  // Waits up to `timeout_ms` for output and appends what came; false at end of output.
  bool ReadSome(int timeout_ms) {
    pollfd fd{stdout_, POLLIN, 0};
    if (poll(&fd, 1, timeout_ms) <= 0) return true;
    char buffer[4096];
    ssize_t n = read(stdout_, buffer, sizeof buffer);
    if (n <= 0) return false;
    output_.append(buffer, static_cast<size_t>(n));
    return true;
  }

  size_t consumed_ = 0;  // output_ already returned by ReadLine
  pid_t pid_ = -1;
  int stdin_ = -1;
  int stdout_ = -1;
  bool reaped_ = false;
  std::string output_;
};

// "key=value" pairs of a report; later lines win.
inline std::map<std::string, std::string> Fields(const std::string& output) {
  std::map<std::string, std::string> fields;
  std::istringstream words(output);
  std::string word;
  while (words >> word) {
    size_t equals = word.find('=');
    if (equals != std::string::npos) fields[word.substr(0, equals)] = word.substr(equals + 1);
  }
  return fields;
}

inline long long Number(const std::map<std::string, std::string>& fields, const std::string& key) {
  auto found = fields.find(key);
  return found == fields.end() ? -1 : std::stoll(found->second);
}

}  // namespace tessera::testing

#endif  // TESSERA_TESTS_SUPPORT_CHILD_PROCESS_H_
