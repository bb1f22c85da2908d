/* gemm.c - packed sgemm driver (GotoBLAS/BLIS loop nest), the portable
 * micro-kernel and the plain blocked dgemm (the dense epilogues are generated
 * with the activations, in activations.c).
 *
 * Loop nest of the float32 driver (one OpenMP region for the whole call):
 *   for jc in N step NC            B block (KC x NC)
 *     for pc in K step KC          pack my panels of B[pc:pc+kc, jc:jc+nc]
 *       for ic in my rows step MC  pack A[ic:ic+mc, pc:pc+kc]
 *         for jr over my NR panels      the B micro-panel (kc x NR)
 *           for ir in mc step MR        the A block (mc x kc) stays in L2
 *             micro-kernel on an MR x NR tile of C (+ epilogue on the last pc)
 * MC/KC/NC per CPU path are in each kernel's fn_sgemm_arch (with the reason).
 * Threads split the NR panels of C, or its rows (in whole MR slivers) when
 * those divide more evenly, and each packs what it uses: no barrier inside
 * the region. (Threads used to pack one shared B block between two barriers
 * per KC step; on this shared 2-core machine a barrier waits whenever the
 * other thread is descheduled, which cost up to 4x at 2 threads. The price
 * now is packing A twice under a panel split, or B under a row split: a few
 * tenths of a percent of the multiply-adds at 1024^3.) Every element of C sums its k terms in the same
 * order (p = 0..k-1, one partial sum per KC block, blocks added in order),
 * however the rows or panels are split, so the result does not depend on
 * n_threads: it is bitwise the same for 1, 2 or more threads.
 *
 * Small products (A + B + C within ~4 MiB) pack nothing: the micro-kernel
 * reads A through its strides and B's full-width panels in place; only a
 * narrow last B panel is copied, zero-padded, by each thread for itself.
 * The kernel's arithmetic is the same
 * either way, so this choice does not change any result bit.
 *
 * A B that many products share (a decoding run's weights) can be packed once
 * (fn_sgemm_pack_b): every panel of op(B) whole, so the driver reads each KC
 * block of a panel in place and packs no B at all. In place, a small B's
 * panels are NR floats a row apart: for the 128 x 4000 logits projection of a
 * decoding step, one page per row of a panel.
 */
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include "kernels.h"

/* ---- portable micro-kernel: 6 x 8, written so GCC vectorises the j loop
 * with baseline SSE2 (12 accumulator registers of 4 floats). ------------- */

#define GEN_MR 6
#define GEN_NR 8

static FN_ALWAYS_INLINE void generic_tile(const int mr, int nr, int64_t kc,
                                          const float *a, int64_t rsa, int64_t csa,
                                          const float *b, int64_t rsb, float *c, int64_t ldc,
                                          float alpha, float beta) {
    float acc[GEN_MR][GEN_NR];
    for (int i = 0; i < GEN_MR; ++i)
        for (int j = 0; j < GEN_NR; ++j) acc[i][j] = 0.0f;
    for (int64_t p = 0; p < kc; ++p) {
        const float *bp = b + p * rsb;
        const float *ap = a + p * csa;
#pragma GCC unroll 6
        for (int i = 0; i < mr; ++i) {
            float ai = ap[i * rsa];
#pragma GCC unroll 8
            for (int j = 0; j < GEN_NR; ++j) acc[i][j] += ai * bp[j];
        }
    }
    float tile[GEN_MR][GEN_NR]; /* fixed-size copy: acc itself stays in registers */
#pragma GCC unroll 6
    for (int i = 0; i < mr; ++i)
#pragma GCC unroll 8
        for (int j = 0; j < GEN_NR; ++j) tile[i][j] = alpha * acc[i][j];
    for (int i = 0; i < mr; ++i) {
        float *ci = c + i * ldc;
        if (beta == 0.0f)
            for (int j = 0; j < nr; ++j) ci[j] = tile[i][j];
        else
            for (int j = 0; j < nr; ++j) ci[j] = tile[i][j] + beta * ci[j];
    }
}

