/* int8 GEMM micro-kernel, NEON dot product (armv8.2-a+dotprod): 4x16 tile, K in
 * groups of 4, int8 panels (QK_PACK_S8; zero points are folded in by the output
 * stage). Per group, SDOT with a lane of A multiplies 4 columns x 4 k at once:
 * exact int8 products summed in int32 (in any order the same sums).
 *
 * Inline assembly, for the schedule: two groups a loop step, software-pipelined (the
 * 5 loads of the next group, single `ldr q`, issued between the 16 SDOTs of the
 * current one), accumulators in v16-v31. GCC's schedule of the same loop in
 * intrinsics (`ldp q` pairs right before their use; copies between registers when
 * unrolled) got 44-57 % of the SDOT peak on llvm-mca's in-order Cortex-A55/A510
 * models and 94 % on Neoverse N1/N2 (docs/performance.md, "Arm kernels by simulation";
 * bench/mca.py measures it). */
#include <stdint.h>
#include "qk_gemm.h"

#define QK_NL "\n\t"
/* rows 0..3 of column block j (accumulators c0, c1, c2, c3) from B register b and the
 * 4 lanes (one per row) of A register a */
#define QK_SDOT_COL(c0, c1, c2, c3, b, a)                      \
    "sdot v" #c0 ".4s, v" #b ".16b, v" #a ".4b[0]" QK_NL       \
    "sdot v" #c1 ".4s, v" #b ".16b, v" #a ".4b[1]" QK_NL       \
    "sdot v" #c2 ".4s, v" #b ".16b, v" #a ".4b[2]" QK_NL       \
    "sdot v" #c3 ".4s, v" #b ".16b, v" #a ".4b[3]" QK_NL
#define QK_SDOT_GROUP(a, b0, b1, b2, b3)                       \
    QK_SDOT_COL(16, 20, 24, 28, b0, a) QK_SDOT_COL(17, 21, 25, 29, b1, a) \
    QK_SDOT_COL(18, 22, 26, 30, b2, a) QK_SDOT_COL(19, 23, 27, 31, b3, a)
/* the same, with the group `ao` bytes of A (`bo` of B) ahead loaded into na, nb0..nb3
 * between the SDOTs, and `more` (scalar bookkeeping) before the last column */
#define QK_SDOT_GROUP_LOAD(a, b0, b1, b2, b3, na, nb0, nb1, nb2, nb3, ao, bo0, bo1, bo2, bo3, more) \
    "ldr q" #na ", [%[pa], #" #ao "]" QK_NL                    \
    QK_SDOT_COL(16, 20, 24, 28, b0, a)                         \
    "ldr q" #nb0 ", [%[pb], #" #bo0 "]" QK_NL                  \
    QK_SDOT_COL(17, 21, 25, 29, b1, a)                         \
    "ldr q" #nb1 ", [%[pb], #" #bo1 "]" QK_NL                  \
    QK_SDOT_COL(18, 22, 26, 30, b2, a)                         \
    "ldr q" #nb2 ", [%[pb], #" #bo2 "]" QK_NL                  \
    "ldr q" #nb3 ", [%[pb], #" #bo3 "]" QK_NL                  \
    more                                                       \
    QK_SDOT_COL(19, 23, 27, 31, b3, a)

void qs8_gemm_4x16c4_neondot(size_t k_groups, const void *a, const void *b, int32_t *acc) {
    const int8_t *pa = (const int8_t *)a, *pb = (const int8_t *)b;
    size_t n = k_groups;
    __asm__ volatile(
        "movi v16.4s, #0" QK_NL "movi v17.4s, #0" QK_NL "movi v18.4s, #0" QK_NL "movi v19.4s, #0" QK_NL
        "movi v20.4s, #0" QK_NL "movi v21.4s, #0" QK_NL "movi v22.4s, #0" QK_NL "movi v23.4s, #0" QK_NL
        "movi v24.4s, #0" QK_NL "movi v25.4s, #0" QK_NL "movi v26.4s, #0" QK_NL "movi v27.4s, #0" QK_NL
        "movi v28.4s, #0" QK_NL "movi v29.4s, #0" QK_NL "movi v30.4s, #0" QK_NL "movi v31.4s, #0" QK_NL
        "cbz %[n], 9f" QK_NL
        /* group 0 into v0 (A) and v1-v4 (B); n = the groups after it */
        "ldr q0, [%[pa]]" QK_NL "ldr q1, [%[pb]]" QK_NL "ldr q2, [%[pb], #16]" QK_NL
        "ldr q3, [%[pb], #32]" QK_NL "ldr q4, [%[pb], #48]" QK_NL
        "subs %[n], %[n], #1" QK_NL
        "b.eq 8f" QK_NL
        "subs %[n], %[n], #2" QK_NL   /* n - 2: the loop runs while 2 groups follow the current one */
        "b.lo 7f" QK_NL
        "1:" QK_NL   /* groups g (in v0-v4), g+1 and g+2 exist: compute g and g+1, load g+1 and g+2 */
        QK_SDOT_GROUP_LOAD(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 64, 80, 96, 112, "")
        QK_SDOT_GROUP_LOAD(5, 6, 7, 8, 9, 0, 1, 2, 3, 4, 32, 128, 144, 160, 176,
                           "add %[pa], %[pa], #32" QK_NL "add %[pb], %[pb], #128" QK_NL)
        "subs %[n], %[n], #2" QK_NL
        "b.hs 1b" QK_NL
        "adds %[n], %[n], #2" QK_NL   /* the groups after the current one: 0 or 1 */
        "b.eq 8f" QK_NL
        "7:" QK_NL   /* two groups left: g (in v0-v4) and g+1 */
        QK_SDOT_GROUP_LOAD(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 64, 80, 96, 112, "")
        QK_SDOT_GROUP(5, 6, 7, 8, 9)
        "b 9f" QK_NL
        "8:" QK_NL   /* one group left, in v0-v4 */
        QK_SDOT_GROUP(0, 1, 2, 3, 4)
        "9:" QK_NL   /* row i of the tile is v(16+4i)..v(19+4i) */
        "st1 {v16.4s, v17.4s, v18.4s, v19.4s}, [%[acc]], #64" QK_NL
        "st1 {v20.4s, v21.4s, v22.4s, v23.4s}, [%[acc]], #64" QK_NL
        "st1 {v24.4s, v25.4s, v26.4s, v27.4s}, [%[acc]], #64" QK_NL
        "st1 {v28.4s, v29.4s, v30.4s, v31.4s}, [%[acc]]" QK_NL
        : [n] "+r"(n), [pa] "+r"(pa), [pb] "+r"(pb), [acc] "+r"(acc)
        :
        : "cc", "memory", "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v16", "v17", "v18",
          "v19", "v20", "v21", "v22", "v23", "v24", "v25", "v26", "v27", "v28", "v29", "v30", "v31");
}
