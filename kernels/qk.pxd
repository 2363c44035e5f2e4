# The C side of the native extension, declared once (kernels/include/qk_*.h): what the
# Cython drivers (_native.pyx: `from qk cimport *`) may call and read.
from libc.stdint cimport int8_t, uint8_t, int16_t, int32_t, uint16_t, int64_t

cdef extern from "qk_cpu.h" nogil:
    int QK_ISA_COUNT
    const char *qk_isa_name(int isa)
    unsigned int qk_cpu_features()
    const char *qk_cpu_arch()

cdef extern from "qk_pack.h" nogil:
    int QK_PACK_I16, QK_PACK_S8, QK_PACK_U8, QK_PACK_F32, QK_PACK_F16, QK_PACK_F32_ROWS, QK_PACK_SRC_F32
    size_t qk_pack_elem_size(int pack)
    void qk_pack_b(int pack, int nr, int kr, size_t k, size_t n, const void *b, int b_signed,
                   Py_ssize_t stride_k, Py_ssize_t stride_n, const int32_t *zb, void *packed,
                   int32_t *col_sum)
    void qk_pack_a(int pack, int mr, int kr, size_t m, size_t k, const void *a, int a_signed,
                   Py_ssize_t stride_m, Py_ssize_t stride_k, int32_t za, void *packed,
                   int32_t *row_sum)
    size_t qk_packed_b_bytes(int pack, int nr, int kr, size_t k, size_t n)
    size_t qk_packed_a_bytes(int pack, int mr, int kr, size_t m, size_t k)

cdef extern from "qk_output.h" nogil:
    int QK_OUT_INT32, QK_OUT_FP32, QK_OUT_FIXEDPOINT, QK_OUT_FIXEDPOINT_UP, QK_OUT_F16, QK_OUT_F32, QK_OUT_DQ_F32
    int QK_ACT_NONE, QK_ACT_HSWISH_DIV, QK_ACT_ELT
    ctypedef struct qk_out_params:
        int mode
        int out_signed
        int32_t zero_point
        int32_t lo, hi
        const int32_t *col_add
        const int32_t *col_zb
        const int32_t *row_sum
        const float *scale
        const int32_t *mult
        const int32_t *shift
        const float *bias_f
        float flo, fhi
        const float *res_f
        size_t res_stride
        int act
        float act_add, act_lo, act_hi, act_div
        void (*act_fn)(int, float, float, size_t, const float *, float *) noexcept nogil
        int act_op
        const void *post_b
        size_t post_stride
        float post_s1, post_sb, post_sy
        int32_t post_z1, post_zb, post_zy
        void (*post_fn)(size_t, int, int, const void *, float, int32_t, const void *, float, int32_t, float,
                        int32_t, void *)
        void (*dq_rows)(size_t, size_t, const int32_t *, size_t, const int32_t *, const float *, const int32_t *,
                        int, const int32_t *, const float *, const float *, float *, size_t) noexcept nogil
        const float *dq_sa
        const int32_t *dq_za
        const int32_t *dq_cb
    ctypedef void (*qk_output_fn)(size_t, size_t, const int32_t *, size_t, size_t, size_t,
                                  const qk_out_params *, void *, size_t)

cdef extern from "qk_gemm.h" nogil:
    int QK_DTYPE_QS8, QK_DTYPE_F16, QK_DTYPE_F32
    ctypedef void (*qk_gemm_ukernel_fn)(size_t, const void *, const void *, int32_t *)
    ctypedef void (*qk_gemm_fused_fn)(size_t, const void *, const void *, size_t, size_t, size_t,
                                      const qk_out_params *, void *, size_t)