/* GCC's loop vectoriser would vectorise over p (transposing through shuffles);
 * with it off, the SLP vectoriser turns each unrolled row update into two
 * 4-wide multiply-adds, which is what we want. */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-tree-loop-vectorize")))
#endif
static void generic_kernel(int mr, int nr, int64_t kc, const float *a, int64_t rsa, int64_t csa,
                           const float *b, int64_t rsb, float *c, int64_t ldc, float alpha, float beta) {
    /* A constant row count per case lets the compiler unroll and keep acc in registers. */
#define GENERIC_TILE(m) generic_tile(m, nr, kc, a, rsa, csa, b, rsb, c, ldc, alpha, beta)
    switch (mr) { FN_GEMM_ROWS_6_TO_1(GENERIC_TILE) }
#undef GENERIC_TILE
}

/* Blocking of the portable path: the B micro-panel (KC x 8 floats = 8 KiB)
 * sits in L1, the A block (MC x KC = 288 KiB) in a 512 KiB L2. */
const fn_sgemm_arch fn_sgemm_arch_generic = {
    "generic", GEN_MR, GEN_NR, 288, 256, 4096, generic_kernel, fn_sgemm_epilogue_scalar,
};

/* The portable bf16 path: the same kernel on operands rounded while packed. */
const fn_sgemm_arch fn_sgemm_arch_generic_rounded = {
    "generic on bf16-rounded operands", GEN_MR, GEN_NR, 288, 256, 4096, generic_kernel,
    fn_sgemm_epilogue_scalar, 1, 1, fn_pack_a_round_bf16, fn_pack_b_round_bf16,
};

const fn_sgemm_arch *fn_sgemm_arch_current(void) { return fn_kernels()->sgemm; }

/* ---- packing --------------------------------------------------------------- */

/* Panels [q0, q1) of B[pc:pc+kc, jc:jc+nc] into dst (panel q at dst + q*NR*kc),
 * zero-padding the columns past nc. (units == kc for float32.) */
void fn_pack_b_f32(const float *b, int64_t ldb, int trans_b, int64_t pc, int64_t kc,
                   int64_t units, int64_t jc, int64_t nc, int nr_tile, int64_t q0, int64_t q1,
                   void *dst_) {
    float *dst = dst_;
    (void)units;
    for (int64_t q = q0; q < q1; ++q) {
        int64_t j0 = q * nr_tile;
        int64_t nr = nc - j0 < nr_tile ? nc - j0 : nr_tile;
        float *d = dst + q * nr_tile * kc;
        if (!trans_b) {
            for (int64_t p = 0; p < kc; ++p) {
                const float *src = b + (pc + p) * ldb + jc + j0;
                float *dp = d + p * nr_tile;
                for (int64_t j = 0; j < nr; ++j) dp[j] = src[j];
                for (int64_t j = nr; j < nr_tile; ++j) dp[j] = 0.0f;
            }
        } else {
            for (int64_t j = 0; j < nr; ++j) {
                const float *src = b + (jc + j0 + j) * ldb + pc;
                for (int64_t p = 0; p < kc; ++p) d[p * nr_tile + j] = src[p];
            }
            for (int64_t p = 0; p < kc && nr < nr_tile; ++p)
                for (int64_t j = nr; j < nr_tile; ++j) d[p * nr_tile + j] = 0.0f;
        }
    }
}

/* A[ic:ic+mc, pc:pc+kc] into MR-row slivers (sliver s at dst + s*MR*kc). Rows
 * past mc in the last sliver are never read by the kernel, so not written. */
