// Winograd convolutions, for 3x3 kernels at unit stride and dilation with
// enough channels per group.
//
// Forward, F(2x2, 3x3): each 2x2 block of output ("tile") is computed from a
// 4x4 block of input in the Winograd domain: U = G w G^T (per output/input
// channel pair, once per call), V = B^T d B (per input channel and tile),
// M = sum_c U_c . V_c, which for each of the 16 positions xi of the 4x4
// domain is a GEMM M_xi (O/groups x tiles) = U_xi (O/groups x C/groups) @
// V_xi (C/groups x tiles), and y = A^T M A. The GEMMs do 16 multiply-adds per
// tile and channel pair where the direct convolution does 36: 2.25x fewer.
// The transforms are additions and halvings, so small-integer inputs still
// give exact results; otherwise the rounding error is a small multiple of the
// direct sum's.
//
//   G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
//   A^T = [1 1 1 0; 0 1 -1 -1]
//
// Weight gradient, F(3x3, 2x2): per image, group and block of 2x2 output
// tiles, M_xi (O/groups x C/groups) += (G dy G^T)_xi @ (B^T x B)_xi^T over the
// tiles, the 16 sums laid out [group][xi][o][c]; dw = A^T M A at the end with
// A^T = [1 1 1 0; 0 1 -1 0; 0 1 1 -1]. 2.25x fewer multiply-adds than the
// direct sums.
//
// The tile transforms are the ISA's (conv2d_winograd.h); the filter and
// gradient transforms below run once per channel pair and call.
#include <algorithm>
#include <memory>
#include <vector>

#include "core/registry.h"
#include "ops/conv2d/conv2d_internal.h"
#include "ops/conv2d/conv2d_winograd.h"
#include "ops/gemm/gemm.h"

