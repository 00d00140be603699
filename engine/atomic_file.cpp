#include "engine/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "kernels/error.h"

namespace sprig {
namespace {

// ---- temp files removed on a fatal signal ---------------------------------------------------
// The handler may only make async-signal-safe calls, so the temp paths live in fixed buffers
// and a slot is published by its flag after the path is in place.
constexpr int kSlots = 16;
constexpr size_t kPathBytes = 4096;
char g_temp_paths[kSlots][kPathBytes];
volatile std::sig_atomic_t g_slot_used[kSlots];
std::mutex g_slots_mutex;
const int kCleanupSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};

extern "C" void remove_temp_files_and_reraise(int sig) {
  for (int i = 0; i < kSlots; ++i)
    if (g_slot_used[i]) ::unlink(g_temp_paths[i]);
  // SA_RESETHAND restored the default action: the signal now does what it would have done.
  ::raise(sig);
}

// Installed over the default action only: a signal the program (or nohup) ignores or handles
// itself stays that way. Checked at every registration, as SA_RESETHAND or the program may
// have put the default back since.
void install_cleanup_handlers() {
  for (int sig : kCleanupSignals) {
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) != 0 || old.sa_handler != SIG_DFL) continue;
    struct sigaction act {};
    act.sa_handler = remove_temp_files_and_reraise;
    sigemptyset(&act.sa_mask);
    act.sa_flags = SA_RESETHAND;
    ::sigaction(sig, &act, nullptr);
  }
}

int register_temp(const std::string& tmp) {
  if (tmp.size() >= kPathBytes) return -1;  // too long to remember: still removed on errors
  std::lock_guard<std::mutex> lock(g_slots_mutex);
  install_cleanup_handlers();
  for (int i = 0; i < kSlots; ++i)
    if (!g_slot_used[i]) {
      std::memcpy(g_temp_paths[i], tmp.c_str(), tmp.size() + 1);
      g_slot_used[i] = 1;
      return i;
    }
  return -1;
}

void unregister_temp(int slot) {
  if (slot < 0) return;
  std::lock_guard<std::mutex> lock(g_slots_mutex);
  g_slot_used[slot] = 0;
}

const char* file_kind(mode_t m) {
  if (S_ISDIR(m)) return "a directory";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISSOCK(m)) return "a socket";
  return "not a regular file";
}

std::string parent_dir(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

AtomicFile::AtomicFile(const std::string& path, std::string error_prefix)
    : path_(path), target_(path), prefix_(std::move(error_prefix)) {
  if (path_.empty()) fail("the path is empty");
  struct stat st {};
  if (::lstat(path_.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
    std::error_code ec;
    target_ = std::filesystem::weakly_canonical(path_, ec).string();
    if (ec) fail("cannot follow the symlink: " + ec.message());
  }
  if (::stat(target_.c_str(), &st) == 0) {
    if (!S_ISREG(st.st_mode))
      fail(std::string("it exists and is ") + file_kind(st.st_mode) +
           ": refusing to replace it with a regular file");
    has_old_ = true;
    old_mode_ = st.st_mode & 07777;
    old_uid_ = st.st_uid;
    old_gid_ = st.st_gid;
  }
  tmp_ = target_ + ".tmp." + std::to_string(::getpid());
  // O_NOFOLLOW: a symlink planted at the temp name must not redirect the write.
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0666);
  if (fd_ < 0) fail("cannot create '" + tmp_ + "': " + std::strerror(errno));
  slot_ = register_temp(tmp_);
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!tmp_.empty()) ::unlink(tmp_.c_str());
  unregister_temp(slot_);
}

void AtomicFile::fail(const std::string& why) const {
  throw Error(prefix_ + " '" + path_ + "': " + why);
}

void AtomicFile::write(const void* data, size_t n) {
  SPRIG_CHECK(fd_ >= 0, prefix_, " '", path_, "': write after commit");
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t put = ::write(fd_, p, std::min<size_t>(n, size_t(1) << 30));
    if (put < 0 && errno == EINTR) continue;
    if (put < 0) fail("write to '" + tmp_ + "' failed: " + std::strerror(errno));
    p += put;
    n -= static_cast<size_t>(put);
  }
}

void AtomicFile::commit() {
  SPRIG_CHECK(fd_ >= 0, prefix_, " '", path_, "': committed twice");
  if (has_old_) {
    ::fchmod(fd_, old_mode_);
    if (::fchown(fd_, old_uid_, old_gid_) != 0) {
      // Only root may give a file away; keeping our own ownership is the best we can do.
    }
  }
  if (::fsync(fd_) != 0) fail("fsync of '" + tmp_ + "' failed: " + std::strerror(errno));
  const int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) fail("close of '" + tmp_ + "' failed: " + std::strerror(errno));
  if (::rename(tmp_.c_str(), target_.c_str()) != 0)
    fail("rename from '" + tmp_ + "' failed: " + std::strerror(errno));
  tmp_.clear();  // it is the target now
  unregister_temp(slot_);
  slot_ = -1;
  // Make the rename itself durable. Best effort: the new file is already in place.
  const int dir = ::open(parent_dir(target_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

void write_file_atomically(const std::string& path, const void* data, size_t n,
                           const std::string& error_prefix) {
  AtomicFile f(path, error_prefix);
  f.write(data, n);
  f.commit();
}

void check_output_path(const std::string& out_flag, const std::string& out,
                       const std::vector<std::pair<std::string, std::string>>& inputs) {
  struct stat o {};
  if (out.empty() || ::stat(out.c_str(), &o) != 0) return;
  SPRIG_CHECK(S_ISREG(o.st_mode), out_flag, " '", out, "' exists and is ", file_kind(o.st_mode),
              ": refusing to replace it with a regular file");
  for (const auto& [flag, in] : inputs) {
    struct stat i {};
    if (in.empty() || ::stat(in.c_str(), &i) != 0) continue;
    SPRIG_CHECK(o.st_dev != i.st_dev || o.st_ino != i.st_ino, out_flag, " '", out,
                "' is the same file as ", flag, " '", in, "': writing it would destroy the input");
  }
}

}  // namespace sprig
