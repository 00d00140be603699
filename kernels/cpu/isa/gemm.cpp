// Dense single-precision gemm in the GotoBLAS / BLIS shape: op(A) and op(B) are copied
// ("packed") block by block into contiguous panels, and a register-blocked micro-kernel
// multiplies one MR x kc panel of A by one kc x NR panel of B into an MR x NR tile of C.
//
// Loop nest (per thread):
//   jc over N in NC steps        B block (KC x NC) packed once, lives in L2/L3
//     pc over K in KC steps      later K blocks accumulate into C (beta = 1)
//       ic over M in MC steps    A block (MC x KC) packed, lives in L2
//         ir over MR rows        A micro-panel (MR x KC) stays in L1
//           jr over NR cols      B micro-panels stream from L2
//
// The micro-kernel is templated on the number of live rows m (1..MR), so a short last row
// panel does not pay for MR rows. Columns beyond N are zero in the packed B panel and are
// masked off when storing. When N is much smaller than M (e.g. a Linear layer with 10
// outputs) we compute C^T = op(B)^T op(A)^T instead, which packs far less padding.
//
// This file is compiled once per instruction set (CMake sets -march and SPRIG_GEMM_ISA: avx512,
// avx2, generic), each copy in its own namespace; kernels/cpu/gemm.cpp picks one at run time
// from the CPU's features.
#include "kernels/cpu/gemm.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "kernels/cpu/threads.h"

#if defined(__AVX512F__) || defined(__AVX2__) || defined(__AVX__)
#include <immintrin.h>
#endif

