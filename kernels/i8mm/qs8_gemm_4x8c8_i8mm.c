/* int8 GEMM micro-kernel, NEON i8mm (armv8.2-a+i8mm): 4x8 tile, K in groups of 8,
 * int8 panels (QK_PACK_S8; zero points are folded in by the output stage). SMMLA
 * multiplies a 2x8 block of A rows by a 2x8 block of B columns into a 2x2 int32
 * tile [r0c0 r0c1 r1c0 r1c1]: 2 row pairs x 4 column pairs = 8 accumulators, which
 * are unzipped into rows at the end. Exact int8 products summed in int32 (in any
 * order the same sums).
 *
 * Inline assembly, for the schedule: two groups a loop step, software-pipelined (the
 * loads of the next group between the 8 SMMLAs of the current one). GCC's schedule of
 * the same loop in intrinsics (each load right before its use) got 31 % of the SMMLA
 * peak on llvm-mca's in-order Cortex-A510 model, this one 50 % (docs/performance.md,
 * "Arm kernels by simulation"; bench/mca.py measures it). */
#include <stdint.h>
#include "qk_gemm.h"

#define QK_NL "\n\t"
#define QK_MM(c, a, b) "smmla v" #c ".4s, v" #a ".16b, v" #b ".16b" QK_NL
#define QK_LDP(r0, r1, p, off) "ldp q" #r0 ", q" #r1 ", [%[" #p "], #" #off "]" QK_NL
/* accumulator v(16 + 4 r + q): row pair r (A register a0 or a1) x column pair q (B register bq) */
#define QK_MM_GROUP(a0, a1, b0, b1, b2, b3)                                          \
    QK_MM(16, a0, b0) QK_MM(17, a0, b1) QK_MM(18, a0, b2) QK_MM(19, a0, b3)          \
    QK_MM(20, a1, b0) QK_MM(21, a1, b1) QK_MM(22, a1, b2) QK_MM(23, a1, b3)
/* the same, with the group `ao` bytes of A (`bo` of B) ahead loaded into na0, na1,
 * nb0..nb3 between the SMMLAs (3 `ldp q`: on the in-order Cortex-A510 model, 50 % of
 * the peak against 44 % with 6 `ldr q`, the 4x8 tile being load-bound there), then `more`
 * (scalar bookkeeping) */
#define QK_MM_GROUP_LOAD(a0, a1, b0, b1, b2, b3, na0, na1, nb0, nb1, nb2, nb3, ao, bo, more)  \
    QK_LDP(na0, na1, pa, ao) QK_MM(16, a0, b0) QK_MM(17, a0, b1) QK_MM(18, a0, b2)             \
    QK_LDP(nb0, nb1, pb, bo) QK_MM(19, a0, b3) QK_MM(20, a1, b0) QK_MM(21, a1, b1)             \
    QK_LDP(nb2, nb3, pb, bo + 32) QK_MM(22, a1, b2) QK_MM(23, a1, b3) more
/* rows 2r and 2r+1 (8 columns each) from the accumulators v(16+4r)..v(19+4r) */
#define QK_MM_STORE(c0, c1, c2, c3)                                                  \
    "zip1 v24.2d, v" #c0 ".2d, v" #c1 ".2d" QK_NL "zip1 v25.2d, v" #c2 ".2d, v" #c3 ".2d" QK_NL \
    "zip2 v26.2d, v" #c0 ".2d, v" #c1 ".2d" QK_NL "zip2 v27.2d, v" #c2 ".2d, v" #c3 ".2d" QK_NL \
    "st1 {v24.4s, v25.4s, v26.4s, v27.4s}, [%[acc]], #64" QK_NL

void qs8_gemm_4x8c8_i8mm(size_t k_groups, const void *a, const void *b, int32_t *acc) {
    const int8_t *pa = (const int8_t *)a, *pb = (const int8_t *)b;
    size_t n = k_groups;
    __asm__ volatile(
        "movi v16.4s, #0" QK_NL "movi v17.4s, #0" QK_NL "movi v18.4s, #0" QK_NL "movi v19.4s, #0" QK_NL
        "movi v20.4s, #0" QK_NL "movi v21.4s, #0" QK_NL "movi v22.4s, #0" QK_NL "movi v23.4s, #0" QK_NL
        "cbz %[n], 9f" QK_NL
        /* group 0 into v0-v1 (A row pairs) and v2-v5 (B column pairs); n = the groups after it */
        QK_LDP(0, 1, pa, 0) QK_LDP(2, 3, pb, 0) QK_LDP(4, 5, pb, 32)
        "subs %[n], %[n], #1" QK_NL
        "b.eq 8f" QK_NL
        "subs %[n], %[n], #2" QK_NL   /* n - 2: the loop runs while 2 groups follow the current one */
        "b.lo 7f" QK_NL
        "1:" QK_NL   /* groups g (in v0-v5), g+1 and g+2 exist: compute g and g+1, load g+1 and g+2 */
        QK_MM_GROUP_LOAD(0, 1, 2, 3, 4, 5, 24, 25, 26, 27, 28, 29, 32, 64, "")
        QK_MM_GROUP_LOAD(24, 25, 26, 27, 28, 29, 0, 1, 2, 3, 4, 5, 64, 128,
                         "add %[pa], %[pa], #64" QK_NL "add %[pb], %[pb], #128" QK_NL)
        "subs %[n], %[n], #2" QK_NL
        "b.hs 1b" QK_NL
        "adds %[n], %[n], #2" QK_NL   /* the groups after the current one: 0 or 1 */
        "b.eq 8f" QK_NL
        "7:" QK_NL   /* two groups left: g (in v0-v5) and g+1 */
        QK_MM_GROUP_LOAD(0, 1, 2, 3, 4, 5, 24, 25, 26, 27, 28, 29, 32, 64, "")
        QK_MM_GROUP(24, 25, 26, 27, 28, 29)
        "b 9f" QK_NL
        "8:" QK_NL   /* one group left, in v0-v5 */
        QK_MM_GROUP(0, 1, 2, 3, 4, 5)
        "9:" QK_NL
        QK_MM_STORE(16, 17, 18, 19)
        QK_MM_STORE(20, 21, 22, 23)
        : [n] "+r"(n), [pa] "+r"(pa), [pb] "+r"(pb), [acc] "+r"(acc)
        :
        : "cc", "memory", "v0", "v1", "v2", "v3", "v4", "v5", "v16", "v17", "v18", "v19", "v20", "v21", "v22",
          "v23", "v24", "v25", "v26", "v27", "v28", "v29");
}
