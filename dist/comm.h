#pragma once
// The one module that talks to MPI. A Comm is this process's view of the group of processes
// (ranks) running one job: MPI's world communicator when the process was started by an MPI
// launcher (mpirun, srun), else a group of one. Nothing else in sprig includes mpi.h, and a
// build without MPI (SPRIG_MPI=OFF) has only groups of one.
//
// Every collective must be called by every rank of the group in the same order; a rank that
// skips one leaves the others waiting (the launcher's timeout or abort() ends that).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sprig::dist {

// A non-blocking collective in flight. Its buffer must stay alive and untouched until wait().
class Request {
 public:
  Request();
  // Waits, so a buffer is never freed under a running reduction; except while an exception
  // unwinds the stack, when the job is about to be aborted and waiting could hang.
  ~Request();
  Request(Request&&) noexcept;
  Request& operator=(Request&&) noexcept;
  // Lets MPI progress the operation; true once it has completed.
  bool test();
  void wait();

  struct Impl;

 private:
  friend class Comm;
  std::unique_ptr<Impl> impl_;
};

class Comm {
 public:
  // The group of every rank of this job. The first call starts MPI when a launcher started the
  // process (its environment says so: OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_RANK); otherwise,
  // and in a build without MPI, it is a group of one and MPI is never touched.
  static Comm& world();
  // A group of this process alone (for comparing a distributed run with a single one).
  static Comm& self();

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_root() const { return rank_ == 0; }
  // This rank's index among the ranks on its machine (0 for a group of one): which GPU it
  // drives when each machine's ranks share its GPUs.
  int local_rank() const { return local_rank_; }

  // Sums n values element-wise over every rank, in place. Deterministic for a fixed group
  // size, and every rank receives the same bits.
  void allreduce_sum(float* data, int64_t n) const;
  void allreduce_sum(double* data, int64_t n) const;
  Request iallreduce_sum(float* data, int64_t n) const;
  // Copies `bytes` bytes of root's buffer into every other rank's.
  void broadcast(void* data, int64_t bytes, int root = 0) const;
  template <typename T>
  void broadcast_value(T& v, int root = 0) const {
    broadcast(&v, sizeof(T), root);
  }
  void broadcast_string(std::string& s, int root = 0) const;
  // Every rank's string, in rank order, on every rank.
  std::vector<std::string> allgather(const std::string& s) const;
  void barrier() const;
  // Ends every rank of the job at once (after a rank has failed, so that none waits forever
  // in a collective). Does not return.
  [[noreturn]] void abort(int code) const;

 private:
  Comm(int rank, int size, void* handle) : rank_(rank), size_(size), handle_(handle) {}
  int rank_ = 0, size_ = 1, local_rank_ = 0;
  [[maybe_unused]] void* handle_ = nullptr;  // the MPI_Comm, null for a group of one
};

// True when this build can run on several processes (SPRIG_MPI found MPI).
bool mpi_built();
// Finalises MPI if world() started it (world() registers it with atexit).
void finalize();

}  // namespace sprig::dist