void fn_pack_a_f32(const float *a, int64_t lda, int trans_a, int64_t ic, int64_t mc,
                   int64_t pc, int64_t kc, int64_t units, int mr_tile, void *dst_) {
    float *dst = dst_;
    (void)units;
    for (int64_t s = 0; s * mr_tile < mc; ++s) {
        int64_t i0 = ic + s * mr_tile;
        int64_t mr = mc - s * mr_tile < mr_tile ? mc - s * mr_tile : mr_tile;
        float *d = dst + s * mr_tile * kc;
        if (!trans_a) {
            for (int64_t i = 0; i < mr; ++i) {
                const float *src = a + (i0 + i) * lda + pc;
                for (int64_t p = 0; p < kc; ++p) d[p * mr_tile + i] = src[p];
            }
        } else {
            for (int64_t p = 0; p < kc; ++p) {
                const float *src = a + (pc + p) * lda + i0;
                float *dp = d + p * mr_tile;
                for (int64_t i = 0; i < mr; ++i) dp[i] = src[i];
            }
        }
    }
}

/* ---- the driver ------------------------------------------------------------ */

typedef struct {
    const fn_sgemm_arch *arch;
    int trans_a, trans_b;
    int64_t m, n, k;
    float alpha, beta;
    const float *a, *b;
    int64_t lda, ldb, ldc;
    float *c;
    const fn_epilogue_f32 *epi;
    fn_pack_a pack_a_fn;
    fn_pack_b pack_b_fn;
    int pack_a;      /* 1: pack A blocks; 0: the kernel reads A in place */
    int direct_b;    /* 1: full-width B panels are read in place (only the last,
                        narrower panel is packed, zero-padded) */
    int split_rows;  /* 1: threads share the rows of C; 0: the NR panels */
    const float *b_whole; /* B packed once by fn_sgemm_pack_b (every panel, k rows each), or NULL */
    float *b_packed; /* packed B panels, one region per thread (b_stride apart) */
    int64_t b_stride;
    float *a_packed; /* one MC x KC block per thread, a_stride apart */
    int64_t a_stride;
} sgemm_job;

/* Rows [r0, r1) x panels [q0, q1) of C for one (jc, pc) block. Packed panel q
 * is at b_buf + (q - q_base) * NR * kc. */
static void run_block(const sgemm_job *job, int tid, int64_t r0, int64_t r1, int64_t q0, int64_t q1,
                      int64_t jc, int64_t nc, int64_t pc, int64_t kc,
                      const float *b_buf, int64_t q_base) {
    const fn_sgemm_arch *arch = job->arch;
    const int MR = arch->mr, NR = arch->nr;
    const int64_t ku = fn_k_units(arch, kc);
    const float beta = pc == 0 ? job->beta : 1.0f;
    const int last_k_block = pc + kc >= job->k;
    float *a_buf = job->a_packed + tid * job->a_stride;
    for (int64_t ic = r0; ic < r1; ic += arch->mc) {
        int64_t mc = r1 - ic < arch->mc ? r1 - ic : arch->mc;
        const float *a_src;
        int64_t rsa, csa, sliver_step;
        if (job->pack_a) {
            job->pack_a_fn(job->a, job->lda, job->trans_a, ic, mc, pc, kc, ku, MR, a_buf);
            a_src = a_buf, rsa = 1, csa = MR, sliver_step = MR * ku;
        } else if (!job->trans_a) {
            a_src = job->a + ic * job->lda + pc, rsa = job->lda, csa = 1, sliver_step = MR * job->lda;
        } else {
            a_src = job->a + pc * job->lda + ic, rsa = 1, csa = job->lda, sliver_step = MR;
        }
        for (int64_t q = q0; q < q1; ++q) {
            int64_t j = q * NR;
            int nr = nc - j < NR ? (int)(nc - j) : NR;
            const float *b_panel = b_buf + (q - q_base) * NR * ku;
            int64_t rsb = NR;
            if (job->b_whole)
                b_panel = job->b_whole + (jc + j) * job->k + pc * NR;
            else if (job->direct_b && nr == NR)
                b_panel = job->b + pc * job->ldb + jc + j, rsb = job->ldb;
            for (int64_t ir = 0; ir < mc; ir += MR) {
                int mr = mc - ir < MR ? (int)(mc - ir) : MR;
                float *c_tile = job->c + (ic + ir) * job->ldc + jc + j;
                arch->kernel(mr, nr, kc, a_src + (ir / MR) * sliver_step, rsa, csa, b_panel, rsb,
                             c_tile, job->ldc, job->alpha, beta);
                if (last_k_block && job->epi)
                    arch->epilogue(c_tile, job->ldc, mr, nr, ic + ir, jc + j, job->epi);
            }
        }
    }
}

