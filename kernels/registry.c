/* The table of micro-kernels, filled at compile time from what this build compiled, and
 * the run-time choice among them (qk_registry.h). */
#include "qk_f16.h"
#include "qk_registry.h"

/* The kernels, by ISA. Declared through their types, so a signature that drifts from the
 * contract fails to compile here. */
typedef void gemm_fn(size_t, const void *, const void *, int32_t *);
typedef void igemm_fn(size_t, size_t, const void *const *, const void *, int32_t *);
typedef void igemm_fused_fn(size_t, size_t, const void *const *, const void *, size_t, size_t, size_t,
                            const qk_out_params *, void *, size_t);
typedef void output_fn(size_t, size_t, const int32_t *, size_t, size_t, size_t, const qk_out_params *, void *,
                       size_t);
typedef void fused_fn(size_t, const void *, const void *, size_t, size_t, size_t, const qk_out_params *, void *,
                      size_t);
typedef size_t dw_sum_fn(const qk_dw_params *, size_t, const uint8_t *const *, size_t, ptrdiff_t, size_t, int32_t *,
                         size_t, size_t, size_t *);
typedef size_t quantize_fn(size_t, const float *, const float *, const int32_t *, int, int, void *, int *);
typedef size_t dequantize_fn(size_t, const void *, int, const float *, const int32_t *, int, float *);
typedef void f16_row_fn(const uint16_t *, float *, size_t);

gemm_fn qs8_gemm_2x4c2_scalar, f16_gemm_4x8_scalar;
output_fn qk_output_scalar, qk_output_f16_scalar, qk_output_f32_scalar;
#if defined(__x86_64__)
gemm_fn qs8_gemm_1x16c2_avx2, qs8_gemm_6x16c2_avx2, qs8_gemm_6x16c4_u8s7_avx2, f16_gemm_1x16_avx2, f16_gemm_6x16_avx2,
    f32_gemm_1x16_avx2, f32_gemm_6x16_avx2;
