// backends/cpu/gemm_bf16.cpp — gemm_bf16's two routes: a VDPBF16PS microkernel over packed
// operands, and widening to float32 for gemm_f32; the run-time choice between them.
//
// The VDPBF16PS route packs op(A) as rows of k-pairs (one 32-bit word = two consecutive bf16 of
// a row, broadcast to all lanes) and op(B) as 16-column panels of k-pairs (32 bf16 per pair
// row, the layout VDPBF16PS multiplies lane by lane): lane j of
//   acc = vdpbf16ps(acc, broadcast(a[i][2p], a[i][2p+1]), (b[2p][j], b[2p+1][j]) for j in 0..15)
// gains a[i][2p] b[2p][j] + a[i][2p+1] b[2p+1][j]. An odd k is padded with a zero pair half,
// n with zero columns that are never stored. k is blocked (kKcPairs) so that one panel block
// stays in L1 while a tile of kMr rows x 32 columns (2 kMr rows x 16 on a single panel) is
// accumulated in 16 registers. gemm_bf16_packed runs the same tiles on operands its caller
// packed, and can round the result to bf16 (bias, relu) as the tile stores it.
// Whole vectors are loaded and stored without masks: masked loads were measured to stall on this
// repository's AMD EPYC (Zen 5, KVM) where plain ones do not.
#include "backends/cpu/gemm_bf16.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "backends/cpu/bf16_simd.h"
#include "backends/cpu/gemm.h"
#include "ops/kernels/activation.h"
#include "ops/kernels/half.h"
#include "parity/error.h"