static void sgemm_thread(const sgemm_job *job, int tid, int nth) {
    const fn_sgemm_arch *arch = job->arch;
    if (arch->thread_begin) arch->thread_begin();
    const int MR = arch->mr, NR = arch->nr;
    /* This thread's rows of C (whole MR slivers) or its NR panels. */
    int64_t r0 = 0, r1 = job->m, s0, s1;
    if (job->split_rows) {
        fn_split((job->m + MR - 1) / MR, tid, nth, &s0, &s1);
        r0 = s0 * MR;
        r1 = s1 * MR < job->m ? s1 * MR : job->m;
    }
    for (int64_t jc = 0; jc < job->n; jc += arch->nc) {
        int64_t nc = job->n - jc < arch->nc ? job->n - jc : arch->nc;
        int64_t panels = (nc + NR - 1) / NR, q0 = 0, q1 = panels;
        if (!job->split_rows) fn_split(panels, tid, nth, &q0, &q1);
        for (int64_t pc = 0; pc < job->k; pc += arch->kc) {
            int64_t kc = job->k - pc < arch->kc ? job->k - pc : arch->kc;
            int64_t ku = fn_k_units(arch, kc);
            float *b_buf = job->b_packed + tid * job->b_stride;
            if (job->b_whole) {
                /* packed before the call */
            } else if (!job->direct_b) {
                /* panel q lands at q * NR * units: the region holds every panel */
                job->pack_b_fn(job->b, job->ldb, job->trans_b, pc, kc, ku, jc, nc, NR, q0, q1, b_buf);
            } else if (q1 == panels && nc % NR) { /* only the narrow last panel */
                job->pack_b_fn(job->b, job->ldb, 0, pc, kc, ku, jc + (panels - 1) * NR, nc % NR, NR, 0, 1, b_buf);
            }
            run_block(job, tid, r0, r1, q0, q1, jc, nc, pc, kc, b_buf, job->direct_b ? panels - 1 : 0);
        }
    }
    if (arch->thread_end) arch->thread_end();
}

/* Multiply-adds one thread should have before a second one pays off. Waking
 * an OpenMP team costs a few microseconds on an idle machine, but on a busy
 * one the team waits until the other thread is scheduled again (measured:
 * 64x256x784 took 20-37 ms on 2 threads instead of 0.15 ms on 1 at load 10),
 * so a thread must bring ~40 us of work: 2^22 multiply-adds. (2^23 kept
 * 64x256x784 on one thread while OpenBLAS used two: 0.55x its speed.) */
#define SGEMM_MIN_WORK_PER_THREAD (1 << 22)
/* Footprint (floats of A + B + C) below which nothing is packed. */
#define SGEMM_DIRECT_FLOATS (1 << 20)
/* Scratch up to this many floats comes from the stack (no malloc for small calls). */
#define SGEMM_STACK_FLOATS 4096

static int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

/* The busiest thread's share of `units` over the average share (1 = even). */
static double imbalance(int64_t units, int nth) {
    return (double)((units + nth - 1) / nth) * nth / (double)units;
}

