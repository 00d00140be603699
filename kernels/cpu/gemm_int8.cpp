// uint8 x int8 -> int32 matrix products: the reference loop, a plain C++ path, AVX2 and
// AVX-512 VNNI, all exact, so the tests compare them bit for bit. Each instruction set's kernel
// is compiled for it alone (target attributes) and chosen at run time from the CPU's features.
#include "kernels/cpu/gemm_int8.h"

#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "kernels/cpu/int8_sink.h"
#include "kernels/cpu/parallel.h"
#include "kernels/error.h"

namespace sprig::cpu {

using detail::Int8Sink;
using detail::store16;

PackedInt8Weights pack_int8_weights(const int8_t* B, int64_t N, int64_t K, int64_t ldb) {
  SPRIG_CHECK(N > 0 && K > 0 && ldb >= K, "pack_int8_weights: need N, K > 0 and ldb >= K, got N ",
              N, ", K ", K, ", ldb ", ldb);
  // sum(A B) and a_zero x row_sum each stay within 255 x 128 x K, and their difference within
  // 2^31 while K <= 2^15.
  SPRIG_CHECK(K <= (int64_t(1) << 15), "pack_int8_weights: K ", K,
              " above 32768 could overflow the int32 sums");
  PackedInt8Weights p;
  p.N = N;
  p.K = K;
  p.K4 = (K + 3) / 4 * 4;
  p.panels = (N + 31) / 32 * 2;
  p.groups = (p.K4 / 4 + 15) / 16 * 16;
  p.data.assign(size_t(p.panels * p.groups * 64), 0);
  p.row_sums.assign(size_t(N), 0);
  for (int64_t n = 0; n < N; ++n) {
    const int64_t panel = n / 16, lane = n % 16;
    for (int64_t k = 0; k < K; ++k) {
      const int8_t v = B[n * ldb + k];
      p.data[size_t(((panel * p.groups + k / 4) * 16 + lane) * 4 + k % 4)] = v;
      p.row_sums[size_t(n)] += v;
    }
  }
  return p;
}

void gemm_u8s8_ref(int64_t M, int64_t N, int64_t K, const uint8_t* A, int64_t lda, int32_t a_zero,
                   const int8_t* B, int64_t ldb, int32_t* C, int64_t ldc) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      int64_t s = 0;
      for (int64_t k = 0; k < K; ++k)
        s += (int64_t(A[m * lda + k]) - a_zero) * int64_t(B[n * ldb + k]);
      C[m * ldc + n] = int32_t(s);
    }
}