namespace parity {
namespace cpu {
namespace {

constexpr int64_t kPanelColumns = 16;  // floats in a zmm register: the columns of one B panel
constexpr int kMr = 8;                 // rows of a microkernel tile (8 x 2 accumulators; 16 x 1 on one panel)
constexpr int64_t kKcPairs = 256;      // k-pairs per block: a 32-column panel block is 32 KiB

int64_t align64(int64_t bytes) { return (bytes + 63) / 64 * 64; }
int64_t pairs_of(int64_t k) { return (k + 1) / 2; }
int64_t panels_of(int64_t n) { return (n + kPanelColumns - 1) / kPanelColumns; }

// Scratch of the VDPBF16PS route: packed A, then packed B.
int64_t packed_a_bytes(int64_t m, int64_t k) { return align64(m * pairs_of(k) * 4); }
int64_t packed_b_bytes(int64_t n, int64_t k) { return align64(panels_of(n) * pairs_of(k) * kPanelColumns * 4); }
// Scratch of the conversion route: op(A) and op(B) as float32, then gemm_f32's packing space.
int64_t widened_bytes(int64_t rows, int64_t cols) { return align64(rows * cols * 4); }

// The AVX512-BF16 code: each function compiled for those instructions only (so the binary runs
// on CPUs without them), and called only after the CPU check.
#define PARITY_AVX512_BF16 __attribute__((target("avx512f,avx512bf16,avx512vl,avx512bw")))
// GCC 12 reports -Wmaybe-uninitialized inside its own AVX-512 intrinsics (the
// _mm512_undefined idiom, as in gemm.cpp); that is not our code, so it is silenced here alone.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

// Two rows of bf16 interleaved into pairs: lane j = row0[j] | row1[j] << 16 for j < width
// <= 16 (row1 null: zeros, for the last pair of an odd k), zero beyond width.
// 16 bf16 of a row (zero past width): a plain load when all 16 are wanted, since masked loads
// stall on AMD Zen.
PARITY_AVX512_BF16 __m256i load16(const uint16_t* row, int64_t width) {
  if (width >= 16) return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row));
  return _mm256_maskz_loadu_epi16(static_cast<__mmask16>((1u << width) - 1u), row);
}

PARITY_AVX512_BF16 __m512i interleave16(const uint16_t* row0, const uint16_t* row1, int64_t width) {
  const __m512i lo = _mm512_cvtepu16_epi32(load16(row0, width));
  const __m512i hi = row1 ? _mm512_cvtepu16_epi32(load16(row1, width)) : _mm512_setzero_si512();
  return _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
}

// The pairs p0 .. p0+15 of a row of k bf16 (zero past k): 32 bf16, one load.
PARITY_AVX512_BF16 __m512i pairs16(const uint16_t* row, int64_t k, int64_t p0) {
  const int64_t count = std::min<int64_t>(32, k - 2 * p0);
  if (count >= 32) return _mm512_loadu_si512(row + 2 * p0);
  return _mm512_maskz_loadu_epi16(static_cast<__mmask32>((1u << count) - 1u), row + 2 * p0);
}

// In place: v[j] lane q becomes v[q] lane j (16 x 16 32-bit words).
PARITY_AVX512_BF16 void transpose16x16(__m512i v[16]) {
  __m512i a[16], b[16];
  for (int i = 0; i < 16; i += 2) {  // lane L of a[i] / a[i+1]: rows i, i+1 at columns 4L..4L+1 / 4L+2..4L+3
    a[i] = _mm512_unpacklo_epi32(v[i], v[i + 1]);
    a[i + 1] = _mm512_unpackhi_epi32(v[i], v[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {  // lane L of b[i + q]: rows i..i+3 of column 4L + q
    b[i] = _mm512_unpacklo_epi64(a[i], a[i + 2]);
    b[i + 1] = _mm512_unpackhi_epi64(a[i], a[i + 2]);
    b[i + 2] = _mm512_unpacklo_epi64(a[i + 1], a[i + 3]);
    b[i + 3] = _mm512_unpackhi_epi64(a[i + 1], a[i + 3]);
  }
  for (int q = 0; q < 4; ++q) {  // column 4L + q: lane L of b[q], b[4 + q], b[8 + q], b[12 + q]
    const __m512i u0 = _mm512_shuffle_i32x4(b[q], b[4 + q], 0x44), u1 = _mm512_shuffle_i32x4(b[q], b[4 + q], 0xEE);
    const __m512i u2 = _mm512_shuffle_i32x4(b[8 + q], b[12 + q], 0x44);
    const __m512i u3 = _mm512_shuffle_i32x4(b[8 + q], b[12 + q], 0xEE);
    v[q] = _mm512_shuffle_i32x4(u0, u2, 0x88);
    v[4 + q] = _mm512_shuffle_i32x4(u0, u2, 0xDD);
    v[8 + q] = _mm512_shuffle_i32x4(u1, u3, 0x88);
    v[12 + q] = _mm512_shuffle_i32x4(u1, u3, 0xDD);
  }
}

// a_packed[i * pairs + p] = op(A)[i][2p] | op(A)[i][2p+1] << 16, zero past k.
PARITY_AVX512_BF16 void pack_a(int64_t m, int64_t k, const GemmOperandBf16& a, uint32_t* a_packed) {
  const int64_t pairs = pairs_of(k);
  if (!a.transposed) {  // a row already holds its pairs in order
    for (int64_t i = 0; i < m; ++i) {
      uint32_t* out = a_packed + i * pairs;
      std::memcpy(out, a.data + i * a.stride, sizeof(uint16_t) * k);
      if (k % 2) out[pairs - 1] &= 0xFFFFu;
    }
    return;
  }
  // Stored [k, m]: stored rows 2p and 2p+1 interleaved give pair p of 16 rows of op(A) at once;
  // 16 such pairs transposed give 16 pairs of each of those rows.
  for (int64_t i0 = 0; i0 < m; i0 += 16) {
    const int64_t rows = std::min<int64_t>(16, m - i0);
    for (int64_t p0 = 0; p0 < pairs; p0 += 16) {
      const int64_t count = std::min<int64_t>(16, pairs - p0);
      __m512i v[16];
      for (int64_t q = 0; q < 16; ++q) {
        const int64_t p = p0 + q;
        if (q >= count) {
          v[q] = _mm512_setzero_si512();
          continue;
        }
        const uint16_t* row0 = a.data + 2 * p * a.stride + i0;
        v[q] = interleave16(row0, 2 * p + 1 < k ? row0 + a.stride : nullptr, rows);
      }
      transpose16x16(v);
      for (int64_t r = 0; r < rows; ++r)
        _mm512_mask_storeu_epi32(a_packed + (i0 + r) * pairs + p0, static_cast<__mmask16>((1u << count) - 1u), v[r]);
    }
  }
}

// b_packed[(panel * pairs + p) * 16 + j] = op(B)[2p][16 panel + j] | op(B)[2p+1][16 panel + j] << 16,
// zero outside op(B).
PARITY_AVX512_BF16 void pack_b(int64_t n, int64_t k, const GemmOperandBf16& b, uint32_t* b_packed) {
  const int64_t pairs = pairs_of(k), panels = panels_of(n);
  if (!b.transposed) {  // stored [k, n]: rows 2p and 2p+1 interleaved, 16 columns at a time
    for (int64_t p = 0; p < pairs; ++p) {
      const uint16_t* row0 = b.data + 2 * p * b.stride;
      const uint16_t* row1 = 2 * p + 1 < k ? row0 + b.stride : nullptr;
      for (int64_t panel = 0; panel < panels; ++panel) {
        const int64_t j0 = panel * kPanelColumns, width = std::min(kPanelColumns, n - j0);
        _mm512_storeu_si512(b_packed + (panel * pairs + p) * kPanelColumns,
                            interleave16(row0 + j0, row1 ? row1 + j0 : nullptr, width));
      }
    }
    return;
  }
  // Stored [n, k]: a column's pairs are adjacent in its stored row; 16 pairs of 16 columns are
  // loaded as they are stored and transposed into 16 packed pair rows.
  for (int64_t panel = 0; panel < panels; ++panel) {
    const int64_t j0 = panel * kPanelColumns, width = std::min(kPanelColumns, n - j0);
    for (int64_t p0 = 0; p0 < pairs; p0 += 16) {
      __m512i v[16];
      for (int64_t j = 0; j < 16; ++j)
        v[j] = j < width ? pairs16(b.data + (j0 + j) * b.stride, k, p0) : _mm512_setzero_si512();
      transpose16x16(v);
      for (int64_t q = 0; q < std::min<int64_t>(16, pairs - p0); ++q)
        _mm512_storeu_si512(b_packed + (panel * pairs + p0 + q) * kPanelColumns, v[q]);
    }
  }
}

// Where a tile's sums go: C (added to it when add_to_c), or, on the last k block when y is set,
// y = bf16(relu?(C + sums + bias)) as round_row_bf16 rounds (a bias of +0 when none, as there).
struct TileOut {
  float* c;
  int64_t ldc;
  bool add_to_c;
  uint16_t* y;  // null: C
  int64_t ldy;
  const float* bias;  // of the tile's first row
  bool relu;
  int64_t column;  // the tile's first product column (for y_pitch)
  int64_t y_pitch, y_width;
};

// Stores 16 bf16 lanes (`mask`: those inside the product) of product columns j0 .. j0 + 15 to
// y's row, dropping the columns at or past y_width of each image row (y_pitch >= 16: the lanes
// cross at most one image row).
PARITY_AVX512_BF16 inline __attribute__((always_inline)) void store_y_rows(uint16_t* y_row, int64_t j0, int64_t pitch, int64_t width, __mmask16 mask,
                                     __m256i v) {
  const int64_t row = j0 / pitch, q0 = j0 % pitch;
  const int64_t first = q0 < width ? std::min<int64_t>(16, width - q0) : 0;  // lanes [0, first) in this row
  if (first > 0) _mm256_mask_storeu_epi16(y_row + row * width + q0, static_cast<__mmask16>(mask & lanes16(first)), v);
  const int64_t next = pitch - q0;  // the lane where the next image row begins
  if (next < 16) {
    const __mmask16 lanes = static_cast<__mmask16>(lanes16(std::min<int64_t>(16, next + width)) & ~lanes16(next) & mask);
    // lane l goes to position l - next of row + 1; masked-off lanes (below next) are not written
    if (lanes) _mm256_mask_storeu_epi16(y_row + (row + 1) * width - next, lanes, v);
  }
}

// C[rows, columns] (+)= a_packed rows x b panels over pairs [p0, p1): `rows` <= kMr, `panels`
// (1 or 2) panels of 16 columns, `columns` of them stored. Sums start from zero and are added
// to C once, so a tile is accumulated in the same order whatever C held.
template <int Rows, int Panels>
PARITY_AVX512_BF16 void tile(const uint32_t* a_packed, int64_t a_pairs, const uint32_t* b_panel, int64_t b_panel_stride,
                             int64_t p0, int64_t p1, int64_t columns, const TileOut& out) {
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
  const __m512 zero = _mm512_setzero_ps();
  for (int v = 0; v < Panels; ++v) {
    const int64_t width = std::min<int64_t>(kPanelColumns, columns - v * kPanelColumns);
    const __mmask16 mask = static_cast<__mmask16>((1u << width) - 1u);
    for (int r = 0; r < Rows; ++r) {
      float* c = out.c + r * out.ldc + v * kPanelColumns;
      __m512 sum = acc[r][v];
      if (out.add_to_c) sum = _mm512_add_ps(width == 16 ? _mm512_loadu_ps(c) : _mm512_maskz_loadu_ps(mask, c), sum);
      if (!out.y) {
        if (width == 16)
          _mm512_storeu_ps(c, sum);
        else
          _mm512_mask_storeu_ps(c, mask, sum);
        continue;
      }
      sum = _mm512_add_ps(sum, _mm512_set1_ps(out.bias ? out.bias[r] : 0.0f));
      if (out.relu) sum = _mm512_mask_mov_ps(sum, _mm512_cmp_ps_mask(sum, zero, _CMP_LE_OQ), zero);  // relu_f32
      if (out.y_pitch > 0)
        store_y_rows(out.y + r * out.ldy, out.column + v * kPanelColumns, out.y_pitch, out.y_width, mask,
                     round_bf16x16(sum));
      else
        store_bf16x16(out.y + r * out.ldy + v * kPanelColumns, mask, sum);
    }
  }
}

// rows <= kMr (two panels) or 2 kMr (one panel: 16 accumulators either way, enough to hide
// VDPBF16PS's latency when n is a single panel).
template <int Panels>
PARITY_AVX512_BF16 void tile_rows(int rows, const uint32_t* a_packed, int64_t a_pairs, const uint32_t* b_panel,
                                  int64_t b_panel_stride, int64_t p0, int64_t p1, int64_t columns, const TileOut& out) {
  // clang-format off
  switch (rows) {
#define PARITY_TILE_CASE(R) \
  case R: tile<R, Panels>(a_packed, a_pairs, b_panel, b_panel_stride, p0, p1, columns, out); break;
    PARITY_TILE_CASE(1) PARITY_TILE_CASE(2) PARITY_TILE_CASE(3) PARITY_TILE_CASE(4)
    PARITY_TILE_CASE(5) PARITY_TILE_CASE(6) PARITY_TILE_CASE(7) PARITY_TILE_CASE(8)
#undef PARITY_TILE_CASE
  }
  // clang-format on
}

template <>
PARITY_AVX512_BF16 void tile_rows<1>(int rows, const uint32_t* a_packed, int64_t a_pairs, const uint32_t* b_panel,
                                     int64_t b_panel_stride, int64_t p0, int64_t p1, int64_t columns, const TileOut& out) {
  // clang-format off
  switch (rows) {
#define PARITY_TILE_CASE(R) \
  case R: tile<R, 1>(a_packed, a_pairs, b_panel, b_panel_stride, p0, p1, columns, out); break;
    PARITY_TILE_CASE(1) PARITY_TILE_CASE(2) PARITY_TILE_CASE(3) PARITY_TILE_CASE(4)
    PARITY_TILE_CASE(5) PARITY_TILE_CASE(6) PARITY_TILE_CASE(7) PARITY_TILE_CASE(8)
    PARITY_TILE_CASE(9) PARITY_TILE_CASE(10) PARITY_TILE_CASE(11) PARITY_TILE_CASE(12)
    PARITY_TILE_CASE(13) PARITY_TILE_CASE(14) PARITY_TILE_CASE(15) PARITY_TILE_CASE(16)
#undef PARITY_TILE_CASE
  }
  // clang-format on
}

// The product on packed operands: k in blocks of kKcPairs (each block's sums added into C),
// then 32-column strips of B, then tiles of kMr rows.
PARITY_AVX512_BF16 void gemm_packed_avx512_bf16(int64_t m, int64_t n, int64_t k, const uint32_t* a_packed,
                                                const uint32_t* b_packed, const GemmBf16Output& o) {
  const int64_t pairs = pairs_of(k);
  const int64_t panel_stride = pairs * kPanelColumns;  // pairs from one panel to the next
  for (int64_t p0 = 0; p0 < pairs; p0 += kKcPairs) {
    const int64_t p1 = std::min(pairs, p0 + kKcPairs);
    const bool last_block = p1 == pairs;
    for (int64_t j0 = 0; j0 < n; j0 += 2 * kPanelColumns) {
      const int64_t columns = std::min(2 * kPanelColumns, n - j0);
      const uint32_t* b_panel = b_packed + (j0 / kPanelColumns) * panel_stride;
      const int64_t tile_rows_max = columns > kPanelColumns ? kMr : 2 * kMr;
      for (int64_t i0 = 0; i0 < m; i0 += tile_rows_max) {
        const int rows = static_cast<int>(std::min<int64_t>(tile_rows_max, m - i0));
        const TileOut out{o.c + i0 * o.ldc + j0,
                          o.ldc,
                          o.accumulate || p0 > 0,
                          o.y && last_block ? o.y + i0 * o.ldy + (o.y_pitch > 0 ? 0 : j0) : nullptr,
                          o.ldy,
                          o.bias ? o.bias + i0 : nullptr,
                          o.relu,
                          j0,
                          o.y_pitch,
                          o.y_width};
        const uint32_t* a_rows = a_packed + i0 * pairs;
        if (columns > kPanelColumns)
          tile_rows<2>(rows, a_rows, pairs, b_panel, panel_stride, p0, p1, columns, out);
        else
          tile_rows<1>(rows, a_rows, pairs, b_panel, panel_stride, p0, p1, columns, out);
      }
    }
  }
}

PARITY_AVX512_BF16 void gemm_avx512_bf16(int64_t m, int64_t n, int64_t k, const GemmOperandBf16& a,
                                         const GemmOperandBf16& b, float* c, int64_t ldc, bool accumulate,
                                         void* scratch) {
  uint32_t* a_packed = static_cast<uint32_t*>(scratch);
  uint32_t* b_packed = reinterpret_cast<uint32_t*>(static_cast<char*>(scratch) + packed_a_bytes(m, k));
  pack_a(m, k, a, a_packed);
  pack_b(n, k, b, b_packed);
  GemmBf16Output out{c, ldc, accumulate};
  gemm_packed_avx512_bf16(m, n, k, a_packed, b_packed, out);
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#undef PARITY_AVX512_BF16

// op(X) widened to float32, kept in its own orientation (so gemm_f32 reads it as before).
GemmOperand widen(int64_t rows, int64_t cols, const GemmOperandBf16& x, float* out) {
  const int64_t stored_rows = x.transposed ? cols : rows, stored_cols = x.transposed ? rows : cols;
  for (int64_t r = 0; r < stored_rows; ++r)
    for (int64_t q = 0; q < stored_cols; ++q)
      out[r * stored_cols + q] = kernels::bf16_bits_to_float(x.data[r * x.stride + q]);
  return {out, stored_cols, x.transposed};
}

void gemm_f32_conversion(int64_t m, int64_t n, int64_t k, const GemmOperandBf16& a, const GemmOperandBf16& b, float* c,
                         int64_t ldc, bool accumulate, void* scratch) {
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

// The kernel's packing also uses AVX512-BW and -VL (16-bit masked loads), which every CPU with
// AVX512-BF16 has; checked anyway, since the route may not run where one is missing.
bool cpu_has_avx512_bf16() {
  return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl");
}

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

namespace {
void require_avx512_bf16(const char* what) {
  if (!cpu_has_avx512_bf16())
    throw Error(ErrorKind::backend,
                std::string(what) + ": the avx512_bf16 route needs a CPU with AVX512-BF16, which this one lacks");
}
}  // namespace

void pack_a_bf16(int64_t m, int64_t k, GemmOperandBf16 a, uint32_t* a_packed) {
  require_avx512_bf16("pack_a_bf16");
  pack_a(m, k, a, a_packed);
}

void pack_b_bf16(int64_t n, int64_t k, GemmOperandBf16 b, uint32_t* b_packed) {
  require_avx512_bf16("pack_b_bf16");
  pack_b(n, k, b, b_packed);
}

void gemm_bf16_packed(int64_t m, int64_t n, int64_t k, const uint32_t* a_packed, const uint32_t* b_packed,
                      const GemmBf16Output& out) {
  require_avx512_bf16("gemm_bf16_packed");
  if (out.y && out.y_pitch != 0 && (out.y_pitch < 16 || out.y_width < 0 || out.y_width > out.y_pitch))
    throw Error(ErrorKind::invalid_argument, "gemm_bf16_packed: y_pitch must be at least 16 and y_width in [0, y_pitch], got " +
                                                 std::to_string(out.y_pitch) + " and " + std::to_string(out.y_width));
  if (m == 0 || n == 0) return;
  if (k == 0) {  // no pairs: the sums are zero
    if (out.y) {
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          if (out.y_pitch > 0 && j % out.y_pitch >= out.y_width) continue;
          const float v = (out.accumulate ? out.c[i * out.ldc + j] : 0.0f) + (out.bias ? out.bias[i] : 0.0f);
          const int64_t at = out.y_pitch > 0 ? j / out.y_pitch * out.y_width + j % out.y_pitch : j;
          out.y[i * out.ldy + at] = kernels::float_to_bf16_bits(out.relu ? kernels::relu_f32(v) : v);
        }
    } else if (!out.accumulate) {
      for (int64_t i = 0; i < m; ++i) std::memset(out.c + i * out.ldc, 0, sizeof(float) * n);
    }
    return;
  }
  gemm_packed_avx512_bf16(m, n, k, a_packed, b_packed, out);
}

void gemm_bf16(int64_t m, int64_t n, int64_t k, GemmOperandBf16 a, GemmOperandBf16 b, float* c, int64_t ldc,
               bool accumulate, void* scratch, Bf16GemmRoute route) {
  if (route == Bf16GemmRoute::avx512_bf16 && !cpu_has_avx512_bf16())
    throw Error(ErrorKind::backend,
                "gemm_bf16: the avx512_bf16 route needs a CPU with AVX512-BF16, which this one lacks");
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