/* Packing scratch, kept per calling thread and grown when needed. A fresh
 * malloc per call was measured to cost 6% of a 1024^3 bf16 product: blocks
 * this big are mmap'ed, so every call page-faulted in megabytes of zeroed
 * pages, and with two threads the faults also queue on the process's
 * memory-map lock. The buffer is freed when its thread exits. */
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
typedef struct { void *raw; int64_t floats; } scratch_block;
static void scratch_free(void *p) {
    scratch_block *block = p;
    free(block->raw);
    free(block);
}
static void scratch_key_init(void) {
    if (pthread_key_create(&scratch_key, scratch_free) != 0) scratch_key = (pthread_key_t)-1;
}
static float *scratch_floats(int64_t floats) {
    pthread_once(&scratch_once, scratch_key_init);
    scratch_block *block = pthread_getspecific(scratch_key);
    if (!block) {
        block = calloc(1, sizeof *block);
        if (!block || pthread_setspecific(scratch_key, block) != 0) {
            free(block);
            return NULL;
        }
    }
    if (block->floats < floats) {
        free(block->raw);
        block->floats = 0;
        block->raw = malloc((size_t)floats * sizeof(float) + 64);
        if (!block->raw) return NULL;
        block->floats = floats;
    }
    return (float *)(((uintptr_t)block->raw + 63) & ~(uintptr_t)63);
}
static void scratch_done(void) {}
#else /* elsewhere: a block per call */
static _Thread_local void *scratch_raw = NULL;
static float *scratch_floats(int64_t floats) {
    scratch_raw = malloc((size_t)floats * sizeof(float) + 64);
    return scratch_raw ? (float *)(((uintptr_t)scratch_raw + 63) & ~(uintptr_t)63) : NULL;
}
static void scratch_done(void) { free(scratch_raw); scratch_raw = NULL; }
#endif

static void scale_matrix(float *c, int64_t ldc, int64_t m, int64_t n, float beta) {
    if (beta == 1.0f) return;
    for (int64_t i = 0; i < m; ++i) {
        float *row = c + i * ldc;
        if (beta == 0.0f)
            memset(row, 0, (size_t)n * sizeof(float));
        else
            for (int64_t j = 0; j < n; ++j) row[j] *= beta;
    }
}

