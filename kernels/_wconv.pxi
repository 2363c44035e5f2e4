# Winograd F(2x2, 3x3) fp32 convolution (kernels/include/qk_wconv.h): bound calls.

cdef extern from "qk_wconv.h" nogil:
    size_t QK_WCONV_MR
    size_t QK_WCONV_NR
    ctypedef struct qk_wconv:
        qk_conv_geom g
        size_t n, tiles_h, tiles_w
        const float *u
        size_t u_stride
        const float *bias
        float lo, hi
        const float *residual
        size_t r_stride
        float *c
        size_t c_stride
        const float *zero
    ctypedef void (*qk_f32_wconv_fn)(const qk_wconv *w, size_t t0, size_t t1, float *scratch)
    qk_f32_wconv_fn qk_f32_wconv_for_isa(int isa)
    int qk_wconv_set_kernel(qk_wconv *w, const qk_ukernel *kern)
    size_t qk_wconv_scratch_floats(size_t cg)


def wconv_kernel(int isa):
    """Id of the fp32 GEMM kernel that runs ISA path ``isa``'s Winograd convolution (its U
    panels are packed for it), or -1 where that path has none."""
    cdef qk_wconv w
    if not 0 <= isa < QK_ISA_COUNT or qk_f32_wconv_for_isa(isa) == NULL:
        return -1
    cdef int kid = qk_gemm_kernel_select(QK_DTYPE_F32, isa, 1 << 20, False)
    return kid if kid >= 0 and qk_wconv_set_kernel(&w, qk_ukernel_get(kid)) else -1


cdef class BoundWconv(Bound):
    """One Winograd convolution bound to its arrays (as BoundGemm); ``run()`` repeats it."""
    cdef qk_wconv w
    cdef qk_f32_wconv_fn fn
    cdef float *scratch          # 64-byte aligned in raw
    cdef void *raw
    cdef size_t tiles, chunk, per_thread
    cdef int nt
    cdef object keep

    def __dealloc__(self):
        free(self.raw)

    cdef void execute(self) noexcept nogil:
        cdef Py_ssize_t t
        cdef size_t chunk = self.chunk
        if self.tiles == 0:
            return
        if self.nt == 1:
            self.fn(&self.w, 0, self.tiles, self.scratch)
        else:
            for t in prange(self.nt, num_threads=self.nt, schedule="static"):
                self.fn(&self.w, t * chunk, min(self.tiles, (t + 1) * chunk), self.scratch + t * self.per_thread)


def wconv_float(int isa, ConvSource src, cnp.ndarray u, cnp.ndarray bias, float lo, float hi, cnp.ndarray out,
                int num_threads, bint bind=False, object residual=None):
    """Winograd F(2x2, 3x3) fp32 convolution of ``src`` (a 3 x 3 window of stride and
    dilation 1, elem 4, channels adjacent, cg a multiple of 16) by ``u``: the 16 transformed
    weight matrices U[xi] (cg, N), each packed for kernel ``wconv_kernel(isa)`` (pack_b), as
    one (16, panel bytes) uint8 array; plus ``bias`` (N,) float32, (plus ``residual``, the
    output's shape, columns adjacent), clamped to [lo, hi], into ``out`` (pixels, N) float32,
    columns adjacent, N a multiple of 16. The bound call (BoundWconv) when ``bind``, else run
    once. ValueError where the path has no such kernel or the arrays do not fit."""
    cdef qk_conv_geom *g = &src.g
    cdef int kid = wconv_kernel(isa)
    cdef size_t n = out.shape[1] if out.ndim == 2 else 0
    cdef size_t nr = qk_ukernel_get(kid).nr if kid >= 0 else 1
    cdef size_t panels = (n + nr - 1) // nr
    if kid < 0 or g.elem != 4 or g.kh != 3 or g.kw != 3 or g.stride_y != 1 or g.stride_x != 1 or g.dil_y != 1 \
            or g.dil_x != 1 or g.sc != 4 or g.cg == 0 or g.cg % 16 or g.pad_top < 0 or g.pad_left < 0 \
            or any(s % 4 for s in (g.sn, g.sh, g.sw)) or n == 0 or n % 16 or out.dtype != np.float32 \
            or <size_t>out.shape[0] != src.m or out.strides[1] != 4 or out.strides[0] <= 0 \
            or not out.flags.writeable or u.dtype != np.uint8 or u.ndim != 2 or u.shape[0] != 16 \
            or not u.flags.c_contiguous or <size_t>u.shape[1] != panels * g.cg * nr * 4 \
            or bias.dtype != np.float32 or bias.ndim != 1 or <size_t>bias.shape[0] != n \
            or not bias.flags.c_contiguous:
        raise ValueError("wconv_float: fp32 arrays that fit, a 3 x 3 window of stride 1, on a path with the kernel")
    if residual is not None and (not isinstance(residual, np.ndarray) or residual.dtype != np.float32
                                 or residual.ndim != 2 or residual.shape[0] != out.shape[0]
                                 or <size_t>residual.shape[1] != n or residual.strides[1] != 4
                                 or residual.strides[0] < 0):
        raise ValueError("wconv_float: the residual must be float32 (pixels, N), columns adjacent")
    cdef BoundWconv b = BoundWconv.__new__(BoundWconv)
    cdef cnp.ndarray zero = np.zeros(g.cg, np.float32)
    b.fn, b.keep, b.out = qk_f32_wconv_for_isa(isa), (src, u, bias, zero, residual), out
    b.w.g = src.g
    qk_wconv_set_kernel(&b.w, qk_ukernel_get(kid))
    b.w.n, b.w.tiles_h, b.w.tiles_w = n, (g.out_h + 1) // 2, (g.out_w + 1) // 2
    b.w.u, b.w.u_stride = <const float *>_ptr(u), u.shape[1] // 4
    b.w.bias, b.w.lo, b.w.hi = <const float *>_ptr(bias), lo, hi
    b.w.residual = <const float *>_ptr(<cnp.ndarray>residual) if residual is not None else NULL
    b.w.r_stride = residual.strides[0] if residual is not None else 0
    b.w.c, b.w.c_stride, b.w.zero = <float *>_ptr(out), out.strides[0], <const float *>_ptr(zero)
    b.tiles = (src.m // (g.out_h * g.out_w) if src.m else 0) * b.w.tiles_h * b.w.tiles_w
    # threads take whole blocks of 12 tiles, at least 4 each
    b.nt = <int>max(1, min(<size_t>max(1, num_threads), b.tiles // (4 * QK_WCONV_MR)))
    b.chunk = ((b.tiles + b.nt - 1) // b.nt + QK_WCONV_MR - 1) // QK_WCONV_MR * QK_WCONV_MR
    b.per_thread = qk_wconv_scratch_floats(g.cg)
    b.per_thread = (b.per_thread + 15) // 16 * 16   # each thread's V on a line of its own
    b.raw = malloc(sizeof(float) * b.per_thread * b.nt + 64)
    b.scratch = <float *>(<char *>b.raw + (-<uintptr_t>b.raw) % 64)
    if b.raw == NULL:
        raise MemoryError("cannot allocate the Winograd convolution's scratch")
    return b if bind else b.run()
