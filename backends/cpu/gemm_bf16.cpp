// backends/cpu/gemm_bf16.cpp — gemm_bf16's two routes: a VDPBF16PS microkernel over packed
// operands, and widening to float32 for gemm_f32; the run-time choice between them.
//
// The VDPBF16PS route packs op(A) as rows of k-pairs (one 32-bit word = two consecutive bf16 of
// a row, broadcast to all lanes) and op(B) as 16-column panels of k-pairs (32 bf16 per pair
// row, the layout VDPBF16PS multiplies lane by lane): lane j of
//   acc = vdpbf16ps(acc, broadcast(a[i][2p], a[i][2p+1]), (b[2p][j], b[2p+1][j]) for j in 0..15)
// gains a[i][2p] b[2p][j] + a[i][2p+1] b[2p+1][j]. An odd k is padded with a zero pair half,
// n with zero columns that are never stored. k is blocked (kKcPairs) so that one panel block
// stays in L1 while a tile of kMr rows x 32 columns is accumulated in 16 registers.
#include "backends/cpu/gemm_bf16.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "backends/cpu/gemm.h"
#include "ops/kernels/half.h"
#include "parity/error.h"

namespace parity {
namespace cpu {
namespace {

constexpr int64_t kPanelColumns = 16;  // floats in a zmm register: the columns of one B panel
constexpr int kMr = 8;                 // rows of a microkernel tile (8 x 2 accumulators)
constexpr int64_t kKcPairs = 256;      // k-pairs per block: a 32-column panel block is 32 KiB

int64_t align64(int64_t bytes) { return (bytes + 63) / 64 * 64; }
int64_t pairs_of(int64_t k) { return (k + 1) / 2; }
int64_t panels_of(int64_t n) { return (n + kPanelColumns - 1) / kPanelColumns; }

// Scratch of the VDPBF16PS route: packed A, then packed B.
int64_t packed_a_bytes(int64_t m, int64_t k) { return align64(m * pairs_of(k) * 4); }
int64_t packed_b_bytes(int64_t n, int64_t k) { return align64(panels_of(n) * pairs_of(k) * kPanelColumns * 4); }
// Scratch of the conversion route: op(A) and op(B) as float32, then gemm_f32's packing space.
int64_t widened_bytes(int64_t rows, int64_t cols) { return align64(rows * cols * 4); }

// The AVX512-BF16 code, compiled for those instructions only: called after the CPU check.
// GCC 12 reports -Wmaybe-uninitialized inside its own AVX-512 intrinsics (the
// _mm512_undefined idiom, as in gemm.cpp); that is not our code, so it is silenced here alone.
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bf16,avx512vl,avx512bw")
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

// The pair of bf16 at `p` (p[0] low, p[1] high), as VDPBF16PS reads a 32-bit lane.
uint32_t pair_at(const uint16_t* p) {
  uint32_t word;
  std::memcpy(&word, p, sizeof word);  // little-endian: p[0] in the low half
  return word;
}

// Two rows of bf16 interleaved into pairs: out[j] = row0[j] | row1[j] << 16, j < width <= 16
// (row1 null: zeros, for the last pair of an odd k), zero beyond width.
void interleave16(const uint16_t* row0, const uint16_t* row1, int64_t width, uint32_t* out) {
  const __mmask16 mask = static_cast<__mmask16>((1u << width) - 1u);
  const __m512i lo = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, row0));
  const __m512i hi = row1 ? _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, row1)) : _mm512_setzero_si512();
  _mm512_storeu_si512(out, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
}

// a_packed[i * pairs + p] = op(A)[i][2p] | op(A)[i][2p+1] << 16, zero past k.
void pack_a(int64_t m, int64_t k, const GemmOperandBf16& a, uint32_t* a_packed) {
  const int64_t pairs = pairs_of(k);
  if (!a.transposed) {  // a row already holds its pairs in order
    for (int64_t i = 0; i < m; ++i) {
      uint32_t* out = a_packed + i * pairs;
      std::memcpy(out, a.data + i * a.stride, sizeof(uint16_t) * k);
      if (k % 2) out[pairs - 1] &= 0xFFFFu;
    }
    return;
  }
  for (int64_t p = 0; p < pairs; ++p) {  // stored [k, m]: rows 2p and 2p+1 give pair p of every i
    const uint16_t* row0 = a.data + 2 * p * a.stride;
    const uint16_t* row1 = 2 * p + 1 < k ? row0 + a.stride : nullptr;
    for (int64_t i = 0; i < m; ++i) a_packed[i * pairs + p] = row0[i] | (row1 ? uint32_t{row1[i]} << 16 : 0u);
  }
}