/* fn_sgemm_run, or with b_whole from fn_sgemm_pack_b in place of b (then trans_b and ldb are unused). */
static fn_status sgemm_drive(const fn_sgemm_arch *arch, int trans_a, int trans_b,
                             int64_t m, int64_t n, int64_t k, float alpha,
                             const float *a, int64_t lda, const float *b, int64_t ldb, const float *b_whole,
                             float beta, float *c, int64_t ldc,
                             const fn_epilogue_f32 *epi, int n_threads) {
    if (m == 0 || n == 0) return FN_OK;
    if (k == 0) {
        scale_matrix(c, ldc, m, n, beta);
        if (epi) arch->epilogue(c, ldc, m, n, 0, 0, epi);
        return FN_OK;
    }
    const int MR = arch->mr, NR = arch->nr;
    int64_t slivers = (m + MR - 1) / MR;
    int64_t panels = (n + NR - 1) / NR;
    int64_t parallel_units = slivers > panels ? slivers : panels;
    int nth = fn_threads_for(m * n * k, SGEMM_MIN_WORK_PER_THREAD, n_threads);
    if (nth > parallel_units) nth = (int)parallel_units;

    sgemm_job job = {arch, trans_a, trans_b, m, n, k, alpha, beta, a, b, lda, ldb, ldc, c, epi,
                     arch->pack_a ? arch->pack_a : fn_pack_a_f32, arch->pack_b ? arch->pack_b : fn_pack_b_f32};
    /* While A, B and C fit in about twice the L2 (4 MiB), the kernel reads A
     * and B in place: packing them costs ~10-35% there (measured on 64x256x784
     * to 512^3). Past that, strided panels thrash the TLB and caches (1024^3
     * runs at half speed unpacked), so both are packed. Low-precision kernels
     * always pack: packing is where float32 becomes bf16. */
    int small = m * k + k * n + m * n <= SGEMM_DIRECT_FLOATS && !arch->k_per_word;
    job.pack_a = !small;
    job.direct_b = small && !trans_b && !b_whole;
    job.b_whole = b_whole;
    /* Split whichever of rows (MR slivers) and NR panels divides more evenly,
     * panels on a tie (then B is packed once in all): 64 rows of 12-row
     * slivers on 2 threads is 36 + 28 rows (89% busy), 8 panels is 4 + 4. */
    job.split_rows = imbalance(slivers, nth) < imbalance(panels, nth);

    int64_t kc_max = fn_k_units(arch, k < arch->kc ? k : arch->kc);
    int64_t nc_max = round_up(n < arch->nc ? n : arch->nc, NR);
    int64_t b_floats = b_whole ? 0 : round_up(kc_max * (job.direct_b ? NR : nc_max), 16);
    job.b_stride = b_floats;
    int64_t mc_max = job.split_rows ? round_up((slivers + nth - 1) / nth * MR, MR) : round_up(m, MR);
    if (mc_max > arch->mc) mc_max = arch->mc;
    job.a_stride = job.pack_a ? round_up(mc_max * kc_max, 16) : 0;
    int64_t total = b_floats * nth + job.a_stride * nth;

    _Alignas(64) float stack_buf[SGEMM_STACK_FLOATS];
    float *scratch = stack_buf;
    if (total > SGEMM_STACK_FLOATS) {
        scratch = scratch_floats(total);
        if (!scratch) return FN_ERR_NOMEM;
    }
    job.b_packed = scratch;
    job.a_packed = scratch + b_floats * nth;

    if (nth <= 1) {
        sgemm_thread(&job, 0, 1);
    } else {
        FN_PARALLEL(nth) { sgemm_thread(&job, fn_thread_id(), fn_thread_count()); }
    }
    if (scratch != stack_buf) scratch_done();
    return FN_OK;
}

fn_status fn_sgemm_run(const fn_sgemm_arch *arch, int trans_a, int trans_b,
                       int64_t m, int64_t n, int64_t k, float alpha,
                       const float *a, int64_t lda, const float *b, int64_t ldb,
                       float beta, float *c, int64_t ldc,
                       const fn_epilogue_f32 *epi, int n_threads) {
    return sgemm_drive(arch, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, NULL, beta, c, ldc, epi,
                       n_threads);
}

fn_status fn_sgemm_run_packed_b(const fn_sgemm_arch *arch, int trans_a, int64_t m, int64_t n, int64_t k,
                                float alpha, const float *a, int64_t lda, const float *b_whole,
                                float beta, float *c, int64_t ldc, const fn_epilogue_f32 *epi,
                                int n_threads) {
    return sgemm_drive(arch, trans_a, 0, m, n, k, alpha, a, lda, NULL, 0, b_whole, beta, c, ldc, epi,
                       n_threads);
}

/* ---- B packed once --------------------------------------------------------- */

int64_t fn_sgemm_packed_b_floats(int64_t k, int64_t n, int *nr) {
    const fn_sgemm_arch *arch = fn_sgemm_arch_current();
    if (nr) *nr = arch->nr;
    if (k < 0 || n < 0) return -1;
    return (n + arch->nr - 1) / arch->nr * arch->nr * k;
}

fn_status fn_sgemm_pack_b(int trans_b, int64_t k, int64_t n, const float *b, int64_t ldb, float *dst, int nr) {
    const fn_sgemm_arch *arch = fn_sgemm_arch_current();
    int64_t b_cols = trans_b ? k : n;
    if (k < 0 || n < 0 || nr != arch->nr || arch->k_per_word || ldb < (b_cols > 1 ? b_cols : 1)) return FN_ERR_ARG;
    if (k == 0 || n == 0) return FN_OK;
    if (!b || !dst) return FN_ERR_ARG;
    fn_pack_b pack = arch->pack_b ? arch->pack_b : fn_pack_b_f32;
    /* one block of all k rows and all n columns: panel q lands at q * NR * k */
    pack(b, ldb, trans_b != 0, 0, k, k, 0, n, arch->nr, 0, (n + arch->nr - 1) / arch->nr, dst);
    return FN_OK;
}

