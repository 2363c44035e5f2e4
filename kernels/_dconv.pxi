# Direct fp32 convolution of small patches (kernels/include/qk_dconv.h): bound calls.

cdef extern from "qk_dconv.h" nogil:
    size_t QK_DCONV_MAX_K
    size_t QK_DCONV_BUF_FLOATS
    ctypedef void (*qk_f32_dconv_fn)(const qk_conv_geom *g, size_t m0, size_t m1, size_t n, const float *w,
                                     const float *bias, float lo, float hi, float *c, size_t c_stride, float *buf)
    qk_f32_dconv_fn qk_f32_dconv_for_isa(int isa)


def dconv_available(int isa, size_t k, size_t n):
    """Whether ISA path ``isa`` has the direct fp32 kernel for K = kh*kw*cg and N outputs."""
    return 0 <= isa < QK_ISA_COUNT and qk_f32_dconv_for_isa(isa) != NULL and 0 < k <= QK_DCONV_MAX_K \
        and n > 0 and n % 16 == 0


cdef class BoundDconv(Bound):
    """One direct fp32 convolution bound to its arrays (as BoundGemm); ``run()`` repeats it."""
    cdef qk_conv_geom g
    cdef qk_f32_dconv_fn fn
    cdef const float *w
    cdef const float *bias
    cdef float lo, hi
    cdef float *c
    cdef float *buf
    cdef size_t m, n, c_stride, chunk
    cdef int nt
    cdef object keep
    # padded: the input copied into a zero-bordered NHWC buffer first (src: where from)
    cdef qk_conv_geom src
    cdef float *padded
    cdef size_t pad_h, pad_w

    def __dealloc__(self):
        free(self.buf)
        free(self.padded)

    cdef void _pad_copy(self) noexcept nogil:
        """The input into the padded buffer's interior (its border stays zero)."""
        cdef const qk_conv_geom *s = &self.src
        cdef size_t n_img = self.m // (s.out_h * s.out_w), row = s.in_w * s.cg
        cdef size_t i, y
        cdef float *d
        cdef const uint8_t *r
        for i in range(n_img):
            for y in range(s.in_h):
                d = self.padded + ((i * self.pad_h + y + <size_t>s.pad_top) * self.pad_w + <size_t>s.pad_left) * s.cg
                r = s.x + <Py_ssize_t>i * s.sn + <Py_ssize_t>y * s.sh
                if s.sc == 4 and s.sw == <Py_ssize_t>(4 * s.cg):
                    memcpy(d, r, row * 4)
                else:   # (an NCHW input: the row's channels to pixels, the layout's transpose)
                    qk_transpose(1, 4, s.cg, s.in_w, r, s.sc, s.sw, <uint8_t *>d, s.cg * 4)

    cdef void execute(self) noexcept nogil:
        cdef Py_ssize_t t
        cdef size_t chunk = self.chunk
        if self.buf == NULL or self.m == 0:
            return
        if self.padded != NULL:
            self._pad_copy()
        if self.nt == 1:
            self.fn(&self.g, 0, self.m, self.n, self.w, self.bias, self.lo, self.hi, self.c, self.c_stride, self.buf)
        else:
            for t in prange(self.nt, num_threads=self.nt, schedule="static"):
                self.fn(&self.g, t * chunk, min(self.m, (t + 1) * chunk), self.n, self.w, self.bias, self.lo,
                        self.hi, self.c, self.c_stride, self.buf + t * QK_DCONV_BUF_FLOATS)


def dconv_float(int isa, ConvSource src, cnp.ndarray w, cnp.ndarray bias, float lo, float hi, cnp.ndarray out,
                int num_threads, bint bind=False, bint pad_copy=True):
    """Direct fp32 convolution of ``src`` (elem 4, byte strides multiples of 4) by ``w``
    (K, N) float32 C-contiguous, K = kh*kw*cg in (ky, kx, c) order, plus ``bias`` (N,)
    float32, clamped to [lo, hi], into ``out`` (pixels, N) float32, columns adjacent; the
    bound call (BoundDconv) when ``bind``, else run once. ``pad_copy``: a small padded
    input is copied into a zero-bordered buffer first (else the kernel gathers the windows
    that reach the padding). ValueError where the ISA path has no such kernel or the
    arrays do not fit."""
    cdef size_t k = src.k
    if src.g.elem != 4 or w.ndim != 2 or <size_t>w.shape[0] != k or w.dtype != np.float32 \
            or not w.flags.c_contiguous or bias.dtype != np.float32 or bias.ndim != 1 \
            or bias.shape[0] != w.shape[1] or not bias.flags.c_contiguous or out.dtype != np.float32 \
            or out.ndim != 2 or <size_t>out.shape[0] != src.m or out.shape[1] != w.shape[1] \
            or (out.shape[1] > 1 and out.strides[1] != 4) or out.strides[0] <= 0 or not out.flags.writeable \
            or any(s % 4 for s in (src.g.sn, src.g.sh, src.g.sw, src.g.sc, out.strides[0])) \
            or not dconv_available(isa, k, w.shape[1]):
        raise ValueError("dconv_float: fp32 arrays that fit, on an ISA path with the direct kernel")
    cdef BoundDconv b = BoundDconv.__new__(BoundDconv)
    b.g, b.fn, b.keep, b.out = src.g, qk_f32_dconv_for_isa(isa), (src, w, bias), out
    b.w, b.bias, b.lo, b.hi = <const float *>_ptr(w), <const float *>_ptr(bias), lo, hi
    b.c, b.c_stride, b.m, b.n = <float *>_ptr(out), out.strides[0], src.m, w.shape[1]
    b.nt = <int>max(1, min(<size_t>max(1, num_threads), b.m // 256 if b.m >= 256 else 1))
    b.chunk = (b.m + b.nt - 1) // b.nt
    b.buf = <float *>malloc(sizeof(float) * QK_DCONV_BUF_FLOATS * b.nt)
    if b.buf == NULL:
        raise MemoryError("cannot allocate the direct convolution's buffers")
    # Padding: a zero-bordered copy of the input where it is small (a 1-channel 8 x 8
    # image's windows nearly all reach the padding: gathered one by one, they cost more
    # than the copy), so that every window reads the copy in place.
    cdef qk_conv_geom *g = &b.g
    cdef size_t n_img = b.m // (g.out_h * g.out_w) if b.m else 0
    cdef size_t ph = max(g.in_h + <size_t>max(g.pad_top, 0),
                         (g.out_h - 1) * g.stride_y + (g.kh - 1) * g.dil_y + 1) if b.m else 0
    cdef size_t pwd = max(g.in_w + <size_t>max(g.pad_left, 0),
                          (g.out_w - 1) * g.stride_x + (g.kw - 1) * g.dil_x + 1) if b.m else 0
    if pad_copy and b.m and (g.pad_top > 0 or g.pad_left > 0 or ph > g.in_h or pwd > g.in_w) and g.pad_top >= 0 \
            and g.pad_left >= 0 and n_img * ph * pwd * g.cg * 4 <= (4 << 20):
        b.padded = <float *>calloc(n_img * ph * pwd * g.cg, sizeof(float))
        if b.padded == NULL:
            raise MemoryError("cannot allocate the direct convolution's buffers")
        b.src, b.pad_h, b.pad_w = b.g, ph, pwd
        g.x = <const uint8_t *>b.padded
        g.sc, g.sw = 4, 4 * g.cg
        g.sh, g.sn = g.sw * pwd, g.sw * pwd * ph
        g.in_h, g.in_w, g.pad_top, g.pad_left = ph, pwd, 0, 0
    return b if bind else b.run()