fused_fn qs8_gemm_6x16c2_fused_avx2, qs8_gemm_6x16c4_u8s7_fused_avx2;
output_fn qk_output_avx2, qk_output_f16_avx2, qk_output_f32_avx2;
dw_sum_fn qk_dw_sum_avx2, qk_dw_sum_f16_avx2, qk_dw_sum_f32_avx2;
quantize_fn qk_quantize_row_avx2;
dequantize_fn qk_dequantize_row_avx2;
f16_row_fn qk_f16_to_f32_row_f16c;
/* VNNI kernels: each built natively and emulated in AVX2 (qk_vnni.h) */
#define QK_NATIVE_AND_EMU(type, name) type name, name##_emu;
QK_NATIVE_AND_EMU(gemm_fn, qs8_gemm_12x32c4_avx512vnni)
QK_NATIVE_AND_EMU(gemm_fn, qs8_gemm_1x32c4_avx512vnni)
QK_NATIVE_AND_EMU(fused_fn, qs8_gemm_1x32c4_fused_avx512vnni)
QK_NATIVE_AND_EMU(fused_fn, qs8_gemm_1x32c4_panels_avx512vnni)
QK_NATIVE_AND_EMU(fused_fn, qs8_gemm_12x32c4_fused_avx512vnni)
QK_NATIVE_AND_EMU(igemm_fn, qs8_igemm_12x32c4_avx512vnni)
QK_NATIVE_AND_EMU(igemm_fused_fn, qs8_igemm_12x32c4_fused_avx512vnni)
QK_NATIVE_AND_EMU(gemm_fn, qs8_gemm_4x32c4_avx512vnni)
QK_NATIVE_AND_EMU(fused_fn, qs8_gemm_4x32c4_fused_avx512vnni)
QK_NATIVE_AND_EMU(gemm_fn, qs8_gemm_8x32c4_avx512vnni)
QK_NATIVE_AND_EMU(fused_fn, qs8_gemm_8x32c4_fused_avx512vnni)
QK_NATIVE_AND_EMU(gemm_fn, qs8_gemm_6x16c4_avxvnni)
QK_NATIVE_AND_EMU(gemm_fn, qs8_gemm_1x16c4_avxvnni)
QK_NATIVE_AND_EMU(fused_fn, qs8_gemm_6x16c4_fused_avxvnni)
QK_NATIVE_AND_EMU(gemm_fn, f16_gemm_12x32_avx512vnni)
QK_NATIVE_AND_EMU(gemm_fn, f16_gemm_1x32_avx512vnni)
QK_NATIVE_AND_EMU(gemm_fn, f16_gemm_6x32_avx512vnni)
QK_NATIVE_AND_EMU(gemm_fn, f32_gemm_12x32_avx512vnni)
QK_NATIVE_AND_EMU(fused_fn, f32_gemm_12x32_fused_avx512vnni)
QK_NATIVE_AND_EMU(igemm_fn, f32_igemm_12x32_avx512vnni)
QK_NATIVE_AND_EMU(igemm_fused_fn, f32_igemm_12x32_fused_avx512vnni)
QK_NATIVE_AND_EMU(fused_fn, f32_gemm_12x16of32_fused_avx512vnni)
QK_NATIVE_AND_EMU(igemm_fused_fn, f32_igemm_12x16of32_fused_avx512vnni)
QK_NATIVE_AND_EMU(fused_fn, f32_gemm_6x32_fused_avx512vnni)
QK_NATIVE_AND_EMU(gemm_fn, f32_gemm_4x32_avx512vnni)
QK_NATIVE_AND_EMU(fused_fn, f32_gemm_4x32_fused_avx512vnni)
QK_NATIVE_AND_EMU(gemm_fn, f32_gemm_8x32_avx512vnni)
QK_NATIVE_AND_EMU(fused_fn, f32_gemm_8x32_fused_avx512vnni)
QK_NATIVE_AND_EMU(gemm_fn, f32_gemm_1x32_avx512vnni)
QK_NATIVE_AND_EMU(gemm_fn, f32_gemm_6x32_avx512vnni)
QK_NATIVE_AND_EMU(dw_sum_fn, qk_dw_sum_avx512vnni)
QK_NATIVE_AND_EMU(dw_sum_fn, qk_dw_sum_f32_avx512vnni)
#endif
#if defined(__aarch64__)
gemm_fn qs8_gemm_4x8_neon_mlal, qs8_gemm_4x16c4_neondot, qs8_gemm_4x8c8_i8mm, qs8_gemm_8x8c8_i8mm, f16_gemm_8x8_neon,
    f16_gemm_8x8_neonfp16, f32_gemm_8x8_neon;
output_fn qk_output_neon, qk_output_f16_neon, qk_output_f32_neon;
dw_sum_fn qk_dw_sum_neon, qk_dw_sum_f16_neon, qk_dw_sum_f32_neon;
quantize_fn qk_quantize_row_neon;
dequantize_fn qk_dequantize_row_neon;
f16_row_fn qk_f16_to_f32_row_neon;
#endif

#define GEMM .kind = QK_KIND_GEMM
#define DW_SUM .kind = QK_KIND_DW_SUM
#define QUANTIZE .kind = QK_KIND_QUANTIZE, .dtype = QK_DTYPE_QS8
#define DEQUANTIZE .kind = QK_KIND_DEQUANTIZE, .dtype = QK_DTYPE_QS8
#define QS8 .dtype = QK_DTYPE_QS8
#define F16 .dtype = QK_DTYPE_F16
#define F32 .dtype = QK_DTYPE_F32
/* the fp32 kernels' layouts: the fp16 ones, read from float32 sources */
#define A_F32_ROWS .a_pack = QK_PACK_F32_ROWS | QK_PACK_SRC_F32
#define A_F32 .a_pack = QK_PACK_F32 | QK_PACK_SRC_F32
#define B_F32 .b_pack = QK_PACK_F32 | QK_PACK_SRC_F32

