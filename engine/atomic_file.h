#pragma once
// Output files that are replaced whole or not at all, and never replace what they must not.
//
// Every file sprig writes (checkpoints, packed models, ONNX, reports) goes through AtomicFile:
// the bytes go to PATH.tmp.PID beside the target (rename is atomic only within a filesystem),
// are flushed to disk, and are renamed over PATH, so a reader, a crash or a kill sees the old
// file or the new one, never a mix. The rules a careless --out must not break:
// - a PATH that exists and is not a regular file (a device, a FIFO, a directory) is refused:
//   renaming over /dev/null would replace the device with a regular file;
// - a symlink is followed: its target is replaced, the link stays a link;
// - a replaced file keeps its permission bits (and owner, where the process may set it), so a
//   0600 checkpoint does not come back 0644;
// - the temp file is removed on failure, when the AtomicFile is dropped uncommitted, and on
//   SIGINT, SIGTERM, SIGHUP and SIGQUIT (the signal then does what it would have done).
// Replacing by rename gives the target a new inode: other hard links to it keep the old bytes.
#include <cstddef>
#include <string>
#include <vector>

namespace sprig {

class AtomicFile {
 public:
  // error_prefix starts every error, e.g. "cannot save safetensors file" gives
  // "cannot save safetensors file 'a.safetensors': ...". Throws sprig::Error when the target
  // may not be replaced or the temp file cannot be created.
  AtomicFile(const std::string& path, std::string error_prefix);
  ~AtomicFile();  // uncommitted: removes the temp file, leaves the target as it was
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);
  // Flushes, gives the temp file the old target's mode and owner, and renames it over the
  // target (then syncs the directory, best effort).
  void commit();

  const std::string& target() const { return target_; }  // PATH with symlinks followed
  const std::string& temp_path() const { return tmp_; }

 private:
  [[noreturn]] void fail(const std::string& why) const;
  std::string path_, target_, tmp_, prefix_;
  int fd_ = -1;
  int slot_ = -1;  // in the signal handler's list of temp files
  bool has_old_ = false;
  unsigned old_mode_ = 0, old_uid_ = 0, old_gid_ = 0;
};

// Writes data to path through an AtomicFile.
void write_file_atomically(const std::string& path, const void* data, size_t n,
                           const std::string& error_prefix);

// The checks of an output path a command makes before any work: refuses (sprig::Error naming
// the flag) an out that exists and is not a regular file (after symlinks), or that is the same
// file as one of the inputs, by device and inode, so through symlinks, hard links and "./"
// spellings: writing it would destroy the input. inputs are (flag, path) pairs; empty or
// missing paths are skipped, as is an output that does not exist yet.
void check_output_path(const std::string& out_flag, const std::string& out,
                       const std::vector<std::pair<std::string, std::string>>& inputs);

}  // namespace sprig