namespace sprig::cpu::SPRIG_GEMM_ISA {
namespace {

#if defined(__AVX512F__)
constexpr int MR = 8, NR = 32;  // 16 zmm accumulators, 2 B loads + 8 broadcasts per k
#elif defined(__AVX2__) && defined(__FMA__)
constexpr int MR = 6, NR = 16;  // 12 ymm accumulators
#else
constexpr int MR = 4, NR = 16;  // plain C++ the compiler vectorizes
#endif
constexpr int64_t KC = 256;      // A micro-panel MR*KC floats fits L1 next to the B stream
constexpr int64_t MC = MR * 16;  // A block MC*KC floats (128 KiB with AVX-512) fits L2
constexpr int64_t NC = NR * 64;  // B block KC*NC floats (2 MiB with AVX-512), L2/L3

// Below this many multiply-adds the threads' fork/join (several microseconds, more when the
// other core is busy) costs more than it saves: measured on 2 cores, 64^3 ran at half the
// speed with 2 threads as with 1, and 128^3 gains only ~1.3x.
constexpr int64_t kParallelMinWork = 128 * 128 * 64;

// B is read in place instead of packed when C has at most this many rows (see gemm_serial).
// Measured with AVX-512 on one core: x (32, 784) W^T (784, 300) went from 98 to 83 us, and the
// 32-channel im2col products 10-15% faster; at 64 rows packing and reading in place were even.
constexpr int64_t kDirectBMaxM = 4 * MR;

// A read-only matrix view: element (i, j) is at p[i * rs + j * cs]. op(A) and op(B) are
// expressed as views so that transposition is only a swap of strides.
struct View {
  const float* p;
  int64_t rs, cs;
  const float* at(int64_t i, int64_t j) const { return p + i * rs + j * cs; }
};

// A per-thread, 64-byte aligned scratch buffer that only grows, so a warm gemm does not
// allocate.
struct Scratch {
  float* p = nullptr;
  size_t cap = 0;
  float* get(size_t n) {
    if (n > cap) {
      std::free(p);
      size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
      p = static_cast<float*>(std::aligned_alloc(64, bytes));
      cap = n;
    }
    return p;
  }
  ~Scratch() { std::free(p); }
};

#if defined(__AVX__)
// dst[c * ldd + r] = src[r * lds + c] for an 8 x 8 block: used by the packers whenever
// the source is laid out across the direction the panel needs.
inline void transpose8x8(const float* src, int64_t lds, float* dst, int64_t ldd) {
  __m256 r0 = _mm256_loadu_ps(src + 0 * lds), r1 = _mm256_loadu_ps(src + 1 * lds);
  __m256 r2 = _mm256_loadu_ps(src + 2 * lds), r3 = _mm256_loadu_ps(src + 3 * lds);
  __m256 r4 = _mm256_loadu_ps(src + 4 * lds), r5 = _mm256_loadu_ps(src + 5 * lds);
  __m256 r6 = _mm256_loadu_ps(src + 6 * lds), r7 = _mm256_loadu_ps(src + 7 * lds);
  __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
  __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  __m256 u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  __m256 u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  __m256 u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  __m256 u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  __m256 u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  __m256 u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  __m256 u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  _mm256_storeu_ps(dst + 0 * ldd, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_storeu_ps(dst + 1 * ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_storeu_ps(dst + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_storeu_ps(dst + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_storeu_ps(dst + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_storeu_ps(dst + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_storeu_ps(dst + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_storeu_ps(dst + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
}
#endif

// Copies a strided (rows x cols) block into dst with dst[c * ldd + r] = a(r, c), i.e. the
// packed layout "for each k, the PANEL values across the panel", where rows run across the
// panel and cols run along k. Rows beyond `rows` up to `width` are zero-filled.
void pack_panel(View a, int64_t rows, int64_t cols, int width, float* dst) {
  if (a.rs == 1) {  // each k reads `rows` contiguous floats
#if defined(__AVX512F__) && defined(__AVX512VL__)
    // Masked loads read only the live rows and zero the padding in the same instruction;
    // a variable-length memcpy per k (32 floats at most) costs several times more.
    if (width == 32) {
      __mmask16 m0 = rows >= 16 ? 0xFFFF : (__mmask16)((1u << rows) - 1);
      __mmask16 m1 = rows >= 32 ? 0xFFFF : rows > 16 ? (__mmask16)((1u << (rows - 16)) - 1) : 0;
      for (int64_t c = 0; c < cols; c++) {
        const float* src = a.at(0, c);
        _mm512_storeu_ps(dst + c * 32, _mm512_maskz_loadu_ps(m0, src));
        _mm512_storeu_ps(dst + c * 32 + 16, _mm512_maskz_loadu_ps(m1, src + 16));
      }
      return;
    }
    if (width == 8) {
      __mmask8 m = rows >= 8 ? 0xFF : (__mmask8)((1u << rows) - 1);
      for (int64_t c = 0; c < cols; c++)
        _mm256_storeu_ps(dst + c * 8, _mm256_maskz_loadu_ps(m, a.at(0, c)));
      return;
    }
#endif
    for (int64_t c = 0; c < cols; c++) {
      const float* src = a.at(0, c);
      float* d = dst + c * width;
      std::memcpy(d, src, rows * sizeof(float));
      for (int64_t r = rows; r < width; r++) d[r] = 0.0f;
    }
    return;
  }
  int64_t r8 = 0, c8 = 0;  // rows [0, r8) x cols [0, c8) go through 8 x 8 transposes
#if defined(__AVX__)
  if (a.cs == 1) {  // rows are contiguous along k
    r8 = rows / 8 * 8;
    c8 = cols / 8 * 8;
    for (int64_t c = 0; c < c8; c += 8)
      for (int64_t r = 0; r < r8; r += 8)
        transpose8x8(a.at(r, c), a.rs, dst + c * width + r, width);
  }
#endif
  for (int64_t r = 0; r < rows; r++) {
    const float* src = a.at(r, 0);
    for (int64_t c = r < r8 ? c8 : 0; c < cols; c++) dst[c * width + r] = src[c * a.cs];
  }
  for (int64_t c = 0; c < cols; c++)
    for (int64_t r = rows; r < width; r++) dst[c * width + r] = 0.0f;
}

// Packs op(A)(0:mc, 0:kc) into ceil(mc / MR) panels of MR x kc, panel p at dst + p * MR * kc.
void pack_a(View a, int64_t mc, int64_t kc, float* dst) {
  for (int64_t i = 0; i < mc; i += MR) {
    int64_t m = std::min<int64_t>(MR, mc - i);
    pack_panel(View{a.at(i, 0), a.rs, a.cs}, m, kc, MR, dst + i * kc);
  }
}

// Packs op(B)(0:kc, 0:nc) into ceil(nc / NR) panels of kc x NR, zero-padded to NR columns.
void pack_b(View b, int64_t kc, int64_t nc, float* dst) {
  for (int64_t j = 0; j < nc; j += NR) {
    int64_t n = std::min<int64_t>(NR, nc - j);
    // Seen from the panel, B's columns run across and B's rows run along k.
    pack_panel(View{b.at(0, j), b.cs, b.rs}, n, kc, NR, dst + j * kc);
  }
}

// Writes an m x n tile held in t (row stride NR) to C with arbitrary strides:
// C = alpha * t + beta * C, never reading C when beta == 0.
template <int m>
inline void store_tile_generic(const float* t, float* c, int64_t rsc, int64_t csc, int n,
                               float alpha, float beta) {
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) {
      float* p = c + i * rsc + j * csc;
      *p = beta == 0.0f ? alpha * t[i * NR + j] : alpha * t[i * NR + j] + beta * *p;
    }
}

// C(0:m, 0:n) = alpha * Apanel * Bpanel + beta * C. a: packed (kc, MR); b: (kc, NR) with
// row stride bs (NR when packed, B's own row stride when read in place; all NR columns of
// each row must be readable).
template <int m>
void ukernel(int64_t kc, const float* __restrict a, const float* __restrict b, int64_t bs, float* c,
             int64_t rsc, int64_t csc, int n, float alpha, float beta) {
#if defined(__AVX512F__)
  __m512 c0[m], c1[m];
  for (int i = 0; i < m; i++) c0[i] = c1[i] = _mm512_setzero_ps();
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; k++) {
    __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
    for (int i = 0; i < m; i++) {
      __m512 ai = _mm512_set1_ps(a[i]);
      c0[i] = _mm512_fmadd_ps(ai, b0, c0[i]);
      c1[i] = _mm512_fmadd_ps(ai, b1, c1[i]);
    }
    a += MR;
    b += bs;
  }
  __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  if (csc == 1) {
    __mmask16 k0 = n >= 16 ? 0xFFFF : (__mmask16)((1u << n) - 1);
    __mmask16 k1 = n >= 32 ? 0xFFFF : n > 16 ? (__mmask16)((1u << (n - 16)) - 1) : 0;
    for (int i = 0; i < m; i++) {
      float* p = c + i * rsc;
      __m512 r0 = _mm512_mul_ps(va, c0[i]), r1 = _mm512_mul_ps(va, c1[i]);
      if (beta != 0.0f) {  // masked loads never touch (or fault on) the masked-off lanes
        r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(k0, p), r0);
        r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(k1, p + 16), r1);
      }
      _mm512_mask_storeu_ps(p, k0, r0);
      _mm512_mask_storeu_ps(p + 16, k1, r1);
    }
    return;
  }
  alignas(64) float t[m * NR];
  for (int i = 0; i < m; i++) {
    _mm512_store_ps(t + i * NR, c0[i]);
    _mm512_store_ps(t + i * NR + 16, c1[i]);
  }
  store_tile_generic<m>(t, c, rsc, csc, n, alpha, beta);
#elif defined(__AVX2__) && defined(__FMA__)
  // The row loops are unrolled so that GCC keeps c0 and c1 in registers: rolled, it stored each
  // accumulator to the stack after every FMA (512^3 on a Zen 3 core: 30 against 82-87 GFLOP/s).
  __m256 c0[m], c1[m];
#pragma GCC unroll 8
  for (int i = 0; i < m; i++) c0[i] = c1[i] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; k++) {
    __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 8
    for (int i = 0; i < m; i++) {
      __m256 ai = _mm256_broadcast_ss(a + i);
      c0[i] = _mm256_fmadd_ps(ai, b0, c0[i]);
      c1[i] = _mm256_fmadd_ps(ai, b1, c1[i]);
    }
    a += MR;
    b += bs;
  }
  if (csc == 1 && n == NR) {
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma GCC unroll 8
    for (int i = 0; i < m; i++) {
      float* p = c + i * rsc;
      __m256 r0 = _mm256_mul_ps(va, c0[i]), r1 = _mm256_mul_ps(va, c1[i]);
      if (beta != 0.0f) {
        r0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(p), r0);
        r1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(p + 8), r1);
      }
      _mm256_storeu_ps(p, r0);
      _mm256_storeu_ps(p + 8, r1);
    }
    return;
  }
  alignas(32) float t[m * NR];
#pragma GCC unroll 8
  for (int i = 0; i < m; i++) {
    _mm256_store_ps(t + i * NR, c0[i]);
    _mm256_store_ps(t + i * NR + 8, c1[i]);
  }
  store_tile_generic<m>(t, c, rsc, csc, n, alpha, beta);
#else
  float t[m * NR] = {};         // the accumulator tile; the j loop vectorizes
  for (int64_t k = 0; k < kc; k++) {
    for (int i = 0; i < m; i++) {
      float ai = a[i];
      for (int j = 0; j < NR; j++) t[i * NR + j] += ai * b[j];
    }
    a += MR;
    b += bs;
  }
  store_tile_generic<m>(t, c, rsc, csc, n, alpha, beta);
#endif
}

using Kernel = void (*)(int64_t, const float*, const float*, int64_t, float*, int64_t, int64_t, int,
                        float, float);
template <int... I>
constexpr std::array<Kernel, sizeof...(I)> make_kernels(std::integer_sequence<int, I...>) {
  return {&ukernel<I + 1>...};
}
// kernels[m - 1] handles a panel with m live rows.
constexpr std::array<Kernel, MR> kernels = make_kernels(std::make_integer_sequence<int, MR>{});

thread_local Scratch tls_apack, tls_bpack, tls_partial;

// op(B) packed whole, once, by pack_b_whole: K blocks of KC rows, block pc at p + pc * np (np: N
// rounded up to NR) holding its (kc, NR) column panels, the one of column j (a multiple of NR)
// at + j * kc. j0 is the first column of the caller's slab.
struct PrepackedB {
  const float* p;
  int64_t np, j0;
  const float* panel(int64_t pc, int64_t kc, int64_t j) const {
    return p + pc * np + (j0 + j) * kc;
  }
};

// C = alpha * a * b + beta * C on the calling thread. a: (M, K), b: (K, N), C element
// (i, j) at c[i * rsc + j * csc]. With pre, b's panels are read from it (b is not used).
void gemm_serial(int64_t M, int64_t N, int64_t K, float alpha, View a, View b, float beta, float* c,
                 int64_t rsc, int64_t csc, const PrepackedB* pre = nullptr) {
  float* ap = tls_apack.get(MC * KC);                  // ceil(MC / MR) panels of (KC, MR)
  float* bp = pre ? nullptr : tls_bpack.get(KC * NC);  // ceil(NC / NR) panels of (KC, NR)
  // With few rows of C each B panel is used only once or twice, so copying it costs about as
  // much as the products (conv forward: W (K, CRS) x col (CRS, PQ) with K = 8..16). Full
  // NR-column panels of a row-major B are then read in place; only the ragged last panel is
  // packed (zero-padded), since the kernel reads all NR columns.
  const bool direct_b = !pre && b.cs == 1 && M <= kDirectBMaxM;
  for (int64_t jc = 0; jc < N; jc += NC) {
    int64_t nc = std::min(NC, N - jc);
    const int64_t n_full = direct_b ? nc / NR * NR : 0;  // columns read in place
    for (int64_t pc = 0; pc < K; pc += KC) {
      int64_t kc = std::min(KC, K - pc);
      float beta_k = pc == 0 ? beta : 1.0f;  // later K blocks add onto the first
      // Packed panels of columns [n_full, nc); panel p at bp + p * NR * kc.
      if (!pre && n_full < nc) pack_b(View{b.at(pc, jc + n_full), b.rs, b.cs}, kc, nc - n_full, bp);
      for (int64_t ic = 0; ic < M; ic += MC) {
        int64_t mc = std::min(MC, M - ic);
        pack_a(View{a.at(ic, pc), a.rs, a.cs}, mc, kc, ap);
        for (int64_t ir = 0; ir < mc; ir += MR) {
          int m = (int)std::min<int64_t>(MR, mc - ir);
          Kernel kern = kernels[m - 1];
          for (int64_t jr = 0; jr < nc; jr += NR) {
            int n = (int)std::min<int64_t>(NR, nc - jr);
            float* ct = c + (ic + ir) * rsc + (jc + jr) * csc;
            if (pre)
              kern(kc, ap + ir * kc, pre->panel(pc, kc, jc + jr), NR, ct, rsc, csc, n, alpha,
                   beta_k);
            else if (jr < n_full)
              kern(kc, ap + ir * kc, b.at(pc, jc + jr), b.rs, ct, rsc, csc, n, alpha, beta_k);
            else
              kern(kc, ap + ir * kc, bp + (jr - n_full) * kc, NR, ct, rsc, csc, n, alpha, beta_k);
          }
        }
      }
    }
  }
}

// C = beta * C for the degenerate products (K == 0 or alpha == 0).
void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
}

int64_t round_up(int64_t x, int64_t r) {
  return (x + r - 1) / r * r;
}

// Rough micro-kernel cycles for an (M, N, K) product: a panel with few live rows is bound
// by FMA latency rather than throughput, so it costs about as much as MR / 2 rows.
int64_t work(int64_t M, int64_t N, int64_t K) {
  int64_t rows = M / MR * MR, rem = M % MR;
  if (rem) rows += std::max<int64_t>(rem, MR / 2);
  return (N + NR - 1) / NR * rows * K;
}

// Splits [0, n) into `parts` ranges aligned to `align`; returns the start of range t.
int64_t split_at(int64_t n, int parts, int t, int64_t align) {
  int64_t blocks = (n + align - 1) / align;
  return std::min(n, blocks * t / parts * align);
}

// One vector register of floats in the instruction set this copy is built for.
#if defined(__AVX512F__)
constexpr int kLanes = 16;
#else
constexpr int kLanes = 8;
#endif

// K is taken this much at a time (a multiple of kLanes) when there are several row blocks: the
// block of B's columns (40 KiB for 10 columns) stays in L1 while every row block of A passes
// it. Over the whole of a long K, B streamed from L2 for every row block at the L2's pace:
// 57 GFLOP/s at 128 x 10 x 8192 on one core, 73 in blocks of 1024 (67 in 512, 73 in 2048).
constexpr int64_t kDotKB = 1024;

// Columns of B each block of Mr rows of A serves at once: Mr x Nc accumulator registers, Mr
// loads of A and Nc of B per Mr x Nc FMAs. AVX-512 has 32 vector registers, the others 16.
template <int Mr>
constexpr int dot_nc() {
  if (kLanes == 16) return Mr == 1 ? 8 : Mr == 2 ? 8 : Mr == 3 ? 6 : 5;
  return Mr == 1 ? 8 : Mr == 2 ? 4 : 2;
}

// For rows 0..Mr-1 and the Nc columns from j: C = alpha * dot(row i of op(A), column j of
// op(B)) (+ beta * C), both contiguous along K: a Linear layer (x (M, K) times W^T, W stored
// (N, K)) read once, nothing packed. Mr x Nc vectors of partial sums stay in registers: each
// loaded vector of A serves Nc columns and each of B serves Mr rows, and the Mr x Nc FMA chains
// are independent, so the loop is bound by loads, not FMA latency.
// This call covers k0..k1. Unless it is the whole of K, the vectors of partial sums are kept
// between the K blocks in part (vector (r, c) at part + r * prs + c * kLanes), so every lane
// adds its products in K order and the lanes are reduced once, in a fixed order: the result
// is the same for any K block and thread count.
template <int Mr, int Nc>
void dot_block(int64_t k0, int64_t k1, int64_t K, float alpha, View a, View b, float beta, float* C,
               int64_t rsc, int64_t csc, int64_t j, float* part, int64_t prs) {
  constexpr int L = kLanes;
  alignas(64) float acc[Mr][Nc][L] = {};
  if (k0 > 0)
    for (int r = 0; r < Mr; ++r)
      for (int c = 0; c < Nc; ++c) std::memcpy(acc[r][c], part + r * prs + c * L, sizeof acc[r][c]);
  const int64_t kv = k1 < K ? k1 : k0 + (k1 - k0) / L * L;  // whole vectors; the rest at the end
#if defined(__AVX512F__)
  // Intrinsics where the generic loop has more than 8 accumulator arrays: GCC keeps only about
  // 8 of them in registers. At 8 or fewer its loop is the faster (one row: 41 against 38
  // GFLOP/s at 1 x 10 x 8192).
  constexpr bool kIntrinsics = Mr * Nc > 8;
#else
  constexpr bool kIntrinsics = false;
#endif
  if constexpr (kIntrinsics) {
#if defined(__AVX512F__)
    __m512 s[Mr][Nc];
    for (int r = 0; r < Mr; ++r)
      for (int c = 0; c < Nc; ++c) s[r][c] = _mm512_load_ps(acc[r][c]);
    for (int64_t k = k0; k < kv; k += L) {
      __m512 av[Mr];
      for (int r = 0; r < Mr; ++r) av[r] = _mm512_loadu_ps(a.at(r, k));
      for (int c = 0; c < Nc; ++c) {
        const __m512 bv = _mm512_loadu_ps(b.at(k, j + c));
        for (int r = 0; r < Mr; ++r) s[r][c] = _mm512_fmadd_ps(av[r], bv, s[r][c]);
      }
    }
    for (int r = 0; r < Mr; ++r)
      for (int c = 0; c < Nc; ++c) _mm512_store_ps(acc[r][c], s[r][c]);
#endif
  } else {
    for (int64_t k = k0; k < kv; k += L)
      for (int c = 0; c < Nc; ++c)
        for (int r = 0; r < Mr; ++r) {
          const float* ar = a.at(r, k);
          const float* bc = b.at(k, j + c);
#pragma omp simd
          for (int l = 0; l < L; ++l) {
#if defined(__FMA__)
            // Fused, as the intrinsics: a row's sums must not depend on the size of the block
            // that computed it (predict at batch 3 equals the forward at 7), and an -O1 build
            // does not fuse a * b + c by itself.
            acc[r][c][l] = std::fma(ar[l], bc[l], acc[r][c][l]);
#else
            acc[r][c][l] += ar[l] * bc[l];
#endif
          }
        }
  }
  if (k1 < K) {
    for (int r = 0; r < Mr; ++r)
      for (int c = 0; c < Nc; ++c) std::memcpy(part + r * prs + c * L, acc[r][c], sizeof acc[r][c]);
    return;
  }
  for (int r = 0; r < Mr; ++r)
    for (int c = 0; c < Nc; ++c) {
      const float* ar = a.at(r, 0);
      const float* bc = b.at(0, j + c);
      float tail = 0.0f;
      for (int64_t t = kv; t < K; ++t) tail += ar[t] * bc[t];
      for (int w = L / 2; w >= 1; w /= 2)  // pairwise: a fixed, balanced summation order
        for (int l = 0; l < w; ++l) acc[r][c][l] += acc[r][c][l + w];
      float* cp = C + r * rsc + (j + c) * csc;
      const float v = alpha * (acc[r][c][0] + tail);
      *cp = beta == 0.0f ? v : v + beta * *cp;
    }
}

// Column c's vectors in a row of the partial sums, when there are any (one K block has none).
inline float* part_at(float* part, int64_t c) {
  return part ? part + c * kLanes : nullptr;
}

// dot_block over the columns j0..j1, Nc at a time, then the last few columns in halving
// blocks, so that they too keep several FMA chains in flight.
template <int Mr, int Nc>
void dot_columns(int64_t k0, int64_t k1, int64_t K, float alpha, View a, View b, float beta,
                 float* C, int64_t rsc, int64_t csc, int64_t j0, int64_t j1, float* part,
                 int64_t prs) {
  int64_t j = j0;
  for (; j + Nc <= j1; j += Nc)
    dot_block<Mr, Nc>(k0, k1, K, alpha, a, b, beta, C, rsc, csc, j, part_at(part, j - j0), prs);
  if constexpr (Nc > 1)
    dot_columns<Mr, Nc / 2>(k0, k1, K, alpha, a, b, beta, C, rsc, csc, j, j1, part_at(part, j - j0),
                            prs);
}

template <int Mr>
void dot_columns(int64_t k0, int64_t k1, int64_t K, float alpha, View a, View b, float beta,
                 float* C, int64_t rsc, int64_t csc, int64_t j0, int64_t j1, float* part,
                 int64_t prs) {
  dot_columns<Mr, dot_nc<Mr>()>(k0, k1, K, alpha, a, b, beta, C, rsc, csc, j0, j1, part, prs);
}

thread_local Scratch tls_dot;  // (rows, columns, kLanes) partial sums between K blocks

// C rows i0..i1, columns j0..j1: K block by K block, each over every row block of 4.
void dot_products(int64_t i0, int64_t i1, int64_t K, float alpha, View a, View b, float beta,
                  float* C, int64_t rsc, int64_t csc, int64_t j0, int64_t j1) {
  // One block of rows reuses nothing from L1: it streams K whole (blocks cost M = 1 10%).
  const int64_t kb = i1 - i0 > 4 ? kDotKB : K;
  const int64_t prs = (j1 - j0) * kLanes;
  float* part = K > kb ? tls_dot.get((i1 - i0) * prs) : nullptr;
  for (int64_t k0 = 0; k0 < K; k0 += kb) {
    const int64_t k1 = std::min(K, k0 + kb);
    for (int64_t i = i0; i < i1; i += 4) {
      const View ai{a.at(i, 0), a.rs, a.cs};
      float* ci = C + i * rsc;
      float* pi = part_at(part, (i - i0) * (j1 - j0));
      switch (std::min<int64_t>(i1 - i, 4)) {
        case 1:
          dot_columns<1>(k0, k1, K, alpha, ai, b, beta, ci, rsc, csc, j0, j1, pi, prs);
          break;
        case 2:
          dot_columns<2>(k0, k1, K, alpha, ai, b, beta, ci, rsc, csc, j0, j1, pi, prs);
          break;
        case 3:
          dot_columns<3>(k0, k1, K, alpha, ai, b, beta, ci, rsc, csc, j0, j1, pi, prs);
          break;
        default:
          dot_columns<4>(k0, k1, K, alpha, ai, b, beta, ci, rsc, csc, j0, j1, pi, prs);
      }
    }
  }
}

}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.0f) {
    scale_c(M, N, beta, C, ldc);
    return;
  }
  View a = trans_a ? View{A, 1, lda} : View{A, lda, 1};  // op(A) (M, K)
  View b = trans_b ? View{B, 1, ldb} : View{B, ldb, 1};  // op(B) (K, N)
  int64_t rsc = ldc, csc = 1;
  if (a.cs == 1 && b.rs == 1 && gemm_takes_dots(M, N, K)) {
    // Each block of 4 rows reads all of B: the work that pays for threads is counted per block.
    int nt = (M + 3) / 4 * N * K < kParallelMinWork / 4 ? 1 : available_threads();
    if (nt > 1 && M >= 8 * int64_t(nt)) {
      // Rows are split across threads in blocks of 4, each thread doing all of K.
      run_items(nt, nt, [&](int64_t t) {
        const int64_t blocks = (M + 3) / 4;
        dot_products(std::min(M, blocks * t / nt * 4), std::min(M, blocks * (t + 1) / nt * 4), K,
                     alpha, a, b, beta, C, rsc, csc, 0, N);
      });
      return;
    }
    // Columns are split across threads, each column's dots done by one thread.
    nt = int(std::min<int64_t>(nt, N));
    if (nt <= 1) return dot_products(0, M, K, alpha, a, b, beta, C, rsc, csc, 0, N);
    run_items(nt, nt, [&](int64_t t) {
      dot_products(0, M, K, alpha, a, b, beta, C, rsc, csc, N * t / nt, N * (t + 1) / nt);
    });
    return;
  }
  // Work on C^T = op(B)^T op(A)^T when that pads much less (N small, M large). By at least a
  // quarter: swapped, the larger operand is packed as A, read across its rows, and that costs
  // more than a little padding (x (32, 784) W^T (784, 300) took 110 us swapped for 5% less
  // padding, against 2 x 43 us for two 16-row halves).
  if (4 * round_up(N, MR) * round_up(M, NR) < 3 * round_up(M, MR) * round_up(N, NR)) {
    std::swap(M, N);
    std::swap(a, b);
    std::swap(a.rs, a.cs);
    std::swap(b.rs, b.cs);
    std::swap(rsc, csc);
  }

  int nt = M * N * K < kParallelMinWork ? 1 : available_threads();
  if (nt <= 1) {
    gemm_serial(M, N, K, alpha, a, b, beta, C, rsc, csc);
    return;
  }
  // Give each thread a slab of C along N or along M, or, when C has too few tiles for that
  // (small M and N, long K), a slice of K: each thread then computes a partial product and
  // the partials are summed in thread order, so the result is deterministic for a fixed
  // thread count. Pick whichever leaves the busiest thread the least work.
  int64_t n_panels = (N + NR - 1) / NR, m_panels = (M + MR - 1) / MR;
  int64_t cost_n = work(M, (n_panels + nt - 1) / nt * NR, K);
  int64_t cost_m = work((m_panels + nt - 1) / nt * MR, N, K);
  int64_t cost_k = work(M, N, round_up((K + nt - 1) / nt, KC)) + M * N * nt;
  if (cost_n <= cost_m && cost_n <= cost_k) {
    run_items(nt, nt, [&](int64_t t) {
      int64_t j0 = split_at(N, nt, int(t), NR), j1 = split_at(N, nt, int(t) + 1, NR);
      if (j1 > j0)
        gemm_serial(M, j1 - j0, K, alpha, a, View{b.at(0, j0), b.rs, b.cs}, beta, C + j0 * csc, rsc,
                    csc);
    });
  } else if (cost_m <= cost_k) {
    run_items(nt, nt, [&](int64_t t) {
      int64_t i0 = split_at(M, nt, int(t), MR), i1 = split_at(M, nt, int(t) + 1, MR);
      if (i1 > i0)
        gemm_serial(i1 - i0, N, K, alpha, View{a.at(i0, 0), a.rs, a.cs}, b, beta, C + i0 * rsc, rsc,
                    csc);
    });
  } else {
    // Slice t's (M, N) partial product at partial + t * M * N, row stride N: the caller's
    // buffer, since any thread may run any slice.
    float* partial = tls_partial.get(nt * M * N);
    run_items(nt, nt, [&](int64_t t) {
      int64_t k0 = split_at(K, nt, int(t), KC), k1 = split_at(K, nt, int(t) + 1, KC);
      float* part = partial + t * M * N;
      if (k1 > k0)
        gemm_serial(M, N, k1 - k0, alpha, View{a.at(0, k0), a.rs, a.cs},
                    View{b.at(k0, 0), b.rs, b.cs}, 0.0f, part, N, 1);
      else
        std::memset(part, 0, M * N * sizeof(float));
    });
    // Rows of C are split across threads; every element sums partials in slice order.
    run_items(nt, nt, [&](int64_t t) {
      for (int64_t i = M * t / nt; i < M * (t + 1) / nt; i++)
        for (int64_t j = 0; j < N; j++) {
          float s = 0.0f;
          for (int u = 0; u < nt; u++) s += partial[u * M * N + i * N + j];
          float* p = C + i * rsc + j * csc;
          *p = beta == 0.0f ? s : s + beta * *p;
        }
    });
  }
}