namespace {

// Row m's bytes k..k+3 as one little-endian word, zeros past K (the packed B is zero there).
inline int32_t a_group(const uint8_t* row, int64_t k, int64_t K) {
  int32_t w = 0;
  std::memcpy(&w, row + k, size_t(std::min<int64_t>(4, K - k)));
  return w;
}

// Every kernel below computes one tile: rows [m0, m0 + rows) x the columns of `panels`
// consecutive 16-column panels starting at panel p0, over all of K, and writes
// C = sum(A * B) - a_zero * row_sums for the columns < N.

// ---- plain C++ ---------------------------------------------------------------------------
void tile_generic(int64_t m0, int64_t rows, int64_t p0, int64_t panels, const uint8_t* A,
                  int64_t lda, int32_t a_zero, const PackedInt8Weights& B, const Int8Sink& out) {
  const int64_t groups = B.K4 / 4;
  for (int64_t m = m0; m < m0 + rows; ++m)
    for (int64_t p = p0; p < p0 + panels; ++p) {
      int32_t acc[16] = {};
      const int8_t* panel = B.data.data() + p * B.groups * 64;
      for (int64_t g = 0; g < groups; ++g) {
        const int32_t w = a_group(A + m * lda, 4 * g, B.K);
        uint8_t a[4];
        std::memcpy(a, &w, 4);
        for (int j = 0; j < 16; ++j)
          for (int q = 0; q < 4; ++q) acc[j] += int32_t(a[q]) * panel[g * 64 + j * 4 + q];
      }
      for (int j = 0; j < 16 && p * 16 + j < B.N; ++j)
        out.store(m, p * 16 + j, acc[j] - a_zero * B.row_sums[size_t(p * 16 + j)]);
    }
}

// ---- AVX2: products widened to 16 bits (vpmaddubsw would saturate u8 x s8 pair sums) ------
// 2 rows x one 16-column panel. A group's 64 bytes hold 4 chunks of 4 columns x 4 k; each
// chunk widens to 16 int16 and vpmaddwd sums pairs of k, leaving 2 partial sums per column.
template <int MR>
SPRIG_TARGET_AVX2 void tile_avx2_panel(int64_t m0, int64_t p, const uint8_t* A, int64_t lda,
                                       int32_t a_zero, const PackedInt8Weights& B,
                                       const Int8Sink& out) {
  const int64_t groups = B.K4 / 4;
  const int8_t* panel = B.data.data() + p * B.groups * 64;
  __m256i acc[MR][4];
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < 4; ++c) acc[r][c] = _mm256_setzero_si256();
  for (int64_t g = 0; g < groups; ++g) {
    __m256i b[4];
    for (int c = 0; c < 4; ++c)
      b[c] = _mm256_cvtepi8_epi16(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(panel + g * 64 + c * 16)));
    for (int r = 0; r < MR; ++r) {
      const int32_t w = a_group(A + (m0 + r) * lda, 4 * g, B.K);
      // The 4 bytes as 4 int16, repeated for the 4 columns of a chunk.
      const __m256i a = _mm256_cvtepu8_epi16(_mm_set1_epi32(w));
      for (int c = 0; c < 4; ++c)
        acc[r][c] = _mm256_add_epi32(acc[r][c], _mm256_madd_epi16(a, b[c]));
    }
  }
  for (int r = 0; r < MR; ++r) {
    alignas(32) int32_t part[4][8];
    for (int c = 0; c < 4; ++c) _mm256_store_si256(reinterpret_cast<__m256i*>(part[c]), acc[r][c]);
    for (int j = 0; j < 16 && p * 16 + j < B.N; ++j) {
      const int32_t s = part[j / 4][2 * (j % 4)] + part[j / 4][2 * (j % 4) + 1];
      out.store(m0 + r, p * 16 + j, s - a_zero * B.row_sums[size_t(p * 16 + j)]);
    }
  }
}

void tile_avx2(int64_t m0, int64_t rows, int64_t p0, int64_t panels, const uint8_t* A, int64_t lda,
               int32_t a_zero, const PackedInt8Weights& B, const Int8Sink& out) {
  for (int64_t p = p0; p < p0 + panels; ++p) {
    int64_t m = m0;
    for (; m + 2 <= m0 + rows; m += 2) tile_avx2_panel<2>(m, p, A, lda, a_zero, B, out);
    if (m < m0 + rows) tile_avx2_panel<1>(m, p, A, lda, a_zero, B, out);
  }
}

