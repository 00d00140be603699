#include "dist/comm.h"

#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>

#include "kernels/error.h"

#ifdef SPRIG_HAVE_MPI
#include <mpi.h>
#endif

namespace sprig::dist {

#ifdef SPRIG_HAVE_MPI
struct Request::Impl {
  MPI_Request req = MPI_REQUEST_NULL;
};

namespace {
bool g_started = false;   // world() called MPI_Init_thread
MPI_Comm g_world_handle;  // a copy of MPI_COMM_WORLD (MPI_Comm is a pointer or an int)

MPI_Comm as_mpi(void* handle) {
  return *static_cast<MPI_Comm*>(handle);
}

// Every MPI call goes through this: a failure is a sprig::Error naming the call (the world
// communicator returns errors instead of ending the process, so the message can say what).
void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  throw Error(std::string("MPI ") + what + " failed: " + std::string(text, size_t(len)));
}

int as_count(int64_t n, const char* what) {
  SPRIG_CHECK(n >= 0 && n <= std::numeric_limits<int>::max(), "MPI ", what, ": ", n,
              " elements is more than one call can carry");
  return int(n);
}

bool launched_by_mpi() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"})
    if (std::getenv(var)) return true;
  return false;
}
}  // namespace
#else
struct Request::Impl {};
#endif

Request::Request() = default;
Request::Request(Request&&) noexcept = default;
Request& Request::operator=(Request&& other) noexcept {
  if (this != &other) {
    wait();
    impl_ = std::move(other.impl_);
  }
  return *this;
}
Request::~Request() {
  // Unwinding from an error: the other ranks may never join this collective, so waiting could
  // hang; the command line aborts the job next, and the operation is left to MPI_Abort.
  if (std::uncaught_exceptions() > 0) return;
  try {
    wait();
  } catch (const Error&) {  // a destructor must not throw; the collective's owner saw it fail
  }
}

bool Request::test() {
#ifdef SPRIG_HAVE_MPI
  if (!impl_ || impl_->req == MPI_REQUEST_NULL) return true;
  int done = 0;
  check(MPI_Test(&impl_->req, &done, MPI_STATUS_IGNORE), "Test");
  return done != 0;
#else
  return true;
#endif
}

void Request::wait() {
#ifdef SPRIG_HAVE_MPI
  if (!impl_ || impl_->req == MPI_REQUEST_NULL) return;
  check(MPI_Wait(&impl_->req, MPI_STATUS_IGNORE), "Wait");
#endif
}

Comm& Comm::self() {
  static Comm c(0, 1, nullptr);
  return c;
}

Comm& Comm::world() {
#ifdef SPRIG_HAVE_MPI
  static Comm c = [] {
    if (!launched_by_mpi()) return Comm(0, 1, nullptr);
    int provided = 0;
    // FUNNELED: OpenMP threads compute, only the thread that called init talks to MPI.
    check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "Init_thread");
    g_started = true;
    std::atexit(finalize);  // MPI counts a rank that exits without finalizing as failed
    g_world_handle = MPI_COMM_WORLD;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    int rank = 0, size = 1;
    check(MPI_Comm_rank(MPI_COMM_WORLD, &rank), "Comm_rank");
    check(MPI_Comm_size(MPI_COMM_WORLD, &size), "Comm_size");
    Comm world(rank, size, &g_world_handle);
    MPI_Comm node;  // the ranks that share this machine's memory
    check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node),
          "Comm_split_type");
    check(MPI_Comm_rank(node, &world.local_rank_), "Comm_rank");
    check(MPI_Comm_free(&node), "Comm_free");
    return world;
  }();
  return c;
#else
  return self();
#endif
}

bool mpi_built() {
#ifdef SPRIG_HAVE_MPI
  return true;
#else
  return false;
#endif
}

void finalize() {
#ifdef SPRIG_HAVE_MPI
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (g_started && !finalized) MPI_Finalize();
#endif
}

// A group of one needs no MPI: every collective is the identity.
#ifdef SPRIG_HAVE_MPI
static void allreduce_in_place(void* data, int64_t n, MPI_Datatype type, void* handle) {
  if (!handle) return;
  check(MPI_Allreduce(MPI_IN_PLACE, data, as_count(n, "Allreduce"), type, MPI_SUM, as_mpi(handle)),
        "Allreduce");
}
#endif

void Comm::allreduce_sum(float* data, int64_t n) const {
#ifdef SPRIG_HAVE_MPI
  allreduce_in_place(data, n, MPI_FLOAT, handle_);
#endif
}

void Comm::allreduce_sum(double* data, int64_t n) const {
#ifdef SPRIG_HAVE_MPI
  allreduce_in_place(data, n, MPI_DOUBLE, handle_);
#endif
}

Request Comm::iallreduce_sum(float* data, int64_t n) const {
  Request r;
#ifdef SPRIG_HAVE_MPI
  if (!handle_) return r;
  r.impl_ = std::make_unique<Request::Impl>();
  check(MPI_Iallreduce(MPI_IN_PLACE, data, as_count(n, "Iallreduce"), MPI_FLOAT, MPI_SUM,
                       as_mpi(handle_), &r.impl_->req),
        "Iallreduce");
#endif
  return r;
}

void Comm::broadcast(void* data, int64_t bytes, int root) const {
#ifdef SPRIG_HAVE_MPI
  if (!handle_) return;
  check(MPI_Bcast(data, as_count(bytes, "Bcast"), MPI_BYTE, root, as_mpi(handle_)), "Bcast");
#endif
}

void Comm::broadcast_string(std::string& s, int root) const {
  if (size_ == 1) return;
  int64_t n = int64_t(s.size());
  broadcast_value(n, root);
  s.resize(size_t(n));
  broadcast(s.data(), n, root);
}

std::vector<std::string> Comm::allgather(const std::string& s) const {
  if (size_ == 1) return {s};
  std::vector<std::string> out(static_cast<size_t>(size_));
#ifdef SPRIG_HAVE_MPI
  MPI_Comm c = as_mpi(handle_);
  const size_t ranks = static_cast<size_t>(size_);
  std::vector<int> lengths(ranks), offsets(ranks);
  int mine = as_count(int64_t(s.size()), "Allgather");
  check(MPI_Allgather(&mine, 1, MPI_INT, lengths.data(), 1, MPI_INT, c), "Allgather");
  int64_t total = 0;
  for (int r = 0; r < size_; ++r) {
    offsets[size_t(r)] = as_count(total, "Allgatherv");
    total += lengths[size_t(r)];
  }
  std::string all(size_t(total), '\0');
  check(MPI_Allgatherv(s.data(), mine, MPI_CHAR, all.data(), lengths.data(), offsets.data(),
                       MPI_CHAR, c),
        "Allgatherv");
  for (int r = 0; r < size_; ++r)
    out[size_t(r)] = all.substr(size_t(offsets[size_t(r)]), size_t(lengths[size_t(r)]));
#endif
  return out;
}

void Comm::barrier() const {
#ifdef SPRIG_HAVE_MPI
  if (!handle_) return;
  check(MPI_Barrier(as_mpi(handle_)), "Barrier");
#endif
}

void Comm::abort(int code) const {
#ifdef SPRIG_HAVE_MPI
  if (handle_) MPI_Abort(as_mpi(handle_), code);
#endif
  std::exit(code);
}

}  // namespace sprig::dist
