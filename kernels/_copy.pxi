# Data movement (kernels/copy.c, qk_copy.h): strided copies, fills and table copies bound
# to fixed arrays, for the graph runner's Concat, Split, Slice, Pad, Transpose,
# DepthToSpace, SpaceToDepth and QLinearConcat (graph/backends/cpu_movement.py).
# Included at the end of _native.pyx.

cdef extern from "qk_copy.h" nogil:
    ctypedef struct qk_copy_op:
        size_t ndim
        int transpose
        size_t shape[8]
    int qk_copy_prepare(qk_copy_op *op, size_t elem, size_t ndim, const size_t *shape, uint8_t *dst,
                        const Py_ssize_t *s_dst, const uint8_t *src, const Py_ssize_t *s_src, const uint8_t *table,
                        const uint8_t *value)
    void qk_copy_run(const qk_copy_op *op, int simd)


cdef inline bint _same_place(cnp.ndarray a, cnp.ndarray b):
    """Whether a and b are the same elements of the same memory (a copy would do nothing)."""
    return _ptr(a) == _ptr(b) and (<object>a).shape == (<object>b).shape and (<object>a).strides == \
        (<object>b).strides and a.dtype.itemsize == b.dtype.itemsize


cdef class BoundCopy(Bound):
    """Data movement bound to fixed arrays: a list of moves, each one of

    * ``(dst, src)``: dst[...] = src, arrays of one shape and dtype (src any strides:
      negative, zero for broadcasting); nothing when src is dst's very elements;
    * ``(dst, None, value)``: dst[...] = value (a scalar of dst's dtype);
    * ``(dst, src, table)``: dst[...] = table[src], 1-byte arrays, table 256 uint8;

    of elements of 1, 2, 4 or 8 bytes (any dtype: moved as bytes, so exact), prepared
    once (dimensions merged, the order fixed, see qk_copy.h); ``execute`` runs them in
    order without the GIL. ``out``: the array ``run()`` returns. A destination must not
    overlap its source (ValueError)."""
    cdef qk_copy_op *ops
    cdef size_t n
    cdef int simd
    cdef object keep

    def __cinit__(self, moves, out=None, bint simd=True):
        moves = list(moves)
        self.ops = <qk_copy_op *>malloc(sizeof(qk_copy_op) * max(1, len(moves)))
        if self.ops == NULL:
            raise MemoryError("cannot allocate the copies")
        self.simd, self.out, self.n = simd, out, 0
        keep = []
        cdef cnp.ndarray dst, src, table
        cdef Py_ssize_t shape[64]
        cdef Py_ssize_t sd[64]
        cdef Py_ssize_t ss[64]
        cdef uint8_t value[8]
        cdef const uint8_t *sp
        cdef const uint8_t *tp
        cdef size_t i, nd, elem
        for move in moves:
            if not isinstance(move, tuple) or len(move) not in (2, 3):
                raise TypeError("a move is (dst, src), (dst, None, value) or (dst, src, table)")
            dst = _move_array(move[0], "dst")
            if not dst.flags.writeable:
                raise ValueError("dst is read-only")
            elem, nd = dst.itemsize, dst.ndim
            if elem not in (1, 2, 4, 8):
                raise TypeError(f"elements of 1, 2, 4 or 8 bytes, got {dst.dtype}")
            sp = tp = NULL
            if move[1] is None:                                      # a fill
                if len(move) != 3:
                    raise TypeError("a fill is (dst, None, value)")
                v = np.asarray(move[2]).astype(dst.dtype)
                if v.ndim != 0:
                    raise ValueError("a fill's value is one scalar")
                raw = v.tobytes()
                for i in range(elem):
                    value[i] = raw[i]
            else:
                src = _move_array(move[1], "src")
                if (<object>src).shape != (<object>dst).shape:
                    raise ValueError(f"src has shape {(<object>src).shape}, dst {(<object>dst).shape}")
                if len(move) == 3:                                   # through a table
                    table = _move_array(move[2], "table")
                    if table.dtype != np.uint8 or table.ndim != 1 or table.shape[0] != 256 or \
                            not table.flags.c_contiguous or elem != 1 or src.itemsize != 1:
                        raise ValueError("a table is 256 contiguous uint8, for 1-byte src and dst")
                    tp = <const uint8_t *>_ptr(table)
                    keep.append(table)
                elif src.dtype != dst.dtype:
                    raise TypeError(f"src is {src.dtype}, dst {dst.dtype}")
                elif _same_place(src, dst):
                    continue                                         # already in place
                if dst.size and np.may_share_memory(src, dst):
                    try:
                        overlap = np.shares_memory(src, dst, max_work=1 << 16)
                    except np.exceptions.TooHardError:
                        overlap = True
                    if overlap:
                        raise ValueError("dst overlaps src")
                sp = <const uint8_t *>_ptr(src)
                for i in range(nd):
                    ss[i] = src.strides[i]
                keep.append(src)
            for i in range(nd):
                shape[i], sd[i] = dst.shape[i], dst.strides[i]
            if qk_copy_prepare(&self.ops[self.n], elem, nd, <const size_t *>shape, <uint8_t *>_ptr(dst), sd,
                               sp, ss, tp, value) != 0:
                raise ValueError(f"cannot copy into an array of strides {(<object>dst).strides} "
                                 f"(a zero stride, or more than 8 dimensions that do not merge)")
            keep.append(dst)
            self.n += 1
        self.keep = keep

    def __dealloc__(self):
        free(self.ops)

    def __len__(self):
        return self.n

    def info(self):
        """Per prepared move: (its dimensions after merging, whether it runs as a 2-D
        transpose), for tests."""
        cdef size_t i, d
        return [(tuple([self.ops[i].shape[d] for d in range(self.ops[i].ndim)]), self.ops[i].transpose >= 0)
                for i in range(self.n)]

    cdef void execute(self) noexcept nogil:
        cdef size_t i
        for i in range(self.n):
            qk_copy_run(&self.ops[i], self.simd)