// ---- AVX-512 VNNI -------------------------------------------------------------------------
// MR rows x NV panels: MR x NV accumulators of 16 int32; per group of 4 k, NV loads of B and MR
// broadcasts of A feed MR x NV vpdpbusd.
template <int MR, int NV>
SPRIG_TARGET_VNNI void tile_vnni_block(int64_t m0, int64_t p0, const uint8_t* A, int64_t lda,
                                       int32_t a_zero, const PackedInt8Weights& B,
                                       const Int8Sink& out) {
  const int64_t groups = B.K4 / 4, full = B.K / 4;
  const int8_t* panel = B.data.data() + p0 * B.groups * 64;
  __m512i acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_si512();
  for (int64_t g = 0; g < groups; ++g) {
    int32_t words[MR];  // 4 bytes of each row; past K (the last group) zeros
    for (int r = 0; r < MR; ++r) {
      if (g < full)
        std::memcpy(&words[r], A + (m0 + r) * lda + 4 * g, 4);
      else
        words[r] = a_group(A + (m0 + r) * lda, 4 * g, B.K);
    }
    __m512i b[NV];
    for (int v = 0; v < NV; ++v) b[v] = _mm512_loadu_si512(panel + (v * B.groups + g) * 64);
    for (int r = 0; r < MR; ++r) {
      const __m512i a = _mm512_set1_epi32(words[r]);
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], a, b[v]);
    }
  }
  const __m512i zero_point = _mm512_set1_epi32(a_zero);
  for (int v = 0; v < NV; ++v) {
    const int64_t n0 = (p0 + v) * 16;
    const __mmask16 mask = __mmask16((1u << std::min<int64_t>(16, B.N - n0)) - 1);
    const __m512i sums = _mm512_maskz_loadu_epi32(mask, B.row_sums.data() + n0);
    const __m512i correction = _mm512_mullo_epi32(zero_point, sums);
    for (int r = 0; r < MR; ++r)
      store16(out, m0 + r, n0, mask, _mm512_sub_epi32(acc[r][v], correction));
  }
}

using VnniBlock = void (*)(int64_t, int64_t, const uint8_t*, int64_t, int32_t,
                           const PackedInt8Weights&, const Int8Sink&);
constexpr int kVnniRows = 6, kVnniPanels = 4;  // 24 accumulators + 4 B + 1 A of 32 registers

template <int MR>
constexpr VnniBlock vnni_block(int nv) {
  return nv == 1   ? tile_vnni_block<MR, 1>
         : nv == 2 ? tile_vnni_block<MR, 2>
         : nv == 3 ? tile_vnni_block<MR, 3>
                   : tile_vnni_block<MR, 4>;
}

void tile_vnni(int64_t m0, int64_t rows, int64_t p0, int64_t panels, const uint8_t* A, int64_t lda,
               int32_t a_zero, const PackedInt8Weights& B, const Int8Sink& out) {
  static const VnniBlock blocks[kVnniRows][kVnniPanels] = {
      {vnni_block<1>(1), vnni_block<1>(2), vnni_block<1>(3), vnni_block<1>(4)},
      {vnni_block<2>(1), vnni_block<2>(2), vnni_block<2>(3), vnni_block<2>(4)},
      {vnni_block<3>(1), vnni_block<3>(2), vnni_block<3>(3), vnni_block<3>(4)},
      {vnni_block<4>(1), vnni_block<4>(2), vnni_block<4>(3), vnni_block<4>(4)},
      {vnni_block<5>(1), vnni_block<5>(2), vnni_block<5>(3), vnni_block<5>(4)},
      {vnni_block<6>(1), vnni_block<6>(2), vnni_block<6>(3), vnni_block<6>(4)}};
  for (int64_t p = p0; p < p0 + panels; p += kVnniPanels) {
    const int nv = int(std::min<int64_t>(kVnniPanels, p0 + panels - p));
    for (int64_t m = m0; m < m0 + rows; m += kVnniRows) {
      const int mr = int(std::min<int64_t>(kVnniRows, m0 + rows - m));
      blocks[mr - 1][nv - 1](m, p, A, lda, a_zero, B, out);
    }
  }
}

// ---- AMX (Sapphire Rapids and later): tile products of 16 rows x 64 k by 64 k x 16 columns
// (tdpbusd: 16,384 multiply-adds per instruction, against vpdpbusd's 64). A 32 x 32 block of C
// lives in 4 accumulator tiles. Every tile load is whole: 32 rows of B.groups x 4 bytes from a0
// (row stride lda); bytes past K may be anything, B is zero there (gemm_amx pads A where its
// own rows would not do). Results pass through a small buffer so only valid rows and columns
// reach C.
struct TileConfig {
  uint8_t palette = 1, start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};  // bytes per row of each tile
  uint8_t rows[16] = {};
};