static int gemm_args_ok(int64_t m, int64_t n, int64_t k, int trans_a, int trans_b,
                        const void *a, int64_t lda, const void *b, int64_t ldb,
                        const void *c, int64_t ldc) {
    if (m < 0 || n < 0 || k < 0) return 0;
    int64_t a_cols = trans_a ? m : k, b_cols = trans_b ? k : n;
    if (lda < (a_cols > 1 ? a_cols : 1) || ldb < (b_cols > 1 ? b_cols : 1) || ldc < (n > 1 ? n : 1)) return 0;
    if (m > 0 && n > 0 && !c) return 0;
    if (m > 0 && n > 0 && k > 0 && (!a || !b)) return 0;
    return 1;
}

/* Square blocks of the portable transposing copy: 32 x 32 floats (4 KiB) read
 * and written while both stay in L1. */
#define TRANSPOSE_BLOCK 32

static void transpose_portable(const float *src, int64_t rows, int64_t cols, int64_t lds, float *dst,
                               int64_t ldd) {
    for (int64_t i0 = 0; i0 < rows; i0 += TRANSPOSE_BLOCK)
        for (int64_t j0 = 0; j0 < cols; j0 += TRANSPOSE_BLOCK) {
            int64_t i1 = i0 + TRANSPOSE_BLOCK < rows ? i0 + TRANSPOSE_BLOCK : rows;
            int64_t j1 = j0 + TRANSPOSE_BLOCK < cols ? j0 + TRANSPOSE_BLOCK : cols;
            for (int64_t j = j0; j < j1; ++j)
                for (int64_t i = i0; i < i1; ++i) dst[j * ldd + i] = src[i * lds + j];
        }
}

fn_status fn_transpose_f32(int64_t rows, int64_t cols, const float *src, int64_t lds, float *dst, int64_t ldd,
                           int n_threads) {
    if (rows < 0 || cols < 0 || lds < (cols > 1 ? cols : 1) || ldd < (rows > 1 ? rows : 1)) return FN_ERR_ARG;
    if (rows == 0 || cols == 0) return FN_OK;
    if (!src || !dst) return FN_ERR_ARG;
    const fn_sgemm_arch *arch = fn_sgemm_arch_current();
    void (*run)(const float *, int64_t, int64_t, int64_t, float *, int64_t) =
        arch->transpose ? arch->transpose : transpose_portable;
    /* threads take whole blocks of 64 source rows: a copy is worth a second
     * thread only past ~100 us of work, as for the other copies */
    int nth = fn_threads_for(rows * cols, 1 << 19, n_threads);
    (void)nth;
    FN_PARALLEL(nth) {
        int64_t b0, b1;
        fn_split((rows + 63) / 64, fn_thread_id(), fn_thread_count(), &b0, &b1);
        int64_t r0 = b0 * 64, r1 = b1 * 64 < rows ? b1 * 64 : rows;
        if (r1 > r0) run(src + r0 * lds, r1 - r0, cols, lds, dst + r0, ldd);
    }
    return FN_OK;
}

/* fn_gemm_f32 and fn_gemm_bf16 differ only in the kernel set. */
#define DEFINE_GEMM_ENTRY(NAME, ARCH)                                                               \
    fn_status NAME(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,         \
                   const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c, \
                   int64_t ldc, int n_threads) {                                                    \
        if (!gemm_args_ok(m, n, k, trans_a, trans_b, a, lda, b, ldb, c, ldc)) return FN_ERR_ARG;    \
        return fn_sgemm_run(ARCH(), trans_a != 0, trans_b != 0, m, n, k, alpha, a, lda, b, ldb,     \
                            beta, c, ldc, NULL, n_threads);                                         \
    }