namespace ember::conv2d {
namespace {

thread_local Scratch t_wino_v;
thread_local Scratch t_wino_m;

// u[(r*4 + s) * stride] = (G k G^T)[r][s] of one 3x3 kernel k.
void filter_transform(const float* k, float* u, int64_t stride) {
  float t[4][3];  // G k
  for (int q = 0; q < 3; ++q) {
    t[0][q] = k[q];
    t[1][q] = 0.5f * (k[q] + k[3 + q] + k[6 + q]);
    t[2][q] = 0.5f * (k[q] - k[3 + q] + k[6 + q]);
    t[3][q] = k[6 + q];
  }
  for (int r = 0; r < 4; ++r) {  // (G k) G^T
    const float v[4] = {t[r][0], 0.5f * (t[r][0] + t[r][1] + t[r][2]), 0.5f * (t[r][0] - t[r][1] + t[r][2]),
                        t[r][2]};
    for (int s = 0; s < 4; ++s) u[(r * 4 + s) * stride] = v[s];
  }
}

// d (3x3) = A^T M A of the 4x4 m with m[r][s] at m[(r*4 + s) * stride], the
// weight gradient's output transform.
void gradient_transform(const float* m, int64_t stride, float* d) {
  float mm[4][4], u[3][4];
  for (int xi = 0; xi < 16; ++xi) mm[xi / 4][xi % 4] = m[xi * stride];
  for (int q = 0; q < 4; ++q) {  // A^T M
    u[0][q] = mm[0][q] + mm[1][q] + mm[2][q];
    u[1][q] = mm[1][q] - mm[2][q];
    u[2][q] = mm[1][q] + mm[2][q] - mm[3][q];
  }
  for (int r = 0; r < 3; ++r) {  // (A^T M) A
    d[r * 3 + 0] = u[r][0] + u[r][1] + u[r][2];
    d[r * 3 + 1] = u[r][1] - u[r][2];
    d[r * 3 + 2] = u[r][1] + u[r][2] - u[r][3];
  }
}

// Rows of tiles per block: whole rows of tiles, with V and M near 512 KB each.
int64_t tile_rows_per_block(int64_t cpg, int64_t opg, int64_t th, int64_t tw) {
  return std::clamp<int64_t>((int64_t(8) << 10) / std::max(cpg, opg) / tw, 1, th);
}

// The input rows a block of nti rows of tiles from tile row ti0 reads -- padded
// rows 2*ti0 .. 2*(ti0 + nti) + 1, each wp = 2*tw + 2 wide -- of the cpg
// channel planes at xg, into thread scratch followed by the transforms' slack.
const float* pad_tile_rows(const Geometry& g, const float* xg, int64_t cpg, int64_t ti0, int64_t nti, int64_t wp) {
  const int64_t rows = 2 * nti + 2;
  float* xp = t_plane.get(static_cast<size_t>(cpg * rows * wp + kWinogradSlack));
  for (int64_t c = 0; c < cpg; ++c)
    pad_plane(xg + c * g.h * g.w, g.w, g.h, g.w, g.pt - 2 * ti0, g.pl, rows, wp, xp + c * rows * wp);
  std::fill(xp + cpg * rows * wp, xp + cpg * rows * wp + kWinogradSlack, 0.0f);
  return xp;
}

}  // namespace

void winograd_fwd(const Geometry& g, const float* x, const float* w, const float* bias, bool relu, float* y, Isa isa,
                  int nthreads) {
  const int64_t cpg = g.c / g.groups, opg = g.o / g.groups, P = g.oh * g.ow;
  const int64_t th = (g.oh + 1) / 2, tw = (g.ow + 1) / 2, wp = 2 * tw + 2;
  const WinogradKernels& kern = lookup<WinogradKernels>("conv2d_winograd", isa);
  const int64_t rows_per_block = tile_rows_per_block(cpg, opg, th, tw);
  const int64_t blocks = (th + rows_per_block - 1) / rows_per_block, tb_max = rows_per_block * tw;

  // U_xi per group, [group][xi][o][c], and packed as the GEMM's A.
  const int64_t usize = gemm::packed_a_size(opg, cpg, isa);
  std::unique_ptr<float[]> upacked(new float[static_cast<size_t>(16 * usize * g.groups)]);
  std::vector<float> u(static_cast<size_t>(16 * g.o * cpg));
  for (int64_t grp = 0; grp < g.groups; ++grp) {
    for (int64_t o = 0; o < opg; ++o)
      for (int64_t c = 0; c < cpg; ++c)
        filter_transform(w + ((grp * opg + o) * cpg + c) * 9, u.data() + (grp * 16 * opg + o) * cpg + c, opg * cpg);
    for (int xi = 0; xi < 16; ++xi)
      gemm::pack_a_whole({u.data() + (grp * 16 + xi) * opg * cpg, opg, cpg, cpg, 1}, isa,
                         upacked.get() + (grp * 16 + xi) * usize);
  }

  for_tasks(g.n * g.groups * blocks, nthreads, [&](int64_t task, int) {
    const int64_t b = task % blocks, ng = task / blocks, n = ng / g.groups, grp = ng % g.groups;
    const int64_t ti0 = b * rows_per_block, nti = std::min(th, ti0 + rows_per_block) - ti0, tb = nti * tw;
    const float* xp = pad_tile_rows(g, x + (n * g.c + grp * cpg) * g.h * g.w, cpg, ti0, nti, wp);
    float* v = t_wino_v.get(static_cast<size_t>(16 * cpg * tb_max));
    kern.input(xp, cpg, wp, nti, tw, v);
    // M_xi = U_xi @ V_xi (m has room for the output transform's last partial vector).
    float* m = t_wino_m.get(static_cast<size_t>(16 * opg * tb_max + 16));
    for (int xi = 0; xi < 16; ++xi) {
      gemm::GemmArgs ga;
      ga.a = {u.data() + (grp * 16 + xi) * opg * cpg, opg, cpg, cpg, 1};
      ga.a_packed = upacked.get() + (grp * 16 + xi) * usize;
      ga.b = {v + xi * cpg * tb, cpg, tb, tb, 1};
      ga.b_in_place = true;
      ga.c = {m + xi * opg * tb, opg, tb, tb};
      gemm::gemm_cpu(ga, isa, 1);
    }
    kern.output(m, opg, nti, tw, bias ? bias + grp * opg : nullptr, relu, 2 * ti0, g.oh, g.ow, P,
                y + (n * g.o + grp * opg) * P);
  });
}

void winograd_bwd_weight(const Geometry& g, const float* x, const float* dy, float* dw, float* db, Isa isa,
                         int nthreads) {
  const int64_t cpg = g.c / g.groups, opg = g.o / g.groups, P = g.oh * g.ow;
  const int64_t th = (g.oh + 1) / 2, tw = (g.ow + 1) / 2, wp = 2 * tw + 2;
  const WinogradKernels& kern = lookup<WinogradKernels>("conv2d_winograd", isa);
  const int64_t rows_per_block = tile_rows_per_block(cpg, opg, th, tw);
  auto image = [&](int64_t n, float* acc, bool first, int threads) {
    for (int64_t grp = 0; grp < g.groups; ++grp)
      for (int64_t ti0 = 0; ti0 < th; ti0 += rows_per_block) {
        const int64_t nti = std::min(rows_per_block, th - ti0), tb = nti * tw;
        const float* xp = pad_tile_rows(g, x + (n * g.c + grp * cpg) * g.h * g.w, cpg, ti0, nti, wp);
        float* v = t_wino_v.get(static_cast<size_t>(16 * cpg * tb));
        kern.input(xp, cpg, wp, nti, tw, v);
        float* dt = t_wino_m.get(static_cast<size_t>(16 * opg * tb));
        kern.dy(dy + (n * g.o + grp * opg) * P, opg, nti, tw, 2 * ti0, g.oh, g.ow, P, dt);
        for (int xi = 0; xi < 16; ++xi) {
          gemm::GemmArgs ga;
          ga.a = {dt + xi * opg * tb, opg, tb, tb, 1};
          ga.b = {v + xi * cpg * tb, tb, cpg, 1, tb};
          ga.c = {acc + (grp * 16 + xi) * opg * cpg, opg, cpg, cpg};
          ga.beta = (first && ti0 == 0) ? 0.0f : 1.0f;
          gemm::gemm_cpu(ga, isa, threads);
        }
      }
  };
  auto finish = [&](const float* m, float* out) {
    for (int64_t grp = 0; grp < g.groups; ++grp)
      for (int64_t o = 0; o < opg; ++o)
        for (int64_t c = 0; c < cpg; ++c)
          gradient_transform(m + (grp * 16 * opg + o) * cpg + c, opg * cpg, out + ((grp * opg + o) * cpg + c) * 9);
  };
  sum_weight_grad(g, dy, dw, db, WeightGradSum{16 * g.o * cpg, image, finish}, nthreads);
}

}  // namespace ember::conv2d