// Rows [m0, m0 + rows) (rows <= 32) x the panels [p0, p0 + panels) of C, A's row m0 at a0.
SPRIG_TARGET_AMX void tile_amx(int64_t m0, int64_t rows, int64_t p0, int64_t panels,
                               const uint8_t* a0, int64_t lda, int32_t a_zero,
                               const PackedInt8Weights& B, const Int8Sink& sink) {
  // Configured on every call (a few cycles against thousands per block) and released at the
  // end, so other AMX code in the process (another library's) never sees our tiles or we its.
  alignas(64) TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  _tile_loadconfig(&cfg);
  alignas(64) int32_t out[4][16][16];
  const __m512i zero_point = _mm512_set1_epi32(a_zero);
  const uint8_t* a1 = a0 + 16 * lda;
  for (int64_t p = p0; p < p0 + panels; p += 2) {  // 32 columns: panels p and p + 1
    const int8_t* b0 = B.data.data() + p * B.groups * 64;
    const int8_t* b1 = b0 + B.groups * 64;
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t g = 0; g < B.groups; g += 16) {  // 64 k per step
      _tile_loadd(4, a0 + 4 * g, lda);
      _tile_loadd(5, a1 + 4 * g, lda);
      _tile_loadd(6, b0 + g * 64, 64);
      _tile_loadd(7, b1 + g * 64, 64);
      _tile_dpbusd(0, 4, 6);
      _tile_dpbusd(1, 4, 7);
      _tile_dpbusd(2, 5, 6);
      _tile_dpbusd(3, 5, 7);
    }
    _tile_stored(0, out[0], 64);
    _tile_stored(1, out[1], 64);
    _tile_stored(2, out[2], 64);
    _tile_stored(3, out[3], 64);
    for (int t = 0; t < 4; ++t) {
      const int64_t n0 = (p + t % 2) * 16, r0 = 16 * (t / 2);
      if (n0 >= B.N) continue;
      const __mmask16 mask = __mmask16((1u << std::min<int64_t>(16, B.N - n0)) - 1u);
      const __m512i correction =
          _mm512_mullo_epi32(zero_point, _mm512_maskz_loadu_epi32(mask, B.row_sums.data() + n0));
      for (int64_t r = r0; r < std::min(rows, r0 + 16); ++r)
        store16(sink, m0 + r, n0, mask,
                _mm512_sub_epi32(_mm512_load_si512(out[t][r - r0]), correction));
    }
  }
  _tile_release();
}

// gemm_u8s8_with's AMX path: 32-row blocks x 4-panel blocks over the team.
void gemm_amx(int64_t M, const uint8_t* A, int64_t lda, int32_t a_zero, const PackedInt8Weights& B,
              const Int8Sink& out, bool parallel) {
  const int64_t kbytes = B.groups * 4, row_blocks = (M + 31) / 32;
  // A is read in place when its rows are whole cache lines apart and every block's 32 rows of
  // kbytes end inside it; otherwise (a row of 784 bytes straddles lines, and tile loads are
  // this kernel's bottleneck) it is copied into rows of kbytes, zero-padded to 32-row blocks.
  const bool in_place =
      lda % 64 == 0 && reinterpret_cast<uintptr_t>(A) % 64 == 0 && M % 32 == 0 && lda >= kbytes;
  thread_local std::vector<uint8_t> padded;  // (row_blocks * 32, kbytes) + 64 for alignment
  uint8_t* pa = nullptr;
  if (!in_place) {
    const size_t bytes = size_t(row_blocks * 32 * kbytes + 64);
    if (padded.size() < bytes) padded.resize(bytes);
    pa = padded.data() + (64 - reinterpret_cast<uintptr_t>(padded.data()) % 64) % 64;
  }
  const int64_t panels = (B.N + 15) / 16, col_blocks = (panels + 3) / 4;
  const int64_t items = col_blocks * row_blocks;
  const bool split = parallel && items > 1;
  if (!in_place)
    parallel_for(row_blocks, split, [&](int64_t rb) {
      for (int64_t r = rb * 32; r < rb * 32 + 32; ++r) {
        uint8_t* row = pa + r * kbytes;
        const int64_t n = r < M ? B.K : 0;
        if (n) std::memcpy(row, A + r * lda, size_t(n));
        std::memset(row + n, 0, size_t(kbytes - n));
      }
    });
  const uint8_t* a = in_place ? A : pa;
  const int64_t a_ld = in_place ? lda : kbytes;
  parallel_for(items, split, [&](int64_t item) {
    const int64_t cb = item % col_blocks, m0 = (item / col_blocks) * 32, p0 = cb * 4;
    tile_amx(m0, std::min<int64_t>(32, M - m0), p0, std::min<int64_t>(4, panels - p0),
             a + m0 * a_ld, a_ld, a_zero, B, out);
  });
}