/* Within a kind and ISA, the selection takes the first entry that fits: small-M and
 * weight-specific GEMM kernels come before the general one. */
static const qk_ukernel kernels[] = {
    /* ---- scalar: the reference of every other path, and the tails of their vector loops */
    {.name = "qs8_gemm_2x4c2_scalar", GEMM, QS8, .isa = QK_ISA_SCALAR, .mr = 2, .nr = 4, .kr = 2,
     .a_pack = QK_PACK_I16, .b_pack = QK_PACK_I16, .gemm = qs8_gemm_2x4c2_scalar, .output = qk_output_scalar},
    {.name = "f16_gemm_4x8_scalar", GEMM, F16, .isa = QK_ISA_SCALAR, .mr = 4, .nr = 8, .kr = 1,
     .a_pack = QK_PACK_F32_ROWS, .b_pack = QK_PACK_F32, .gemm = f16_gemm_4x8_scalar, .output = qk_output_f16_scalar},
    {.name = "qs8_dwconv_scalar", DW_SUM, QS8, .isa = QK_ISA_SCALAR, .dw_sum = qk_dw_sum_scalar, .width = 1},
    {.name = "f16_dwconv_scalar", DW_SUM, F16, .isa = QK_ISA_SCALAR, .dw_sum = qk_dw_sum_f16_scalar, .width = 1},
    /* fp32: the fp16 reference kernel multiplies float panels already; fp32 sources, fp32 output */
    {.name = "f32_gemm_4x8_scalar", GEMM, F32, .isa = QK_ISA_SCALAR, .mr = 4, .nr = 8, .kr = 1, A_F32_ROWS, B_F32,
     .gemm = f16_gemm_4x8_scalar, .output = qk_output_f32_scalar},
    {.name = "f32_dwconv_scalar", DW_SUM, F32, .isa = QK_ISA_SCALAR, .dw_sum = qk_dw_sum_f32_scalar, .width = 1},
    {.name = "qs8_quantize_scalar", QUANTIZE, .isa = QK_ISA_SCALAR, .quantize = qk_quantize_row_scalar},
    {.name = "qs8_dequantize_scalar", DEQUANTIZE, .isa = QK_ISA_SCALAR, .dequantize = qk_dequantize_row_scalar},
#if defined(__x86_64__)
    /* ---- AVX2 (with FMA and F16C) */
    {.name = "qs8_gemm_1x16c2_avx2", GEMM, QS8, .isa = QK_ISA_AVX2, .mr = 1, .nr = 16, .kr = 2,
     .a_pack = QK_PACK_I16, .b_pack = QK_PACK_S8, .max_m = 2, .gemm = qs8_gemm_1x16c2_avx2, .output = qk_output_avx2},
    {.name = "qs8_gemm_6x16c4_u8s7_avx2", GEMM, QS8, .isa = QK_ISA_AVX2, .mr = 6, .nr = 16, .kr = 4,
     .a_pack = QK_PACK_U8, .b_pack = QK_PACK_S8, .needs_pairs_128 = 1, .gemm = qs8_gemm_6x16c4_u8s7_avx2,
     .output = qk_output_avx2, .fused = qs8_gemm_6x16c4_u8s7_fused_avx2},
    {.name = "qs8_gemm_6x16c2_avx2", GEMM, QS8, .isa = QK_ISA_AVX2, .mr = 6, .nr = 16, .kr = 2,
     .a_pack = QK_PACK_I16, .b_pack = QK_PACK_I16, .gemm = qs8_gemm_6x16c2_avx2, .output = qk_output_avx2,
     .fused = qs8_gemm_6x16c2_fused_avx2},
    {.name = "f16_gemm_1x16_avx2", GEMM, F16, .isa = QK_ISA_AVX2, .mr = 1, .nr = 16, .kr = 1,
     .a_pack = QK_PACK_F32_ROWS, .b_pack = QK_PACK_F16, .max_m = 2, .k_chains = 2, .gemm = f16_gemm_1x16_avx2,
     .output = qk_output_f16_avx2},
    {.name = "f16_gemm_6x16_avx2", GEMM, F16, .isa = QK_ISA_AVX2, .mr = 6, .nr = 16, .kr = 1,
     .a_pack = QK_PACK_F32_ROWS, .b_pack = QK_PACK_F16, .gemm = f16_gemm_6x16_avx2, .output = qk_output_f16_avx2},
    {.name = "qs8_dwconv_avx2", DW_SUM, QS8, .isa = QK_ISA_AVX2, .dw_sum = qk_dw_sum_avx2, .width = 16},
    {.name = "f16_dwconv_avx2", DW_SUM, F16, .isa = QK_ISA_AVX2, .dw_sum = qk_dw_sum_f16_avx2, .width = 8},
    {.name = "f32_gemm_1x16_avx2", GEMM, F32, .isa = QK_ISA_AVX2, .mr = 1, .nr = 16, .kr = 1, A_F32_ROWS, B_F32,
     .max_m = 2, .k_chains = 2, .gemm = f32_gemm_1x16_avx2, .output = qk_output_f32_avx2},
    {.name = "f32_gemm_6x16_avx2", GEMM, F32, .isa = QK_ISA_AVX2, .mr = 6, .nr = 16, .kr = 1, A_F32_ROWS, B_F32,
     .gemm = f32_gemm_6x16_avx2, .output = qk_output_f32_avx2},
    {.name = "f32_dwconv_avx2", DW_SUM, F32, .isa = QK_ISA_AVX2, .dw_sum = qk_dw_sum_f32_avx2, .width = 8},
    {.name = "qs8_quantize_avx2", QUANTIZE, .isa = QK_ISA_AVX2, .quantize = qk_quantize_row_avx2},
    {.name = "qs8_dequantize_avx2", DEQUANTIZE, .isa = QK_ISA_AVX2, .dequantize = qk_dequantize_row_avx2},
    /* ---- VNNI: u8 x s8 quads by vpdpbusd, exact for any weights; the other kinds are the
       AVX2 ones but for the AVX-512 fp16 GEMM and depthwise kernels below. Every kernel
       twice: the native build, and the AVX2 emulation (*_EMU path). */
#define VNNI_GEMM(fn, isa_, ...)                                                          \
    {.name = #fn, GEMM, QS8, .isa = isa_, __VA_ARGS__, .gemm = fn, .output = qk_output_avx2},  \
    {.name = #fn "_emu", GEMM, QS8, .isa = isa_##_EMU, __VA_ARGS__, .gemm = fn##_emu, .output = qk_output_avx2}
#define VNNI_GEMM_FUSED(fn, fused_fn, isa_, ...)                                                            \
    {.name = #fn, GEMM, QS8, .isa = isa_, __VA_ARGS__, .gemm = fn, .output = qk_output_avx2, .fused = fused_fn}, \
    {.name = #fn "_emu", GEMM, QS8, .isa = isa_##_EMU, __VA_ARGS__, .gemm = fn##_emu, .output = qk_output_avx2,  \
     .fused = fused_fn##_emu}
#define VNNI_GEMM_PANELS(fn, fused_fn, panels_fn, isa_, ...)                                                \
    {.name = #fn, GEMM, QS8, .isa = isa_, __VA_ARGS__, .gemm = fn, .output = qk_output_avx2, .fused = fused_fn,   \
     .fused_panels = panels_fn},                                                                                \
    {.name = #fn "_emu", GEMM, QS8, .isa = isa_##_EMU, __VA_ARGS__, .gemm = fn##_emu, .output = qk_output_avx2,  \
     .fused = fused_fn##_emu, .fused_panels = panels_fn##_emu}
    VNNI_GEMM_PANELS(qs8_gemm_1x32c4_avx512vnni, qs8_gemm_1x32c4_fused_avx512vnni,
                     qs8_gemm_1x32c4_panels_avx512vnni, QK_ISA_AVX512VNNI, .mr = 1, .nr = 32, .kr = 4,
                     .a_pack = QK_PACK_U8, .b_pack = QK_PACK_S8, .max_m = 2, .fused_post = 1),
    VNNI_GEMM_FUSED(qs8_gemm_4x32c4_avx512vnni, qs8_gemm_4x32c4_fused_avx512vnni, QK_ISA_AVX512VNNI, .mr = 4,
                    .nr = 32, .kr = 4, .a_pack = QK_PACK_U8, .b_pack = QK_PACK_S8, .max_m = 4, .fused_post = 1),
    VNNI_GEMM_FUSED(qs8_gemm_8x32c4_avx512vnni, qs8_gemm_8x32c4_fused_avx512vnni, QK_ISA_AVX512VNNI, .mr = 8,
                    .nr = 32, .kr = 4, .a_pack = QK_PACK_U8, .b_pack = QK_PACK_S8, .max_m = 8, .fused_post = 1),
    /* the 12x32 one has the indirect entries too (uint8 convolutions read in place) */
    {.name = "qs8_gemm_12x32c4_avx512vnni", GEMM, QS8, .isa = QK_ISA_AVX512VNNI, .mr = 12, .nr = 32, .kr = 4,
     .a_pack = QK_PACK_U8, .b_pack = QK_PACK_S8, .gemm = qs8_gemm_12x32c4_avx512vnni, .output = qk_output_avx2,
     .fused = qs8_gemm_12x32c4_fused_avx512vnni, .igemm = qs8_igemm_12x32c4_avx512vnni,
     .igemm_fused = qs8_igemm_12x32c4_fused_avx512vnni, .fused_post = 1},
    {.name = "qs8_gemm_12x32c4_avx512vnni_emu", GEMM, QS8, .isa = QK_ISA_AVX512VNNI_EMU, .mr = 12, .nr = 32,
     .kr = 4, .a_pack = QK_PACK_U8, .b_pack = QK_PACK_S8, .gemm = qs8_gemm_12x32c4_avx512vnni_emu,
     .output = qk_output_avx2, .fused = qs8_gemm_12x32c4_fused_avx512vnni_emu,
     .igemm = qs8_igemm_12x32c4_avx512vnni_emu, .igemm_fused = qs8_igemm_12x32c4_fused_avx512vnni_emu,
     .fused_post = 1},
    VNNI_GEMM(qs8_gemm_1x16c4_avxvnni, QK_ISA_AVXVNNI, .mr = 1, .nr = 16, .kr = 4, .a_pack = QK_PACK_U8,
              .b_pack = QK_PACK_S8, .max_m = 2),
    VNNI_GEMM_FUSED(qs8_gemm_6x16c4_avxvnni, qs8_gemm_6x16c4_fused_avxvnni, QK_ISA_AVXVNNI, .mr = 6, .nr = 16,
                    .kr = 4, .a_pack = QK_PACK_U8, .b_pack = QK_PACK_S8),
    /* AVX-512 fp16 GEMM and int8 depthwise: zmm beat AVX2 on family 6 model 207 (docs/design.md,
       "AVX-512 tier"); fp16 depthwise and the avxvnni path stay AVX2's. The int8 depthwise
       kernel hands 16-31 leftover channels to the AVX2 one, hence width 16. */
#define VNNI_TWICE(name_, field, fn, isa_, ...)                          \
    {.name = #name_, .isa = isa_, __VA_ARGS__, .field = fn},               \
    {.name = #name_ "_emu", .isa = isa_##_EMU, __VA_ARGS__, .field = fn##_emu}
    VNNI_TWICE(f16_gemm_1x32_avx512vnni, gemm, f16_gemm_1x32_avx512vnni, QK_ISA_AVX512VNNI, GEMM, F16, .mr = 1,
               .nr = 32, .kr = 1, .max_m = 2, .k_chains = 2, .a_pack = QK_PACK_F32_ROWS, .b_pack = QK_PACK_F16,
               .output = qk_output_f16_avx2),
    VNNI_TWICE(f16_gemm_6x32_avx512vnni, gemm, f16_gemm_6x32_avx512vnni, QK_ISA_AVX512VNNI, GEMM, F16, .mr = 6,
               .nr = 32, .kr = 1, .max_m = 6, .a_pack = QK_PACK_F32_ROWS, .b_pack = QK_PACK_F16,
               .output = qk_output_f16_avx2),
    VNNI_TWICE(f16_gemm_12x32_avx512vnni, gemm, f16_gemm_12x32_avx512vnni, QK_ISA_AVX512VNNI, GEMM, F16, .mr = 12,
               .nr = 32, .kr = 1, .a_pack = QK_PACK_F32_ROWS, .b_pack = QK_PACK_F16, .output = qk_output_f16_avx2),
    VNNI_TWICE(f32_gemm_1x32_avx512vnni, gemm, f32_gemm_1x32_avx512vnni, QK_ISA_AVX512VNNI, GEMM, F32, .mr = 1,
               .nr = 32, .kr = 1, .max_m = 2, .k_chains = 2, A_F32_ROWS, B_F32, .output = qk_output_f32_avx2),
    /* fp32 4x32 to 12x32: a fused entry too (bias, residual, clamp on the sums in registers);
       the first whose max_m admits M is chosen, a last panel runs the narrowest that fits */
#define VNNI_F32_FUSED(fn, fused_fn, isa_, ...)                                                            \
    {.name = #fn, GEMM, F32, .isa = isa_, __VA_ARGS__, .gemm = fn, .fused = fused_fn},                    \
    {.name = #fn "_emu", GEMM, F32, .isa = isa_##_EMU, __VA_ARGS__, .gemm = fn##_emu, .fused = fused_fn##_emu}
    VNNI_F32_FUSED(f32_gemm_4x32_avx512vnni, f32_gemm_4x32_fused_avx512vnni, QK_ISA_AVX512VNNI, .mr = 4, .nr = 32,
                   .kr = 1, .max_m = 4, A_F32_ROWS, B_F32, .output = qk_output_f32_avx2),
    VNNI_F32_FUSED(f32_gemm_6x32_avx512vnni, f32_gemm_6x32_fused_avx512vnni, QK_ISA_AVX512VNNI, .mr = 6, .nr = 32,
                   .kr = 1, .max_m = 6, A_F32_ROWS, B_F32, .output = qk_output_f32_avx2),
    VNNI_F32_FUSED(f32_gemm_8x32_avx512vnni, f32_gemm_8x32_fused_avx512vnni, QK_ISA_AVX512VNNI, .mr = 8, .nr = 32,
                   .kr = 1, .max_m = 8, A_F32_ROWS, B_F32, .output = qk_output_f32_avx2),
    /* the 12x32 one has the indirect entries too (convolutions read in place), and both
       kinds of entries for a last panel of 16 columns */
    {.name = "f32_gemm_12x32_avx512vnni", GEMM, F32, .isa = QK_ISA_AVX512VNNI, .mr = 12, .nr = 32, .kr = 1,
     A_F32_ROWS, B_F32, .output = qk_output_f32_avx2, .gemm = f32_gemm_12x32_avx512vnni,
     .fused = f32_gemm_12x32_fused_avx512vnni, .igemm = f32_igemm_12x32_avx512vnni,
     .igemm_fused = f32_igemm_12x32_fused_avx512vnni, .fused16 = f32_gemm_12x16of32_fused_avx512vnni,
     .igemm_fused16 = f32_igemm_12x16of32_fused_avx512vnni},
    {.name = "f32_gemm_12x32_avx512vnni_emu", GEMM, F32, .isa = QK_ISA_AVX512VNNI_EMU, .mr = 12, .nr = 32, .kr = 1,
     A_F32_ROWS, B_F32, .output = qk_output_f32_avx2, .gemm = f32_gemm_12x32_avx512vnni_emu,
     .fused = f32_gemm_12x32_fused_avx512vnni_emu, .igemm = f32_igemm_12x32_avx512vnni_emu,
     .igemm_fused = f32_igemm_12x32_fused_avx512vnni_emu, .fused16 = f32_gemm_12x16of32_fused_avx512vnni_emu,
     .igemm_fused16 = f32_igemm_12x16of32_fused_avx512vnni_emu},
#undef VNNI_F32_FUSED
    VNNI_TWICE(qs8_dwconv_avx512vnni, dw_sum, qk_dw_sum_avx512vnni, QK_ISA_AVX512VNNI, DW_SUM, QS8, .width = 16),
    VNNI_TWICE(f32_dwconv_avx512vnni, dw_sum, qk_dw_sum_f32_avx512vnni, QK_ISA_AVX512VNNI, DW_SUM, F32, .width = 8),
#undef VNNI_GEMM
#undef VNNI_GEMM_FUSED
#undef VNNI_TWICE
#endif
#if defined(__aarch64__)
    /* ---- NEON (armv8-a), dot product (armv8.2-a+dotprod), i8mm; neondot and i8mm borrow
       the NEON depthwise and quantize kernels (sdot sums four bytes of one lane, which
       depthwise, one tap per channel, does not have) */
    {.name = "qs8_gemm_4x8_neon_mlal", GEMM, QS8, .isa = QK_ISA_NEON, .mr = 4, .nr = 8, .kr = 1,
     .a_pack = QK_PACK_I16, .b_pack = QK_PACK_I16, .gemm = qs8_gemm_4x8_neon_mlal, .output = qk_output_neon},
    {.name = "qs8_gemm_4x16c4_neondot", GEMM, QS8, .isa = QK_ISA_NEONDOT, .mr = 4, .nr = 16, .kr = 4,
     .a_pack = QK_PACK_S8, .b_pack = QK_PACK_S8, .gemm = qs8_gemm_4x16c4_neondot, .output = qk_output_neon},
    /* i8mm: 4 rows where M <= 4, else 8 (the 8x8 tile loads less per SMMLA; same B panels) */
    {.name = "qs8_gemm_4x8c8_i8mm", GEMM, QS8, .isa = QK_ISA_I8MM, .mr = 4, .nr = 8, .kr = 8,
     .a_pack = QK_PACK_S8, .b_pack = QK_PACK_S8, .max_m = 4, .gemm = qs8_gemm_4x8c8_i8mm, .output = qk_output_neon},
    {.name = "qs8_gemm_8x8c8_i8mm", GEMM, QS8, .isa = QK_ISA_I8MM, .mr = 8, .nr = 8, .kr = 8,
     .a_pack = QK_PACK_S8, .b_pack = QK_PACK_S8, .gemm = qs8_gemm_8x8c8_i8mm, .output = qk_output_neon},
    {.name = "f16_gemm_8x8_neonfp16", GEMM, F16, .isa = QK_ISA_NEONDOT, .mr = 8, .nr = 8, .kr = 1,
     .a_pack = QK_PACK_F16, .b_pack = QK_PACK_F16, .needs_fp16_arith = 1, .gemm = f16_gemm_8x8_neonfp16,
     .output = qk_output_f16_neon},
    {.name = "f16_gemm_8x8_neon", GEMM, F16, .isa = QK_ISA_NEON, .mr = 8, .nr = 8, .kr = 1,
     .a_pack = QK_PACK_F32, .b_pack = QK_PACK_F16, .gemm = f16_gemm_8x8_neon, .output = qk_output_f16_neon},
    {.name = "qs8_dwconv_neon", DW_SUM, QS8, .isa = QK_ISA_NEON, .dw_sum = qk_dw_sum_neon, .width = 16},
    {.name = "f16_dwconv_neon", DW_SUM, F16, .isa = QK_ISA_NEON, .dw_sum = qk_dw_sum_f16_neon, .width = 8},
    {.name = "f32_gemm_8x8_neon", GEMM, F32, .isa = QK_ISA_NEON, .mr = 8, .nr = 8, .kr = 1, A_F32, B_F32,
     .gemm = f32_gemm_8x8_neon, .output = qk_output_f32_neon},
    {.name = "f32_dwconv_neon", DW_SUM, F32, .isa = QK_ISA_NEON, .dw_sum = qk_dw_sum_f32_neon, .width = 8},
    {.name = "qs8_quantize_neon", QUANTIZE, .isa = QK_ISA_NEON, .quantize = qk_quantize_row_neon},
    {.name = "qs8_dequantize_neon", DEQUANTIZE, .isa = QK_ISA_NEON, .dequantize = qk_dequantize_row_neon},
#endif
};

int qk_ukernel_count(void) { return (int)(sizeof(kernels) / sizeof(kernels[0])); }

const qk_ukernel *qk_ukernel_get(int id) { return id >= 0 && id < qk_ukernel_count() ? &kernels[id] : NULL; }

/* CPU features once: cpuid traps to the hypervisor in VMs (tens of microseconds). */
static uint32_t features(void) {
    static volatile int64_t cached = -1;   /* benign race: every thread stores the same value */
    if (cached < 0) cached = qk_cpu_features();
    return (uint32_t)cached;
}

/* The path below an ISA path, whose kernels a CPU with it can run (-1: none). */
static int lesser_isa(int isa) {
    switch (isa) {
    case QK_ISA_I8MM: return QK_ISA_NEONDOT;
    case QK_ISA_NEONDOT: return QK_ISA_NEON;
    case QK_ISA_AVX512VNNI: case QK_ISA_AVXVNNI: case QK_ISA_AVX512VNNI_EMU: case QK_ISA_AVXVNNI_EMU:
        return QK_ISA_AVX2;
    case QK_ISA_SCALAR: return -1;
    default: return QK_ISA_SCALAR;
    }
}

static int select_exact(int kind, int dtype, int isa, size_t m, int b_pairs_128) {
    const int fp16_arith = (features() & QK_CPU_ASIMDHP) != 0;
    for (int id = 0; id < qk_ukernel_count(); id++) {
        const qk_ukernel *k = &kernels[id];
        if (k->kind == kind && k->dtype == dtype && k->isa == isa && (k->max_m == 0 || m <= k->max_m) &&
            (!k->needs_pairs_128 || b_pairs_128) && (!k->needs_fp16_arith || fp16_arith))
            return id;
    }
    return -1;
}

static int select_or_lesser(int kind, int dtype, int isa, size_t m, int b_pairs_128) {
    int id = -1;
    for (; id < 0 && isa >= 0; isa = lesser_isa(isa)) id = select_exact(kind, dtype, isa, m, b_pairs_128);
    return id;
}

int qk_gemm_kernel_select(int dtype, int isa, size_t m, int b_pairs_128) {
    if (dtype == QK_DTYPE_QS8) return select_exact(QK_KIND_GEMM, dtype, isa, m, b_pairs_128);
    return select_or_lesser(QK_KIND_GEMM, dtype, isa, m, b_pairs_128);
}

const qk_ukernel *qk_ukernel_for_isa(int kind, int dtype, int isa) {
    return qk_ukernel_get(select_or_lesser(kind, dtype, isa, 0, 0));
}

static void f16_to_f32_row_portable(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = qk_f16_to_f32(src[i]);
}

qk_f16_row_fn qk_f16_row_converter(void) {
#if defined(__x86_64__)
    if (features() & QK_CPU_F16C) return qk_f16_to_f32_row_f16c;
#elif defined(__aarch64__)
    return qk_f16_to_f32_row_neon;
#endif
    return f16_to_f32_row_portable;
}