DEFINE_GEMM_ENTRY(fn_gemm_f32, fn_sgemm_arch_current)
DEFINE_GEMM_ENTRY(fn_gemm_bf16, fn_bf16_arch_current)

/* ---- float64: plain blocked loops ------------------------------------------
 * C is first scaled by beta, then for each block of KB rows of op(B) (copied
 * row-major into scratch, which also handles trans_b) every row of C adds
 * alpha * A[i, p] * B[p, :] for p in order. Threads split the rows of C, and
 * each element's sum order is fixed, so the result does not depend on
 * n_threads. The inner j loop is contiguous and vectorises. */

#define DGEMM_KB 128
#define DGEMM_NB 1024

static void dgemm_rows(int trans_a, int64_t i0, int64_t i1, int64_t pb, int64_t kb,
                       int64_t jb, int64_t nb, double alpha, const double *a, int64_t lda,
                       const double *b_block, double *c, int64_t ldc) {
    for (int64_t i = i0; i < i1; ++i) {
        double *ci = c + i * ldc + jb;
        for (int64_t p = 0; p < kb; ++p) {
            double aip = trans_a ? a[(pb + p) * lda + i] : a[i * lda + pb + p];
            double s = alpha * aip;
            const double *bp = b_block + p * nb;
            for (int64_t j = 0; j < nb; ++j) ci[j] += s * bp[j];
        }
    }
}

fn_status fn_gemm_f64(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                      double alpha, const double *a, int64_t lda,
                      const double *b, int64_t ldb,
                      double beta, double *c, int64_t ldc, int n_threads) {
    if (!gemm_args_ok(m, n, k, trans_a, trans_b, a, lda, b, ldb, c, ldc)) return FN_ERR_ARG;
    if (m == 0 || n == 0) return FN_OK;
    for (int64_t i = 0; i < m; ++i) {
        double *row = c + i * ldc;
        if (beta == 0.0)
            memset(row, 0, (size_t)n * sizeof(double));
        else if (beta != 1.0)
            for (int64_t j = 0; j < n; ++j) row[j] *= beta;
    }
    if (k == 0) return FN_OK;
    int64_t nb_max = n < DGEMM_NB ? n : DGEMM_NB, kb_max = k < DGEMM_KB ? k : DGEMM_KB;
    double *block = malloc((size_t)(nb_max * kb_max) * sizeof(double));
    if (!block) return FN_ERR_NOMEM;
    int nth = fn_threads_for(m * n * k, SGEMM_MIN_WORK_PER_THREAD / 2, n_threads);
    if (nth > m) nth = (int)m;
    for (int64_t jb = 0; jb < n; jb += DGEMM_NB) {
        int64_t nb = n - jb < DGEMM_NB ? n - jb : DGEMM_NB;
        for (int64_t pb = 0; pb < k; pb += DGEMM_KB) {
            int64_t kb = k - pb < DGEMM_KB ? k - pb : DGEMM_KB;
            for (int64_t p = 0; p < kb; ++p)
                for (int64_t j = 0; j < nb; ++j)
                    block[p * nb + j] = trans_b ? b[(jb + j) * ldb + pb + p] : b[(pb + p) * ldb + jb + j];
            if (nth <= 1) {
                dgemm_rows(trans_a, 0, m, pb, kb, jb, nb, alpha, a, lda, block, c, ldc);
            } else {
                FN_PARALLEL(nth) {
                    int64_t i0, i1;
                    fn_split(m, fn_thread_id(), fn_thread_count(), &i0, &i1);
                    dgemm_rows(trans_a, i0, i1, pb, kb, jb, nb, alpha, a, lda, block, c, ldc);
                }
            }
        }
    }
    free(block);
    return FN_OK;
}