using Tile = void (*)(int64_t, int64_t, int64_t, int64_t, const uint8_t*, int64_t, int32_t,
                      const PackedInt8Weights&, const Int8Sink&);

// The CPU has AMX-TILE and AMX-INT8 (CPUID leaf 7: EDX bits 24, 25) and Linux lets this
// process use the tile data (arch_prctl ARCH_REQ_XCOMP_PERM for XTILEDATA, Linux 5.16+).
bool amx_usable() {
  static const bool usable = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 24)) || !(d & (1u << 25)))
      return false;
    constexpr long kReqXcompPerm = 0x1023, kXtiledata = 18;
    return syscall(SYS_arch_prctl, kReqXcompPerm, kXtiledata) == 0;
  }();
  return usable;
}

// The row-tile kernels (AMX has its own loop, gemm_amx).
Tile tile_for(Int8Isa isa) {
  switch (isa) {
    case Int8Isa::Vnni512:
      return tile_vnni;
    case Int8Isa::Avx2:
      return tile_avx2;
    default:
      return tile_generic;
  }
}

}  // namespace

const char* int8_isa_name(Int8Isa isa) {
  switch (isa) {
    case Int8Isa::Amx:
      return "amx";
    case Int8Isa::Vnni512:
      return "vnni512";
    case Int8Isa::Avx2:
      return "avx2";
    default:
      return "generic";
  }
}

bool int8_isa_supported(Int8Isa isa) {
  switch (isa) {
    case Int8Isa::Amx:
      return amx_usable();
    case Int8Isa::Vnni512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
    case Int8Isa::Avx2:
      return __builtin_cpu_supports("avx2");
    default:
      return true;
  }
}

Int8Isa int8_gemm_isa() {
  static const Int8Isa chosen = [] {
    if (const char* env = std::getenv("SPRIG_INT8_ISA")) {
      for (Int8Isa isa : {Int8Isa::Amx, Int8Isa::Vnni512, Int8Isa::Avx2, Int8Isa::Generic})
        if (std::string(env) == int8_isa_name(isa)) {
          SPRIG_CHECK(int8_isa_supported(isa), "SPRIG_INT8_ISA=", env,
                      ": this CPU does not support it");
          return isa;
        }
      throw Error("SPRIG_INT8_ISA=" + std::string(env) +
                  ": expected amx, vnni512, avx2 or generic");
    }
    for (Int8Isa isa : {Int8Isa::Amx, Int8Isa::Vnni512, Int8Isa::Avx2})
      if (int8_isa_supported(isa)) return isa;
    return Int8Isa::Generic;
  }();
  return chosen;
}