// b_packed[(panel * pairs + p) * 16 + j] = op(B)[2p][16 panel + j] | op(B)[2p+1][16 panel + j] << 16,
// zero outside op(B).
void pack_b(int64_t n, int64_t k, const GemmOperandBf16& b, uint32_t* b_packed) {
  const int64_t pairs = pairs_of(k), panels = panels_of(n);
  if (!b.transposed) {  // stored [k, n]: rows 2p and 2p+1 interleaved, 16 columns at a time
    for (int64_t p = 0; p < pairs; ++p) {
      const uint16_t* row0 = b.data + 2 * p * b.stride;
      const uint16_t* row1 = 2 * p + 1 < k ? row0 + b.stride : nullptr;
      for (int64_t panel = 0; panel < panels; ++panel) {
        const int64_t j0 = panel * kPanelColumns, width = std::min(kPanelColumns, n - j0);
        interleave16(row0 + j0, row1 ? row1 + j0 : nullptr, width, b_packed + (panel * pairs + p) * kPanelColumns);
      }
    }
    return;
  }
  // Stored [n, k]: a column's pairs are adjacent in its stored row.
  for (int64_t panel = 0; panel < panels; ++panel) {
    uint32_t* out = b_packed + panel * pairs * kPanelColumns;
    for (int64_t j = 0; j < kPanelColumns; ++j) {
      const int64_t col = panel * kPanelColumns + j;
      const uint16_t* row = b.data + col * b.stride;
      if (col >= n) {
        for (int64_t p = 0; p < pairs; ++p) out[p * kPanelColumns + j] = 0;
        continue;
      }
      for (int64_t p = 0; p < k / 2; ++p) out[p * kPanelColumns + j] = pair_at(row + 2 * p);
      if (k % 2) out[(pairs - 1) * kPanelColumns + j] = row[k - 1];
    }
  }
}

// C[rows, columns] (+)= a_packed rows x b panels over pairs [p0, p1): `rows` <= kMr, `panels`
// (1 or 2) panels of 16 columns, `columns` of them stored. Sums start from zero and are added
// to C once, so a tile is accumulated in the same order whatever C held.
template <int Rows, int Panels>
void tile(const uint32_t* a_packed, int64_t a_pairs, const uint32_t* b_panel, int64_t b_panel_stride, int64_t p0,
          int64_t p1, float* c, int64_t ldc, int64_t columns, bool add_to_c) {
  __m512 acc[Rows][Panels];
  for (int r = 0; r < Rows; ++r)
    for (int v = 0; v < Panels; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int64_t p = p0; p < p1; ++p) {
    __m512bh b[Panels];
    for (int v = 0; v < Panels; ++v)
      b[v] = (__m512bh)_mm512_loadu_si512(b_panel + v * b_panel_stride + p * kPanelColumns);
    for (int r = 0; r < Rows; ++r) {
      const __m512bh a = (__m512bh)_mm512_set1_epi32(static_cast<int>(a_packed[r * a_pairs + p]));
      for (int v = 0; v < Panels; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], a, b[v]);
    }
  }
  for (int v = 0; v < Panels; ++v) {
    const int64_t width = std::min<int64_t>(kPanelColumns, columns - v * kPanelColumns);
    const __mmask16 mask = static_cast<__mmask16>((1u << width) - 1u);
    for (int r = 0; r < Rows; ++r) {
      float* out = c + r * ldc + v * kPanelColumns;
      __m512 sum = acc[r][v];
      if (add_to_c) sum = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, out), sum);
      _mm512_mask_storeu_ps(out, mask, sum);
    }
  }
}

template <int Panels>
void tile_rows(int rows, const uint32_t* a_packed, int64_t a_pairs, const uint32_t* b_panel, int64_t b_panel_stride,
               int64_t p0, int64_t p1, float* c, int64_t ldc, int64_t columns, bool add_to_c) {
  switch (rows) {
#define PARITY_TILE_CASE(R) \
  case R: tile<R, Panels>(a_packed, a_pairs, b_panel, b_panel_stride, p0, p1, c, ldc, columns, add_to_c); break;
    PARITY_TILE_CASE(1) PARITY_TILE_CASE(2) PARITY_TILE_CASE(3) PARITY_TILE_CASE(4)
    PARITY_TILE_CASE(5) PARITY_TILE_CASE(6) PARITY_TILE_CASE(7) PARITY_TILE_CASE(8)
#undef PARITY_TILE_CASE
  }
}

