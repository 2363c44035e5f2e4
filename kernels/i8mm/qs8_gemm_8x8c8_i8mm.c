/* int8 GEMM micro-kernel, NEON i8mm (armv8.2-a+i8mm): 8x8 tile, K in groups of 8,
 * int8 panels (QK_PACK_S8; zero points are folded in by the output stage). SMMLA
 * multiplies a 2x8 block of A rows by a 2x8 block of B columns into a 2x2 int32
 * tile [r0c0 r0c1 r1c0 r1c1]: 4 row pairs x 4 column pairs = 16 accumulators
 * (v16-v31), unzipped into rows at the end. Exact int8 products summed in int32 (in
 * any order the same sums).
 *
 * Twice the rows of qs8_gemm_4x8c8_i8mm for the same B loads: 8 loads a group for 16
 * SMMLAs instead of 12 for 16 (the 4x8 tile is load-bound on cores with 4 SMMLA pipes:
 * 67 % of the peak on llvm-mca's Neoverse V1 model). Inline assembly for the schedule:
 * two groups a loop step, the next group's loads (`ldp q`) between the current
 * group's SMMLAs (docs/performance.md, "Arm kernels by simulation"). */
#include <stdint.h>
#include "qk_gemm.h"

#define QK_NL "\n\t"
#define QK_MM(c, a, b) "smmla v" #c ".4s, v" #a ".16b, v" #b ".16b" QK_NL
#define QK_LDP(r0, r1, p, off) "ldp q" #r0 ", q" #r1 ", [%[" #p "], #" #off "]" QK_NL
/* the 4 column pairs (B registers b0..b3) of row pair r (A register a, accumulators c0..c3) */
#define QK_MM_ROWS(a, c0, c1, c2, c3, b0, b1, b2, b3) QK_MM(c0, a, b0) QK_MM(c1, a, b1) QK_MM(c2, a, b2) QK_MM(c3, a, b3)
/* one group: A row pairs a0..a3, B column pairs b0..b3; accumulator v(16 + 4 r + q) */
#define QK_MM_GROUP(a0, a1, a2, a3, b0, b1, b2, b3)                                          \
    QK_MM_ROWS(a0, 16, 17, 18, 19, b0, b1, b2, b3) QK_MM_ROWS(a1, 20, 21, 22, 23, b0, b1, b2, b3) \
    QK_MM_ROWS(a2, 24, 25, 26, 27, b0, b1, b2, b3) QK_MM_ROWS(a3, 28, 29, 30, 31, b0, b1, b2, b3)
/* the same, with the group `ao` bytes of A (`bo` of B) ahead loaded into na0..na3,
 * nb0..nb3 between the SMMLAs, then `more` (scalar bookkeeping) */
#define QK_MM_GROUP_LOAD(a0, a1, a2, a3, b0, b1, b2, b3, na0, na1, na2, na3, nb0, nb1, nb2, nb3, ao, bo, more) \
    QK_LDP(na0, na1, pa, ao) QK_MM_ROWS(a0, 16, 17, 18, 19, b0, b1, b2, b3)                  \
    QK_LDP(na2, na3, pa, ao + 32) QK_MM_ROWS(a1, 20, 21, 22, 23, b0, b1, b2, b3)             \
    QK_LDP(nb0, nb1, pb, bo) QK_MM_ROWS(a2, 24, 25, 26, 27, b0, b1, b2, b3)                  \
    QK_LDP(nb2, nb3, pb, bo + 32) QK_MM_ROWS(a3, 28, 29, 30, 31, b0, b1, b2, b3) more
/* rows 2r and 2r+1 (8 columns each) from the accumulators c0..c3 of row pair r */
#define QK_MM_STORE(c0, c1, c2, c3)                                                          \
    "zip1 v0.2d, v" #c0 ".2d, v" #c1 ".2d" QK_NL "zip1 v1.2d, v" #c2 ".2d, v" #c3 ".2d" QK_NL \
    "zip2 v2.2d, v" #c0 ".2d, v" #c1 ".2d" QK_NL "zip2 v3.2d, v" #c2 ".2d, v" #c3 ".2d" QK_NL \
    "st1 {v0.4s, v1.4s, v2.4s, v3.4s}, [%[acc]], #64" QK_NL

void qs8_gemm_8x8c8_i8mm(size_t k_groups, const void *a, const void *b, int32_t *acc) {
    const int8_t *pa = (const int8_t *)a, *pb = (const int8_t *)b;
    size_t n = k_groups;
    __asm__ volatile(
        "movi v16.4s, #0" QK_NL "movi v17.4s, #0" QK_NL "movi v18.4s, #0" QK_NL "movi v19.4s, #0" QK_NL
        "movi v20.4s, #0" QK_NL "movi v21.4s, #0" QK_NL "movi v22.4s, #0" QK_NL "movi v23.4s, #0" QK_NL
        "movi v24.4s, #0" QK_NL "movi v25.4s, #0" QK_NL "movi v26.4s, #0" QK_NL "movi v27.4s, #0" QK_NL
        "movi v28.4s, #0" QK_NL "movi v29.4s, #0" QK_NL "movi v30.4s, #0" QK_NL "movi v31.4s, #0" QK_NL
        "cbz %[n], 9f" QK_NL
        /* group 0 into v0-v3 (A row pairs) and v4-v7 (B column pairs); n = the groups after it */
        QK_LDP(0, 1, pa, 0) QK_LDP(2, 3, pa, 32) QK_LDP(4, 5, pb, 0) QK_LDP(6, 7, pb, 32)
        "subs %[n], %[n], #1" QK_NL
        "b.eq 8f" QK_NL
        "subs %[n], %[n], #2" QK_NL   /* n - 2: the loop runs while 2 groups follow the current one */
        "b.lo 7f" QK_NL
        "1:" QK_NL   /* groups g (in v0-v7), g+1 and g+2 exist: compute g and g+1, load g+1 and g+2 */
        QK_MM_GROUP_LOAD(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 64, 64, "")
        QK_MM_GROUP_LOAD(8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7, 128, 128,
                         "add %[pa], %[pa], #128" QK_NL "add %[pb], %[pb], #128" QK_NL)
        "subs %[n], %[n], #2" QK_NL
        "b.hs 1b" QK_NL
        "adds %[n], %[n], #2" QK_NL   /* the groups after the current one: 0 or 1 */
        "b.eq 8f" QK_NL
        "7:" QK_NL   /* two groups left: g (in v0-v7) and g+1 */
        QK_MM_GROUP_LOAD(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 64, 64, "")
        QK_MM_GROUP(8, 9, 10, 11, 12, 13, 14, 15)
        "b 9f" QK_NL
        "8:" QK_NL   /* one group left, in v0-v7 */
        QK_MM_GROUP(0, 1, 2, 3, 4, 5, 6, 7)
        "9:" QK_NL
        QK_MM_STORE(16, 17, 18, 19) QK_MM_STORE(20, 21, 22, 23)
        QK_MM_STORE(24, 25, 26, 27) QK_MM_STORE(28, 29, 30, 31)
        : [n] "+r"(n), [pa] "+r"(pa), [pb] "+r"(pb), [acc] "+r"(acc)
        :
        : "cc", "memory", "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11", "v12",
          "v13", "v14", "v15", "v16", "v17", "v18", "v19", "v20", "v21", "v22", "v23", "v24", "v25", "v26",
          "v27", "v28", "v29", "v30", "v31");
}
