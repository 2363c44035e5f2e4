/* Output stage, portable C: the reference every vector stage must equal bit for bit. */
#include "qk_output.h"

void qk_output_scalar(size_t mr, size_t nr, const int32_t *acc, size_t acc_stride,
                      size_t m0, size_t n0, const qk_out_params *p, void *c, size_t c_stride) {
    for (size_t i = 0; i < mr; i++) {
        char *row = (char *)c + (m0 + i) * c_stride + n0 * qk_out_elem_size(p);
        qk_out_row_tail(0, nr, acc + i * acc_stride, m0 + i, n0, p, row);
    }
}
