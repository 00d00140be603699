// engine/atomic_file.h: outputs replaced whole or not at all, never over a device, a FIFO, a
// directory or an input; symlinks followed, permissions kept, temp files gone after errors,
// drops and fatal signals.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <string>

#include "engine/atomic_file.h"
#include "kernels/error.h"
#include "tests/temp_dir.h"

namespace fs = std::filesystem;
using namespace sprig;

namespace {

void save(const fs::path& p, const std::string& bytes) {
  write_file_atomically(p.string(), bytes.data(), bytes.size(), "cannot save test file");
}

std::string error_of(const fs::path& p, const std::string& bytes) {
  try {
    save(p, bytes);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_SUITE("atomic_file") {
  TEST_CASE("a new file, then a replaced one: whole content, no temp file left") {
    sprig::test::TempDir tmp("test_atomic_file");
    const fs::path dir = tmp.path;
    fs::path p = dir / "out.bin";
    save(p, "first");
    CHECK(test::read_bytes(p.string()) == "first");
    save(p, std::string(3 << 20, 'x'));  // past one write() of a pipe-sized buffer
    CHECK(test::read_bytes(p.string()) == std::string(3 << 20, 'x'));
    CHECK(!tmp.has_temp_files());
  }

  TEST_CASE("a replaced file keeps its permission bits; a new one gets 0666 less the umask") {
    sprig::test::TempDir tmp("test_atomic_file");
    const fs::path dir = tmp.path;
    fs::path p = dir / "secret.safetensors";
    test::write_bytes(p.string(), "old");
    REQUIRE(::chmod(p.c_str(), 0600) == 0);
    save(p, "new");
    struct stat st {};
    REQUIRE(::stat(p.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0600);
    CHECK(test::read_bytes(p.string()) == "new");
    const mode_t mask = ::umask(0);
    ::umask(mask);
    fs::path q = dir / "fresh.bin";
    save(q, "x");
    REQUIRE(::stat(q.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == (0666 & ~mask));
  }

  TEST_CASE("a FIFO, a directory, and a symlink to either are refused and left as they are") {
    sprig::test::TempDir tmp("test_atomic_file");
    const fs::path dir = tmp.path;
    fs::path fifo = dir / "afifo", sub = dir / "adir";
    REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
    fs::create_directories(sub);
    fs::create_symlink(fifo, dir / "fifo-link");
    fs::create_symlink(sub, dir / "dir-link");
    std::string e = error_of(fifo, "x");
    CHECK(e.find("cannot save test file '" + fifo.string() + "'") == 0);
    CHECK(e.find("it exists and is a FIFO") != std::string::npos);
    CHECK(error_of(dir / "fifo-link", "x").find("a FIFO") != std::string::npos);
    CHECK(error_of(sub, "x").find("a directory") != std::string::npos);
    CHECK(error_of(dir / "dir-link", "x").find("a directory") != std::string::npos);
    CHECK(fs::is_fifo(fifo));
    CHECK(fs::is_directory(sub));
    CHECK(fs::is_symlink(dir / "fifo-link"));
    CHECK(!tmp.has_temp_files());
    // /dev/null through a link: a character device (only checked, never touched).
    fs::create_symlink("/dev/null", dir / "null-link");
    CHECK(error_of(dir / "null-link", "x").find("a character device") != std::string::npos);
    CHECK(fs::is_character_file("/dev/null"));
  }

  TEST_CASE("a symlink to a regular file: the target is replaced and the link stays a link") {
    sprig::test::TempDir tmp("test_atomic_file");
    const fs::path dir = tmp.path;
    fs::create_directories(dir / "real");
    test::write_bytes((dir / "real" / "model.safetensors").string(), "old");
    fs::create_symlink(fs::path("real") / "model.safetensors", dir / "link.safetensors");
    save(dir / "link.safetensors", "new");
    CHECK(fs::is_symlink(dir / "link.safetensors"));
    CHECK(test::read_bytes((dir / "real" / "model.safetensors").string()) == "new");
    CHECK(!tmp.has_temp_files());
  }

  TEST_CASE("dropped before commit: the temp file goes and the old file stays") {
    sprig::test::TempDir tmp("test_atomic_file");
    const fs::path dir = tmp.path;
    fs::path p = dir / "out.bin";
    test::write_bytes(p.string(), "old");
    {
      AtomicFile f(p.string(), "cannot save test file");
      f.write("new", 3);
      CHECK(fs::exists(f.temp_path()));
      CHECK(tmp.has_temp_files());
    }
    CHECK(!tmp.has_temp_files());
    CHECK(test::read_bytes(p.string()) == "old");
  }

  TEST_CASE("SIGTERM, SIGINT or SIGHUP mid-write: the process dies of it and leaves no temp file") {
    for (int sig : {SIGTERM, SIGINT, SIGHUP}) {
      CAPTURE(sig);
      sprig::test::TempDir tmp("test_atomic_file");
      const fs::path dir = tmp.path;
      fs::path p = dir / "out.bin";
      test::write_bytes(p.string(), "old");
      pid_t child = ::fork();
      REQUIRE(child >= 0);
      if (child == 0) {
        // The child: no doctest from here on, only the exit status speaks. doctest handles
        // SIGINT and SIGTERM itself; a plain program has the default action there.
        std::signal(sig, SIG_DFL);
        try {
          AtomicFile f(p.string(), "cannot save test file");
          f.write("partial", 7);
          ::raise(sig);
        } catch (...) {
        }
        ::_exit(3);  // the signal did not kill us
      }
      int status = 0;
      REQUIRE(::waitpid(child, &status, 0) == child);
      CHECK(WIFSIGNALED(status));
      if (WIFSIGNALED(status)) CHECK(WTERMSIG(status) == sig);
      CHECK(!tmp.has_temp_files());
      CHECK(test::read_bytes(p.string()) == "old");
    }
  }

  TEST_CASE("an output that is an input, however it is spelled, is refused by flag and path") {
    sprig::test::TempDir tmp("test_atomic_file");
    const fs::path dir = tmp.path;
    fs::path in = dir / "w.safetensors", other = dir / "x.safetensors";
    test::write_bytes(in.string(), "weights");
    test::write_bytes(other.string(), "input");
    fs::create_symlink(in, dir / "w-link");
    fs::create_hard_link(in, dir / "w-hard");
    auto refused = [&](const fs::path& out) {
      try {
        check_output_path("--out", out.string(),
                          {{"--input", other.string()}, {"--in", in.string()}});
      } catch (const Error& e) {
        return std::string(e.what());
      }
      return std::string();
    };
    for (fs::path out : {in, dir / "." / "w.safetensors", dir / "w-link", dir / "w-hard"}) {
      CAPTURE(out);
      const std::string e = refused(out);
      CHECK(e.find("--out '" + out.string() + "' is the same file as --in '" + in.string() + "'") ==
            0);
      CHECK(e.find("would destroy the input") != std::string::npos);
    }
    CHECK(refused(other).find("is the same file as --input") != std::string::npos);
    CHECK(refused(dir / "new.safetensors").empty());  // does not exist yet
    CHECK(refused(dir / "adir-missing" / "y").empty());
    test::write_bytes((dir / "unrelated").string(), "u");
    CHECK(refused(dir / "unrelated").empty());
    CHECK_NOTHROW(check_output_path("--out", in.string(), {{"--base", ""}}));
    fs::create_directories(dir / "adir");
    CHECK_THROWS_WITH_AS(check_output_path("--out", (dir / "adir").string(), {}),
                         doctest::Contains("exists and is a directory"), Error);
    CHECK(test::read_bytes(in.string()) == "weights");
  }
}