namespace {

void gemm_run(Int8Isa isa, int64_t M, const uint8_t* A, int64_t lda, int32_t a_zero,
              const PackedInt8Weights& B, const Int8Sink& out) {
  SPRIG_CHECK(int8_isa_supported(isa), "gemm_u8s8: ", int8_isa_name(isa),
              " is not supported by this CPU");
  const int64_t ld_out = out.y || out.q ? out.ldy : out.ldc;
  SPRIG_CHECK(M >= 0 && lda >= B.K && ld_out >= B.N, "gemm_u8s8: need M >= 0, lda >= K (", B.K,
              ") and ldc >= N (", B.N, "), got M ", M, ", lda ", lda, ", ldc ", ld_out);
  if (M == 0) return;
  const bool parallel = available_threads() > 1 && M * B.N * B.K >= (int64_t(1) << 18);
  if (isa == Int8Isa::Amx) {
    gemm_amx(M, A, lda, a_zero, B, out, parallel);
    return;
  }
  const Tile tile = tile_for(isa);
  // Work items: blocks of up to 4 panels (64 columns) x blocks of up to 48 rows (whole VNNI
  // steps of 6), split over the team for products big enough to pay for it.
  const int64_t panels = (B.N + 15) / 16, col_blocks = (panels + 3) / 4;
  const int64_t row_block = 48;
  const int64_t row_blocks = (M + row_block - 1) / row_block;
  const int64_t items = col_blocks * row_blocks;
  parallel_for(items, parallel && items > 1, [&](int64_t item) {
    const int64_t cb = item % col_blocks, rb = item / col_blocks;
    const int64_t p0 = cb * 4, m0 = rb * row_block;
    tile(m0, std::min(row_block, M - m0), p0, std::min<int64_t>(4, panels - p0), A, lda, a_zero, B,
         out);
  });
}

// An AMX tile has 16 rows: below that most of it is padding, and VNNI is faster (at batch 1,
// mlp's first layer: 146 against 33 GOP/s, bench/gemm_int8).
Int8Isa isa_for_rows(int64_t M) {
  const Int8Isa isa = int8_gemm_isa();
  if (isa == Int8Isa::Amx && M < 16 && int8_isa_supported(Int8Isa::Vnni512))
    return Int8Isa::Vnni512;
  return isa;
}

}  // namespace

void gemm_u8s8_with(Int8Isa isa, int64_t M, const uint8_t* A, int64_t lda, int32_t a_zero,
                    const PackedInt8Weights& B, int32_t* C, int64_t ldc) {
  gemm_run(isa, M, A, lda, a_zero, B, Int8Sink::sums(C, ldc));
}

void gemm_u8s8(int64_t M, const uint8_t* A, int64_t lda, int32_t a_zero, const PackedInt8Weights& B,
               int32_t* C, int64_t ldc) {
  gemm_u8s8_with(isa_for_rows(M), M, A, lda, a_zero, B, C, ldc);
}

void gemm_u8s8_dequantize_with(Int8Isa isa, int64_t M, const uint8_t* A, int64_t lda,
                               int32_t a_zero, const PackedInt8Weights& B, const Int8Dequantize& dq,
                               float* y, int64_t ldy) {
  gemm_run(isa, M, A, lda, a_zero, B, Int8Sink::dequantizing("gemm_u8s8_dequantize", dq, y, ldy));
}

void gemm_u8s8_dequantize(int64_t M, const uint8_t* A, int64_t lda, int32_t a_zero,
                          const PackedInt8Weights& B, const Int8Dequantize& dq, float* y,
                          int64_t ldy) {
  gemm_u8s8_dequantize_with(isa_for_rows(M), M, A, lda, a_zero, B, dq, y, ldy);
}

void gemm_u8s8_requantize_with(Int8Isa isa, int64_t M, const uint8_t* A, int64_t lda,
                               int32_t a_zero, const PackedInt8Weights& B, const Int8Dequantize& dq,
                               ActivationQuant out, uint8_t* q, int64_t ldq) {
  gemm_run(isa, M, A, lda, a_zero, B,
           Int8Sink::requantizing("gemm_u8s8_requantize", dq, out, q, ldq));
}

void gemm_u8s8_requantize(int64_t M, const uint8_t* A, int64_t lda, int32_t a_zero,
                          const PackedInt8Weights& B, const Int8Dequantize& dq, ActivationQuant out,
                          uint8_t* q, int64_t ldq) {
  gemm_u8s8_requantize_with(isa_for_rows(M), M, A, lda, a_zero, B, dq, out, q, ldq);
}

}  // namespace sprig::cpu