int64_t packed_b_floats(int64_t K, int64_t N) {
  return K * round_up(N, NR);
}

void pack_b_whole(bool trans_b, int64_t K, int64_t N, const float* B, int64_t ldb, float* dst) {
  const View b = trans_b ? View{B, 1, ldb} : View{B, ldb, 1};  // op(B) (K, N)
  const int64_t np = round_up(N, NR);
  for (int64_t pc = 0; pc < K; pc += KC)
    pack_b(View{b.at(pc, 0), b.rs, b.cs}, std::min(KC, K - pc), N, dst + pc * np);
}

void gemm_prepacked(bool trans_a, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                    const float* pb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) return scale_c(M, N, beta, C, ldc);
  const View a = trans_a ? View{A, 1, lda} : View{A, lda, 1};  // op(A) (M, K)
  const View unused{nullptr, 0, 0};
  const int64_t np = round_up(N, NR);
  const int nt = M * N * K < kParallelMinWork ? 1 : available_threads();
  if (nt <= 1) {
    const PrepackedB pre{pb, np, 0};
    return gemm_serial(M, N, K, 1.0f, a, unused, beta, C, ldc, 1, &pre);
  }
  // Slabs of C along N or along M, as gemm splits them (not along K: a caller whose C has too
  // few tiles for that takes gemm's dot products).
  const int64_t n_panels = np / NR, m_panels = (M + MR - 1) / MR;
  if (work(M, (n_panels + nt - 1) / nt * NR, K) <= work((m_panels + nt - 1) / nt * MR, N, K)) {
    run_items(nt, nt, [&](int64_t t) {
      const int64_t j0 = split_at(N, nt, int(t), NR), j1 = split_at(N, nt, int(t) + 1, NR);
      const PrepackedB slab{pb, np, j0};
      if (j1 > j0) gemm_serial(M, j1 - j0, K, 1.0f, a, unused, beta, C + j0, ldc, 1, &slab);
    });
  } else {
    const PrepackedB pre{pb, np, 0};
    run_items(nt, nt, [&](int64_t t) {
      const int64_t i0 = split_at(M, nt, int(t), MR), i1 = split_at(M, nt, int(t) + 1, MR);
      if (i1 > i0)
        gemm_serial(i1 - i0, N, K, 1.0f, View{a.at(i0, 0), a.rs, a.cs}, unused, beta, C + i0 * ldc,
                    ldc, 1, &pre);
    });
  }
}

}  // namespace sprig::cpu::SPRIG_GEMM_ISA