cdef extern from "qk_conv.h" nogil:
    int QK_DW_PIXELS
    ctypedef struct qk_conv_geom:
        const uint8_t *x
        Py_ssize_t sn, sh, sw, sc
        size_t in_h, in_w, out_h, out_w, kh, kw, cg
        size_t stride_y, stride_x, dil_y, dil_x
        Py_ssize_t pad_top, pad_left
        uint8_t pad
        size_t elem
    void qk_pack_a_conv(int pack, int mr, int kr, const qk_conv_geom *g, size_t r0, size_t rows,
                        int a_signed, int32_t za, uint8_t *scratch, void *packed, int32_t *row_sum, int isa)
    ctypedef struct qk_dw_params:
        qk_conv_geom g
        size_t mult
        const int16_t *w
        int32_t za
        int a_signed
        int dtype
        const float *wf
        size_t taps
        const uint8_t *zero_pixel
        const int32_t *init
        const qk_out_params *out
        void *c
        size_t c_stride
        const uint8_t *vnni
    void qk_dw_prepare(qk_dw_params *d, uint8_t *zero_pixel, int32_t *init)
    size_t qk_dw_vnni_size(const qk_dw_params *d)
    void qk_dw_pack_vnni(qk_dw_params *d, void *buf)
    ctypedef size_t (*qk_dw_sum_fn)(const qk_dw_params *d, size_t count, const uint8_t *const *ptrs,
                                    size_t ptr_stride, Py_ssize_t step, size_t c0, int32_t *acc,
                                    size_t acc_stride, size_t m0, size_t *stored)
    void qk_dwconv(const qk_dw_params *d, qk_dw_sum_fn sum, qk_output_fn output, size_t p0, size_t p1,
                   const qk_out_params *p, void *c, size_t c_stride, int32_t *acc)

cdef extern from "qk_quant.h" nogil:
    ctypedef size_t (*qk_quantize_row_fn)(size_t n, const float *x, const float *scale, const int32_t *zp,
                                          int per_elem, int out_signed, void *q, int *nan)
    ctypedef size_t (*qk_dequantize_row_fn)(size_t n, const void *q, int in_signed, const float *scale,
                                            const int32_t *zp, int per_elem, float *y)
    int qk_quantize_range(qk_quantize_row_fn row, size_t i0, size_t i1, size_t channels, size_t inner,
                          const float *x, const float *scale, const int32_t *zp, int out_signed, void *q)
    void qk_dequantize_range(qk_dequantize_row_fn row, size_t i0, size_t i1, size_t channels, size_t inner,
                             const void *q, int in_signed, const float *scale, const int32_t *zp, float *y)
    int QK_BINARY_ADD, QK_BINARY_MUL
    void qk_qlinear_binary(size_t n, int op, int is_signed, const void *a, float sa, int32_t za, const void *b,
                           float sb, int32_t zb, float sy, int32_t zy, void *y)
    ctypedef void (*qk_qbinary_fn)(size_t, int, int, const void *, float, int32_t, const void *, float, int32_t,
                                   float, int32_t, void *)
    qk_qbinary_fn qk_qlinear_binary_for_isa(int isa)

cdef extern from "qk_tfl.h" nogil:
    void qk_tfl_binary(size_t n, int op, int is_signed, const void *a, const void *b, const int32_t *ta,
                       const int32_t *tb, int32_t za, int32_t zb, int32_t mult, int32_t shift, int32_t zy,
                       int32_t lo, int32_t hi, void *y)
    ctypedef void (*qk_tfl_binary_fn)(size_t, int, int, const void *, const void *, const int32_t *,
                                      const int32_t *, int32_t, int32_t, int32_t, int32_t, int32_t, int32_t,
                                      int32_t, void *)
    qk_tfl_binary_fn qk_tfl_binary_for_isa(int isa)
    void qk_tfl_mean(size_t outer, size_t count, size_t inner, int is_signed, const void *x, int64_t mult,
                     int64_t offset, int right, int32_t zy, int32_t *acc, void *y)
    void qk_tfl_softmax(size_t rows, size_t length, int is_signed, const void *x, const float *table, float sy,
                        float zy, void *y)

