/* The CPU: the ISA paths a build may contain, and run-time feature detection
 * (kernels/cpu.c: cpuid/xgetbv on x86-64, getauxval on aarch64). */
#ifndef QK_CPU_H
#define QK_CPU_H
#include <stdint.h>

/* ISA paths, each a set of micro-kernels (QKERNELS_ISA forces one). The *_EMU paths hold
 * the VNNI kernels built a second time with every AVX-512/VNNI operation emulated exactly
 * in AVX2 (qk_vnni.h): for tests on any AVX2 CPU, never picked by default. */
enum qk_isa { QK_ISA_SCALAR = 0, QK_ISA_AVX2, QK_ISA_NEON, QK_ISA_NEONDOT, QK_ISA_I8MM,
              QK_ISA_AVX512VNNI, QK_ISA_AVXVNNI, QK_ISA_AVX512VNNI_EMU, QK_ISA_AVXVNNI_EMU, QK_ISA_COUNT };
const char *qk_isa_name(int isa);

/* Features the CPU has (and the OS enables): a bit set of QK_CPU_*. */
enum {
    QK_CPU_AVX2 = 1 << 0, QK_CPU_FMA = 1 << 1, QK_CPU_F16C = 1 << 2,
    QK_CPU_AVX512F = 1 << 3, QK_CPU_AVX512BW = 1 << 4, QK_CPU_AVX512VNNI = 1 << 5,
    QK_CPU_AVXVNNI = 1 << 6, QK_CPU_AVX512VL = 1 << 7,
    QK_CPU_ASIMD = 1 << 8, QK_CPU_ASIMDDP = 1 << 9, QK_CPU_FPHP = 1 << 10,
    QK_CPU_ASIMDHP = 1 << 11, QK_CPU_I8MM = 1 << 12, QK_CPU_AVX512VBMI = 1 << 13,
};
uint32_t qk_cpu_features(void);
const char *qk_cpu_arch(void);

/* Whether ISA path `isa` runs on an AVX2 CPU (AVX2 and every path above it): where a
 * portable loop's AVX2 build may be picked. */
static inline int qk_isa_has_avx2(int isa) {
    return isa == QK_ISA_AVX2 || isa == QK_ISA_AVX512VNNI || isa == QK_ISA_AVXVNNI || isa == QK_ISA_AVX512VNNI_EMU ||
           isa == QK_ISA_AVXVNNI_EMU;
}

/* A portable loop's AVX2 build (`avx2`, x86 only) where ISA path `isa` has AVX2, else the
 * portable build: the run-time pick of every loop compiled twice (qbinary, eltwise,
 * resize, col2im). */
#if defined(__x86_64__)
#define QK_PICK_AVX2(isa, avx2, portable) (qk_isa_has_avx2(isa) ? (avx2) : (portable))
#else
#define QK_PICK_AVX2(isa, avx2, portable) ((void)(isa), (portable))
#endif
#endif