cdef cnp.ndarray _move_array(x, str name):
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(x).__name__}")
    if x.dtype.kind not in "biufcmM":
        raise TypeError(f"{name}: numbers, got {x.dtype}")
    return x


def copy_into(dst, src, bint simd=True):
    """dst[...] = src (one shape and dtype, any strides; src may broadcast through zero
    strides) on the native strided copy; returns dst."""
    BoundCopy([(dst, src)], dst, simd).run()
    return dst


def copy_same(cnp.ndarray dst, cnp.ndarray src):
    """dst[...] = src by one memmove where both are aligned C-contiguous arrays of one
    shape and dtype (a graph plan's feed: numpy's assignment cost 0.5 us of a 13 us
    FullyConnected run); False, nothing copied, for any other pair."""
    if not (cnp.PyArray_ISCARRAY(dst) and cnp.PyArray_ISCARRAY_RO(src) and cnp.PyArray_SAMESHAPE(dst, src) and
            cnp.PyArray_EquivTypes(dst.dtype, src.dtype)):
        return False
    memmove(_ptr(dst), _ptr(src), <size_t>cnp.PyArray_NBYTES(dst))
    return True


def fill(dst, value):
    """dst[...] = value on the native fill; returns dst."""
    BoundCopy([(dst, None, value)], dst).run()
    return dst


cdef class BoundGatherRows(Bound):
    """y[i] = table[idx[i]] (rows of row_bytes; a negative index counts from the end):
    an embedding lookup. The indices are checked before each run (gather_rows_check);
    one outside [-rows, rows) all the same writes a row of zeros, never reads outside."""
    cdef const char *table
    cdef const int64_t *idx
    cdef char *y
    cdef size_t count, row_bytes
    cdef int64_t rows
    cdef object keep

    cdef void execute(self) noexcept nogil:
        cdef size_t i
        cdef int64_t k
        for i in range(self.count):
            k = self.idx[i]
            if k < 0:
                k += self.rows
            if 0 <= k < self.rows:
                memcpy(self.y + i * self.row_bytes, self.table + k * self.row_bytes, self.row_bytes)
            else:
                memset(self.y + i * self.row_bytes, 0, self.row_bytes)