cdef extern from "qk_registry.h" nogil:
    int QK_KIND_GEMM, QK_KIND_DW_SUM, QK_KIND_QUANTIZE, QK_KIND_DEQUANTIZE
    ctypedef struct qk_ukernel:
        const char *name
        int kind
        int isa
        int dtype
        int mr, nr, kr
        int a_pack, b_pack
        size_t max_m
        int needs_pairs_128
        int needs_fp16_arith
        qk_gemm_ukernel_fn gemm
        qk_output_fn output
        qk_gemm_fused_fn fused
        qk_dw_sum_fn dw_sum
        int width
        qk_quantize_row_fn quantize
        qk_dequantize_row_fn dequantize
    int qk_ukernel_count()
    const qk_ukernel *qk_ukernel_get(int id)
    int qk_gemm_kernel_select(int dtype, int isa, size_t m, int b_pairs_128)
    const qk_ukernel *qk_ukernel_for_isa(int kind, int dtype, int isa)
    void qk_gemm_block(const qk_ukernel *kern, size_t k, size_t m0, size_t m1, size_t n0,
                       size_t n1, const void *a_packed, const void *b_packed,
                       const qk_out_params *p, void *c, size_t c_stride)

cdef extern from "qk_conv.h" nogil:
    size_t qk_iconv_seg_len(const qk_ukernel *kern, const qk_conv_geom *g)
    size_t qk_iconv_col_block(const qk_ukernel *kern, const qk_conv_geom *g)
    void qk_iconv_block(const qk_ukernel *kern, const qk_conv_geom *g, size_t seg_len, size_t m0, size_t m1,
                        size_t n, const void *b_packed, const qk_out_params *p, void *c, size_t c_stride,
                        const void **ptrs, uint8_t *scratch, const void *zero)

cdef extern from "qk_layout.h" nogil:
    void qk_transpose(int simd, size_t elem, size_t rows, size_t cols, const uint8_t *src, Py_ssize_t s_row,
                      Py_ssize_t s_col, uint8_t *dst, Py_ssize_t d_row)

cdef extern from "qk_pool.h" nogil:
    void qk_global_avg_f32(const float *x, size_t n, size_t c, size_t pixels, Py_ssize_t sn, Py_ssize_t sc,
                           Py_ssize_t sp, double *acc, float *y)
    void qk_global_avg_q8(const void *x, int is_signed, size_t n, size_t c, size_t pixels, Py_ssize_t sn,
                          Py_ssize_t sc, Py_ssize_t sp, int32_t zx, float scale, int32_t zy, int64_t *acc, void *y)
    void qk_maxpool_f32(int isa, const float *x, size_t n, size_t c, size_t h, size_t w, const Py_ssize_t *xs, size_t oh,
                        size_t ow, const size_t *geom, const Py_ssize_t *pad, float *y, const Py_ssize_t *ys)
    void qk_maxpool_s8(int isa, const int8_t *x, size_t n, size_t c, size_t h, size_t w, const Py_ssize_t *xs, size_t oh,
                       size_t ow, const size_t *geom, const Py_ssize_t *pad, int8_t *y, const Py_ssize_t *ys)
    void qk_maxpool_u8(int isa, const uint8_t *x, size_t n, size_t c, size_t h, size_t w, const Py_ssize_t *xs, size_t oh,
                       size_t ow, const size_t *geom, const Py_ssize_t *pad, uint8_t *y, const Py_ssize_t *ys)

cdef extern from "qk_dynquant.h" nogil:
    ctypedef int (*qk_minmax_fn)(size_t n, const float *x, float *mn, float *mx)
    ctypedef void (*qk_dq_rows_fn)(size_t m, size_t n, const int32_t *acc, size_t acc_stride, const int32_t *add,
                                   const float *sa,
                                   const int32_t *za, int per_row, const int32_t *cb, const float *sw,
                                   const float *bias, float *y, size_t y_stride)
    ctypedef struct qk_dynq_fns:
        qk_minmax_fn minmax
        qk_dq_rows_fn dq_rows
    qk_dynq_fns qk_dynq_for_isa(int isa)
    int qk_dynq_params(float mn, float mx, float *scale, int32_t *zp)
    void qk_dynq_columns(size_t n, float sa, int32_t za, const int32_t *add0, const int32_t *cb, const float *sw,
                         int32_t *add, float *scale)
    int qk_dynq_quantize(qk_minmax_fn minmax, qk_quantize_row_fn qrow, size_t m, size_t k, const float *x,
                         Py_ssize_t x_stride, int per_row, uint8_t *q, float *sa, int32_t *za)
