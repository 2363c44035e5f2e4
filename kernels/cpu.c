/* Run-time CPU feature detection: cpuid/xgetbv on x86-64, getauxval on aarch64. */
#include "qk_cpu.h"

const char *qk_isa_name(int isa) {
    static const char *names[QK_ISA_COUNT] = {"scalar", "avx2", "neon", "neondot", "i8mm",
                                                "avx512vnni", "avxvnni", "avx512vnni_emu", "avxvnni_emu"};
    return isa >= 0 && isa < QK_ISA_COUNT ? names[isa] : "unknown";
}

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}
static uint32_t detect(void) {
    unsigned a, b, c, d;
    uint32_t f = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1, avx = (c >> 28) & 1;
    uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    int ymm_os = (xcr0 & 0x6) == 0x6, zmm_os = (xcr0 & 0xe6) == 0xe6;
    if (!avx || !ymm_os) return 0;  /* the OS does not save YMM state: no AVX at all */
    if (fma) f |= QK_CPU_FMA;
    if (f16c) f |= QK_CPU_F16C;
    if (__get_cpuid_max(0, 0) >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        if ((b >> 5) & 1) f |= QK_CPU_AVX2;
        if (zmm_os && ((b >> 16) & 1)) f |= QK_CPU_AVX512F;
        if (zmm_os && ((b >> 30) & 1)) f |= QK_CPU_AVX512BW;
        if (zmm_os && ((b >> 31) & 1)) f |= QK_CPU_AVX512VL;
        if (zmm_os && ((c >> 11) & 1)) f |= QK_CPU_AVX512VNNI;
        if (zmm_os && ((c >> 1) & 1)) f |= QK_CPU_AVX512VBMI;
        __cpuid_count(7, 1, a, b, c, d);
        if ((a >> 4) & 1) f |= QK_CPU_AVXVNNI;
    }
    return f;
}

/* cpuid once: it traps to the hypervisor in a VM (microseconds), and per-call pickers ask */
uint32_t qk_cpu_features(void) {
    static int64_t known = -1;
    int64_t f = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (f < 0) {
        f = detect();
        __atomic_store_n(&known, f, __ATOMIC_RELAXED);
    }
    return (uint32_t)f;
}
const char *qk_cpu_arch(void) { return "x86_64"; }

#elif defined(__aarch64__)
#include <sys/auxv.h>
#include <asm/hwcap.h>
#ifndef HWCAP2_I8MM
#define HWCAP2_I8MM (1 << 13)
#endif
uint32_t qk_cpu_features(void) {
    unsigned long h = getauxval(AT_HWCAP), h2 = getauxval(AT_HWCAP2);
    uint32_t f = 0;
    if (h & HWCAP_ASIMD) f |= QK_CPU_ASIMD;
    if (h & HWCAP_ASIMDDP) f |= QK_CPU_ASIMDDP;
    if (h & HWCAP_FPHP) f |= QK_CPU_FPHP;
    if (h & HWCAP_ASIMDHP) f |= QK_CPU_ASIMDHP;
    if (h2 & HWCAP2_I8MM) f |= QK_CPU_I8MM;
    return f;
}
const char *qk_cpu_arch(void) { return "aarch64"; }

#else
uint32_t qk_cpu_features(void) { return 0; }
const char *qk_cpu_arch(void) { return "generic"; }
#endif