def gather_rows(cnp.ndarray table, cnp.ndarray idx, cnp.ndarray y, bint bind=False):
    """Rows of ``table`` (C-contiguous, >= 1-D; a row: its first axis' item) at ``idx``
    (int64, C-contiguous, any shape) into y (C-contiguous, idx.size rows of table's dtype).
    Bound (``bind``), the indices are read at each run: check them first
    (:func:`gather_rows_check`)."""
    if table.ndim < 1 or not table.flags.c_contiguous or idx.dtype != np.int64 or not idx.flags.c_contiguous \
            or not y.flags.c_contiguous or not y.flags.writeable or y.dtype != table.dtype \
            or y.size != idx.size * (table.size // max(table.shape[0], 1)) or table.shape[0] == 0:
        raise ValueError("table: C-contiguous, non-empty; idx: int64 C-contiguous; y: C-contiguous rows of table")
    cdef BoundGatherRows g = BoundGatherRows()
    g.table, g.idx, g.y = <const char *>_ptr(table), <const int64_t *>_ptr(idx), <char *>_ptr(y)
    g.count, g.rows = idx.size, table.shape[0]
    g.row_bytes = table.nbytes // table.shape[0]
    g.out, g.keep = y, (table, idx)
    if not bind:
        gather_rows_check(idx, table.shape[0])
    return g if bind else g.run()


def gather_rows_check(cnp.ndarray idx, int64_t rows):
    """IndexError unless every index lies in [-rows, rows)."""
    if idx.size and (idx.min() < -rows or idx.max() >= rows):
        bad = idx[(idx < -rows) | (idx >= rows)].reshape(-1)[0]
        raise IndexError(f"Gather: index {int(bad)} is out of range for {rows} rows")


ctypedef fused _elem_t:
    uint8_t
    uint16_t
    uint32_t
    uint64_t


cdef inline void _where_run(_elem_t *o, const uint8_t *c, const _elem_t *x, const _elem_t *y, size_t n, bint x_one,
                            bint y_one) noexcept nogil:
    cdef size_t i
    cdef _elem_t xv = x[0]
    cdef _elem_t yv = y[0]
    if x_one and y_one:
        for i in range(n):
            o[i] = xv if c[i] else yv
    elif x_one:
        for i in range(n):
            o[i] = xv if c[i] else y[i]
    elif y_one:
        for i in range(n):
            o[i] = x[i] if c[i] else yv
    else:
        for i in range(n):
            o[i] = x[i] if c[i] else y[i]


cdef class BoundWhere(Bound):
    """out[i] = x[i] if cond[i] else y[i] over one run of n elements of 1, 2, 4 or 8 bytes
    (moved as bits: exact), x or y one value for every element when it holds one."""
    cdef const uint8_t *c
    cdef const void *x
    cdef const void *y
    cdef void *o
    cdef size_t n, size
    cdef bint x_one, y_one
    cdef object keep

    cdef void execute(self) noexcept nogil:
        if self.size == 1:
            _where_run(<uint8_t *>self.o, self.c, <const uint8_t *>self.x, <const uint8_t *>self.y, self.n,
                       self.x_one, self.y_one)
        elif self.size == 2:
            _where_run(<uint16_t *>self.o, self.c, <const uint16_t *>self.x, <const uint16_t *>self.y, self.n,
                       self.x_one, self.y_one)
        elif self.size == 4:
            _where_run(<uint32_t *>self.o, self.c, <const uint32_t *>self.x, <const uint32_t *>self.y, self.n,
                       self.x_one, self.y_one)
        else:
            _where_run(<uint64_t *>self.o, self.c, <const uint64_t *>self.x, <const uint64_t *>self.y, self.n,
                       self.x_one, self.y_one)


def where(cnp.ndarray cond, cnp.ndarray x, cnp.ndarray y, cnp.ndarray out, bint bind=False):
    """ONNX Where over 1-D contiguous runs: cond bool (n), x and y of out's dtype (n values,
    or 1: that value everywhere), out (n). Elements of 1, 2, 4 or 8 bytes."""
    cdef size_t n = out.shape[0] if out.ndim == 1 else 0
    if cond.dtype != np.bool_ or not _run1d(cond, np.bool_) or not _run1d(out, out.dtype, True) \
            or out.dtype.itemsize not in (1, 2, 4, 8) or <size_t>cond.shape[0] != n or n == 0 \
            or any(not _run1d(v, out.dtype) or v.shape[0] not in (1, n) for v in (x, y)):
        raise ValueError("cond: bool run; x, y: runs of out's dtype (n or 1 values); out: n values of 1-8 bytes")
    cdef BoundWhere w = BoundWhere()
    w.c, w.x, w.y, w.o = <const uint8_t *>_ptr(cond), <const void *>_ptr(x), <const void *>_ptr(y), <void *>_ptr(out)
    w.n, w.size, w.x_one, w.y_one = n, out.dtype.itemsize, x.shape[0] == 1 and n > 1, y.shape[0] == 1 and n > 1
    w.out, w.keep = out, (cond, x, y)
    return w if bind else w.run()