void gemm_avx512_bf16(int64_t m, int64_t n, int64_t k, const GemmOperandBf16& a, const GemmOperandBf16& b, float* c,
                      int64_t ldc, bool accumulate, void* scratch) {
  const int64_t pairs = pairs_of(k);
  uint32_t* a_packed = static_cast<uint32_t*>(scratch);
  uint32_t* b_packed = reinterpret_cast<uint32_t*>(static_cast<char*>(scratch) + packed_a_bytes(m, k));
  pack_a(m, k, a, a_packed);
  pack_b(n, k, b, b_packed);
  const int64_t panel_stride = pairs * kPanelColumns;  // pairs from one panel to the next
  for (int64_t p0 = 0; p0 < pairs; p0 += kKcPairs) {
    const int64_t p1 = std::min(pairs, p0 + kKcPairs);
    const bool add_to_c = accumulate || p0 > 0;
    for (int64_t j0 = 0; j0 < n; j0 += 2 * kPanelColumns) {
      const int64_t columns = std::min(2 * kPanelColumns, n - j0);
      const uint32_t* b_panel = b_packed + (j0 / kPanelColumns) * panel_stride;
      for (int64_t i0 = 0; i0 < m; i0 += kMr) {
        const int rows = static_cast<int>(std::min<int64_t>(kMr, m - i0));
        const uint32_t* a_rows = a_packed + i0 * pairs;
        float* c_tile = c + i0 * ldc + j0;
        if (columns > kPanelColumns)
          tile_rows<2>(rows, a_rows, pairs, b_panel, panel_stride, p0, p1, c_tile, ldc, columns, add_to_c);
        else
          tile_rows<1>(rows, a_rows, pairs, b_panel, panel_stride, p0, p1, c_tile, ldc, columns, add_to_c);
      }
    }
  }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#pragma GCC pop_options

// op(X) widened to float32, kept in its own orientation (so gemm_f32 reads it as before).
GemmOperand widen(int64_t rows, int64_t cols, const GemmOperandBf16& x, float* out) {
  const int64_t stored_rows = x.transposed ? cols : rows, stored_cols = x.transposed ? rows : cols;
  for (int64_t r = 0; r < stored_rows; ++r)
    for (int64_t q = 0; q < stored_cols; ++q)
      out[r * stored_cols + q] = kernels::bf16_bits_to_float(x.data[r * x.stride + q]);
  return {out, stored_cols, x.transposed};
}

void gemm_f32_conversion(int64_t m, int64_t n, int64_t k, const GemmOperandBf16& a, const GemmOperandBf16& b,
                         float* c, int64_t ldc, bool accumulate, void* scratch) {
  char* bytes = static_cast<char*>(scratch);
  float* a32 = reinterpret_cast<float*>(bytes);
  float* b32 = reinterpret_cast<float*>(bytes + widened_bytes(m, k));
  float* gemm_scratch = reinterpret_cast<float*>(bytes + widened_bytes(m, k) + widened_bytes(k, n));
  gemm_f32(m, n, k, widen(m, k, a, a32), widen(k, n, b, b32), c, ldc, accumulate, gemm_scratch);
}

struct RouteChoice {
  Bf16GemmRoute route;
  std::string why;
};

RouteChoice choose_route() {
  const char* env = std::getenv("PARITY_CPU_BF16");
  const std::string setting = env ? env : "auto";
  if (setting == "convert") return {Bf16GemmRoute::f32_conversion, "PARITY_CPU_BF16=convert"};
  if (setting != "auto")
    throw Error(ErrorKind::invalid_argument,
                "PARITY_CPU_BF16 must be auto or convert (the cpu backend's bf16 GEMM route), got '" + setting + "'");
  if (cpu_has_avx512_bf16()) return {Bf16GemmRoute::avx512_bf16, ""};
  return {Bf16GemmRoute::f32_conversion, "no avx512_bf16"};
}

const RouteChoice& route_choice() {
  static const RouteChoice choice = choose_route();
  return choice;
}

}  // namespace

bool cpu_has_avx512_bf16() { return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512vl"); }

Bf16GemmRoute bf16_gemm_route() { return route_choice().route; }

const char* bf16_gemm_route_name(Bf16GemmRoute route) {
  return route == Bf16GemmRoute::avx512_bf16 ? "avx512_bf16 (vdpbf16ps)" : "f32 conversion";
}

std::string bf16_gemm_route_description() {
  const RouteChoice& choice = route_choice();
  std::string s = bf16_gemm_route_name(choice.route);
  if (!choice.why.empty()) s += " (" + choice.why + ")";
  return s;
}

int64_t gemm_bf16_scratch_bytes(int64_t m, int64_t n, int64_t k) {
  const int64_t packed = packed_a_bytes(m, k) + packed_b_bytes(n, k);
  const int64_t widened = widened_bytes(m, k) + widened_bytes(k, n) + gemm_scratch_floats(m, n, k) * 4;
  return std::max(packed, widened);
}

void gemm_bf16(int64_t m, int64_t n, int64_t k, GemmOperandBf16 a, GemmOperandBf16 b, float* c, int64_t ldc,
               bool accumulate, void* scratch, Bf16GemmRoute route) {
  if (route == Bf16GemmRoute::avx512_bf16 && !cpu_has_avx512_bf16())
    throw Error(ErrorKind::backend, "gemm_bf16: the avx512_bf16 route needs a CPU with AVX512-BF16, which this one lacks");
  if (m == 0 || n == 0 || k == 0) {
    if (!accumulate)
      for (int64_t i = 0; i < m; ++i) std::memset(c + i * ldc, 0, sizeof(float) * n);
    return;
  }
  if (route == Bf16GemmRoute::avx512_bf16)
    gemm_avx512_bf16(m, n, k, a, b, c, ldc, accumulate, scratch);
  else
    gemm_f32_conversion(m, n, k, a, b, c, ldc, accumulate, scratch);
}

}  // namespace cpu
}  // namespace parity
