/* Compiled inner loop of convcli's engine: a sum of shifted, scaled copies of an image tile.

   correlate(block, [(out, taps), ...], stride_y, stride_x)

   block : float32 buffer, rows x columns x channels, each pixel's channels contiguous and
           each row's pixels contiguous (any row stride).
   out   : writable float32 buffer, rows x columns x channels, channels contiguous (any pixel
           and row strides: a column phase of a larger array is fine).
   taps  : sequence of (row offset, column offset, weight).
   Several (out, taps) parts of the same row count are computed row by row, each row of every
   part in turn (the column phases of a transposed convolution: each output row is filled
   while it is in cache).

   out[i, j, c] = sum over taps, in their order, of weight * block[i*sy + dr, j*sx + dc, c],
   the first tap's product assigned, each next one added (one rounding for the product, one
   for the sum, as numpy's multiply then add: no fused multiply-add, see setup.py).  So every
   output value comes from the same float operations whatever the tile it is computed in.

   correlate_padded(image, [(out, taps), ...], stride_y, stride_x, row_index, column_index,
   first_row) does the same on a padded image that is never built: index tables give the
   image row and column of each padded one (-1: zeros), so any pad mode, and a tile's rows
   are read in place or assembled once each into a small ring.

   It uses the buffer protocol only (no numpy headers: it builds against any numpy) and
   releases the GIL while it computes, so the engine's tile threads run in parallel.  The
   innermost loop runs along an output row (contiguous at stride 1) so the compiler
   vectorises it; on x86-64 an AVX2 clone is picked at load time where the CPU has it. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CLONES
#endif

/* Elements of one output row chunk accumulated at a time (stays in L1). */
#define CHUNK 2048

typedef struct {
    Py_ssize_t dr, dc;
    float w;
} Tap;

static int is_float32(const Py_buffer *view) {
    const char *f = view->format;
    if (f == NULL) return 0;
    if (f[0] == '<' || f[0] == '=' || f[0] == '@') f++;
    return f[0] == 'f' && f[1] == '\0' && view->itemsize == 4;
}

/* Up to GROUP taps on one chunk of an output row, in one pass: acc = ((acc + w0*s0) + w1*s1) ...,
   the order of adding them one pass at a time, with acc kept in a register.
   first: acc starts as w0*s0.  (w == 1 needs no special case: 1*v == v exactly.) */
#define GROUP 8
CLONES static void taps_contiguous(float *restrict acc, const float *const *src, const float *w, int count,
                                   Py_ssize_t n, int first) {
    const float *restrict s0 = src[0], *restrict s1 = src[count > 1 ? 1 : 0];
    const float *restrict s2 = src[count > 2 ? 2 : 0], *restrict s3 = src[count > 3 ? 3 : 0];
    const float *restrict s4 = src[count > 4 ? 4 : 0], *restrict s5 = src[count > 5 ? 5 : 0];
    const float *restrict s6 = src[count > 6 ? 6 : 0], *restrict s7 = src[count > 7 ? 7 : 0];
    const float w0 = w[0], w1 = w[count > 1 ? 1 : 0], w2 = w[count > 2 ? 2 : 0], w3 = w[count > 3 ? 3 : 0];
    const float w4 = w[count > 4 ? 4 : 0], w5 = w[count > 5 ? 5 : 0], w6 = w[count > 6 ? 6 : 0];
    const float w7 = w[count > 7 ? 7 : 0];
    Py_ssize_t t;
#define LOOP(REST)                                                                                           \
    if (first) {                                                                                             \
        for (t = 0; t < n; t++) {                                                                            \
            float a = w0 * s0[t];                                                                            \
            REST;                                                                                            \
            acc[t] = a;                                                                                      \
        }                                                                                                    \
    } else {                                                                                                 \
        for (t = 0; t < n; t++) {                                                                            \
            float a = acc[t] + w0 * s0[t];                                                                   \
            REST;                                                                                            \
            acc[t] = a;                                                                                      \
        }                                                                                                    \
    }
#define A1 a = a + w1 * s1[t]
#define A2 A1, a = a + w2 * s2[t]
#define A3 A2, a = a + w3 * s3[t]
#define A4 A3, a = a + w4 * s4[t]
#define A5 A4, a = a + w5 * s5[t]
#define A6 A5, a = a + w6 * s6[t]
#define A7 A6, a = a + w7 * s7[t]
    switch (count) {
        case 1:
            LOOP((void)0);
            break;
        case 2:
            LOOP(A1);
            break;
        case 3:
            LOOP((A2));
            break;
        case 4:
            LOOP((A3));
            break;
        case 5:
            LOOP((A4));
            break;
        case 6:
            LOOP((A5));
            break;
        case 7:
            LOOP((A6));
            break;
        default:
            LOOP((A7));
    }
#undef A1
#undef A2
#undef A3
#undef A4
#undef A5
#undef A6
#undef A7
#undef LOOP
}

CLONES static void tap_strided(float *restrict acc, const float *restrict src, Py_ssize_t pixels,
                               Py_ssize_t channels, Py_ssize_t step, float w, int first) {
    Py_ssize_t p, c;
    if (channels == 3) {
        for (p = 0; p < pixels; p++) {
            const float *s = src + p * step;
            float *a = acc + 3 * p;
            if (first) {
                a[0] = w * s[0];
                a[1] = w * s[1];
                a[2] = w * s[2];
            } else {
                a[0] = a[0] + w * s[0];
                a[1] = a[1] + w * s[1];
                a[2] = a[2] + w * s[2];
            }
        }
        return;
    }
    if (channels == 1) {
        for (p = 0; p < pixels; p++) acc[p] = first ? w * src[p * step] : acc[p] + w * src[p * step];
        return;
    }
    for (p = 0; p < pixels; p++)
        for (c = 0; c < channels; c++)
            acc[p * channels + c] = first ? w * src[p * step + c] : acc[p * channels + c] + w * src[p * step + c];
}

/* out pixel p = acc pixel p, the out pixels step floats apart (a column phase). */
static void scatter(char *out, const float *acc, Py_ssize_t pixels, Py_ssize_t channels, Py_ssize_t step) {
    float *o = (float *)out;
    if (channels == 3) {
        for (Py_ssize_t p = 0; p < pixels; p++) {
            o[p * step] = acc[3 * p];
            o[p * step + 1] = acc[3 * p + 1];
            o[p * step + 2] = acc[3 * p + 2];
        }
        return;
    }
    for (Py_ssize_t p = 0; p < pixels; p++)
        for (Py_ssize_t c = 0; c < channels; c++) o[p * step + c] = acc[p * channels + c];
}

/* One output row: tap t reads the input row rows[t] from column dc, every sx-th pixel.
   Chunk by chunk, each group of up to GROUP taps in one pass. */
static void compute_row(const float *const *rows, const Tap *taps, Py_ssize_t ntaps, Py_ssize_t channels, char *orow,
                        Py_ssize_t out_pixel, Py_ssize_t cols, Py_ssize_t sx, float *acc) {
    Py_ssize_t chunk_pixels = CHUNK / channels > 0 ? CHUNK / channels : 1;
    int out_dense = out_pixel == channels * (Py_ssize_t)sizeof(float);
    for (Py_ssize_t j0 = 0; j0 < cols; j0 += chunk_pixels) {
        Py_ssize_t pixels = cols - j0 < chunk_pixels ? cols - j0 : chunk_pixels;
        float *target = out_dense ? (float *)(orow) + j0 * channels : acc;
        if (ntaps == 0) memset(target, 0, sizeof(float) * pixels * channels);
        for (Py_ssize_t t = 0; t < ntaps;) {
            if (sx == 1) {
                const float *srcs[GROUP];
                float ws[GROUP];
                int count = ntaps - t < GROUP ? (int)(ntaps - t) : GROUP;
                for (int g = 0; g < count; g++) {
                    srcs[g] = rows[t + g] + (j0 + taps[t + g].dc) * channels;
                    ws[g] = taps[t + g].w;
                }
                taps_contiguous(target, srcs, ws, count, pixels * channels, t == 0);
                t += count;
            } else {
                const float *src = rows[t] + (j0 * sx + taps[t].dc) * channels;
                tap_strided(target, src, pixels, channels, sx * channels, taps[t].w, t == 0);
                t++;
            }
        }
        if (!out_dense) scatter(orow + j0 * out_pixel, acc, pixels, channels, out_pixel / 4);
    }
}

static int pixel_layout(const Py_buffer *view, const char *name, int need_dense_row) {
    if (view->ndim != 3 || !is_float32(view)) {
        PyErr_Format(PyExc_ValueError, "%s: expected a 3-D float32 buffer", name);
        return -1;
    }
    Py_ssize_t c = view->shape[2];
    if ((c > 1 && view->strides[2] != 4) || view->strides[1] % 4 || view->strides[0] % 4 || view->strides[1] < 4 * c ||
        view->strides[0] < 0 || (need_dense_row && view->strides[1] != 4 * c)) {
        PyErr_Format(PyExc_ValueError, "%s: channels and pixels must be contiguous", name);
        return -1;
    }
    return 0;
}

typedef struct {
    Py_buffer out;
    int held;
    Tap *taps;
    Py_ssize_t ntaps, max_dr, max_dc;
} Part;

static void free_parts(Part *parts, Py_ssize_t nparts) {
    for (Py_ssize_t p = 0; parts != NULL && p < nparts; p++) {
        PyMem_Free(parts[p].taps);
        if (parts[p].held) PyBuffer_Release(&parts[p].out);
    }
    PyMem_Free(parts);
}

/* The (out, taps) parts: outs of `channels` channels and one row count (*rows), taps with
   offsets not negative.  NULL with an exception set on a bad part. */
static Part *parse_parts(PyObject *parts_obj, Py_ssize_t channels, Py_ssize_t *nparts_out, Py_ssize_t *rows) {
    PyObject *parts_seq = PySequence_Fast(parts_obj, "parts must be a sequence of (out, taps)");
    if (parts_seq == NULL) return NULL;
    Py_ssize_t nparts = PySequence_Fast_GET_SIZE(parts_seq);
    Part *parts = PyMem_Calloc(nparts > 0 ? nparts : 1, sizeof(Part));
    *rows = 0;
    if (parts == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t p = 0; p < nparts; p++) {
        PyObject *out_obj, *taps_obj;
        Part *part = &parts[p];
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(parts_seq, p), "OO", &out_obj, &taps_obj)) goto fail;
        if (PyObject_GetBuffer(out_obj, &part->out, PyBUF_STRIDES | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) goto fail;
        part->held = 1;
        if (pixel_layout(&part->out, "out", 0) < 0) goto fail;
        if (part->out.shape[2] != channels) {
            PyErr_SetString(PyExc_ValueError, "the input and out have different channel counts");
            goto fail;
        }
        if (p > 0 && part->out.shape[0] != *rows) {
            PyErr_SetString(PyExc_ValueError, "the parts have different row counts");
            goto fail;
        }
        *rows = part->out.shape[0];
        PyObject *seq = PySequence_Fast(taps_obj, "taps must be a sequence of (row, column, weight)");
        if (seq == NULL) goto fail;
        part->ntaps = PySequence_Fast_GET_SIZE(seq);
        part->taps = PyMem_Malloc(sizeof(Tap) * (part->ntaps > 0 ? part->ntaps : 1));
        if (part->taps == NULL) {
            Py_DECREF(seq);
            PyErr_NoMemory();
            goto fail;
        }
        for (Py_ssize_t t = 0; t < part->ntaps; t++) {
            Tap *tap = &part->taps[t];
            double w;
            if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, t), "nnd", &tap->dr, &tap->dc, &w)) {
                Py_DECREF(seq);
                goto fail;
            }
            tap->w = (float)w;
            if (tap->dr < 0 || tap->dc < 0) {
                Py_DECREF(seq);
                PyErr_SetString(PyExc_ValueError, "a tap reads outside the input (negative offset)");
                goto fail;
            }
            part->max_dr = tap->dr > part->max_dr ? tap->dr : part->max_dr;
            part->max_dc = tap->dc > part->max_dc ? tap->dc : part->max_dc;
        }
        Py_DECREF(seq);
    }
    Py_DECREF(parts_seq);
    *nparts_out = nparts;
    return parts;
fail:
    free_parts(parts, nparts);
    Py_DECREF(parts_seq);
    return NULL;
}

static int check_strides(Py_ssize_t sy, Py_ssize_t sx) {
    if (sy < 1 || sx < 1) {
        PyErr_SetString(PyExc_ValueError, "strides must be at least 1");
        return -1;
    }
    return 0;
}

static float *chunk_buffer(Py_ssize_t channels) {
    return PyMem_RawMalloc(sizeof(float) * CHUNK * (channels > CHUNK ? channels : 1) + 64);
}

static const float **row_pointers(const Part *parts, Py_ssize_t nparts) {
    Py_ssize_t most = 1;
    for (Py_ssize_t p = 0; p < nparts; p++) most = parts[p].ntaps > most ? parts[p].ntaps : most;
    return PyMem_Malloc(sizeof(float *) * most);
}

static PyObject *correlate(PyObject *self, PyObject *args) {
    PyObject *block_obj, *parts_obj;
    Py_ssize_t sy, sx, nparts = 0, rows = 0;
    if (!PyArg_ParseTuple(args, "OOnn", &block_obj, &parts_obj, &sy, &sx) || check_strides(sy, sx) < 0) return NULL;
    Py_buffer in;
    if (PyObject_GetBuffer(block_obj, &in, PyBUF_STRIDES | PyBUF_FORMAT) < 0) return NULL;
    PyObject *result = NULL;
    float *acc = NULL;
    const float **tap_rows = NULL;
    Part *parts = NULL;
    if (pixel_layout(&in, "block", 1) < 0) goto done;
    Py_ssize_t channels = in.shape[2];
    parts = parse_parts(parts_obj, channels, &nparts, &rows);
    if (parts == NULL) goto done;
    for (Py_ssize_t p = 0; p < nparts; p++) /* every read must fall inside the block */
        if (rows > 0 && parts[p].out.shape[1] > 0 && parts[p].ntaps > 0 &&
            ((rows - 1) * sy + parts[p].max_dr >= in.shape[0] ||
             (parts[p].out.shape[1] - 1) * sx + parts[p].max_dc >= in.shape[1])) {
            PyErr_SetString(PyExc_ValueError, "a tap reads outside the block");
            goto done;
        }
    acc = chunk_buffer(channels);
    tap_rows = row_pointers(parts, nparts);
    if (acc == NULL || tap_rows == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (channels > 0) {
        Py_BEGIN_ALLOW_THREADS;
        /* row by row, every part of a row before the next row: the column phases of a
           transposed convolution fill each output row while it is in cache */
        for (Py_ssize_t i = 0; i < rows; i++)
            for (Py_ssize_t p = 0; p < nparts; p++) {
                for (Py_ssize_t t = 0; t < parts[p].ntaps; t++)
                    tap_rows[t] = (const float *)((const char *)in.buf + (i * sy + parts[p].taps[t].dr) * in.strides[0]);
                compute_row(tap_rows, parts[p].taps, parts[p].ntaps, channels,
                            (char *)parts[p].out.buf + i * parts[p].out.strides[0], parts[p].out.strides[1],
                            parts[p].out.shape[1], sx, acc);
            }
        Py_END_ALLOW_THREADS;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    PyMem_RawFree(acc);
    PyMem_Free(tap_rows);
    free_parts(parts, nparts);
    PyBuffer_Release(&in);
    return result;
}

static int is_int64(const Py_buffer *view) {
    if (view->itemsize != 8 || view->ndim != 1 || view->format == NULL || view->format[0] == '\0') return 0;
    return strchr("qlQL", view->format[strlen(view->format) - 1]) != NULL;
}

/* correlate_padded(image, parts, stride_y, stride_x, row_index, column_index, first_row):
   as correlate, reading a padded image that is never built whole.  Padded row p is image row
   row_index[p] and padded column q image column column_index[q] (int64; -1: zeros padding),
   so every pad mode is an index table.  Output row i reads padded rows (first_row + i)*sy + dr.
   Each padded row is assembled once into a small ring of rows (or read in place where the
   columns need no padding), with the GIL released for the whole band of rows. */
static PyObject *correlate_padded(PyObject *self, PyObject *args) {
    PyObject *image_obj, *parts_obj, *rindex_obj, *cindex_obj;
    Py_ssize_t sy, sx, first, nparts = 0, rows = 0;
    if (!PyArg_ParseTuple(args, "OOnnOOn", &image_obj, &parts_obj, &sy, &sx, &rindex_obj, &cindex_obj, &first) ||
        check_strides(sy, sx) < 0)
        return NULL;
    if (first < 0) {
        PyErr_SetString(PyExc_ValueError, "a tap reads outside the padded image");
        return NULL;
    }
    Py_buffer in = {0}, rix = {0}, cix = {0};
    int held = 0;
    PyObject *result = NULL;
    Part *parts = NULL;
    float *acc = NULL, *ring = NULL, *zeros = NULL;
    const float **tap_rows = NULL;
    Py_ssize_t *tags = NULL;
    if (PyObject_GetBuffer(image_obj, &in, PyBUF_STRIDES | PyBUF_FORMAT) < 0) goto done;
    held = 1;
    if (PyObject_GetBuffer(rindex_obj, &rix, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) goto done;
    held = 2;
    if (PyObject_GetBuffer(cindex_obj, &cix, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) goto done;
    held = 3;
    if (pixel_layout(&in, "image", 1) < 0) goto done;
    if (!is_int64(&rix) || !is_int64(&cix)) {
        PyErr_SetString(PyExc_ValueError, "row_index and column_index: 1-D int64");
        goto done;
    }
    Py_ssize_t channels = in.shape[2], height = in.shape[0], width = in.shape[1];
    const long long *rind = rix.buf, *cind = cix.buf;
    parts = parse_parts(parts_obj, channels, &nparts, &rows);
    if (parts == NULL) goto done;
    Py_ssize_t max_dr = 0, span = 0;
    for (Py_ssize_t p = 0; p < nparts; p++) {
        if (parts[p].out.shape[1] == 0 || parts[p].ntaps == 0) continue;
        Py_ssize_t reach = (parts[p].out.shape[1] - 1) * sx + parts[p].max_dc + 1;
        span = reach > span ? reach : span;
        max_dr = parts[p].max_dr > max_dr ? parts[p].max_dr : max_dr;
    }
    if (rows == 0 || channels == 0) goto finished;
    /* every read must fall inside the index tables, and every index inside the image */
    Py_ssize_t last_row = (first + rows - 1) * sy + max_dr;
    if (last_row >= rix.shape[0] || span > cix.shape[0]) {
        PyErr_SetString(PyExc_ValueError, "a tap reads outside the padded image");
        goto done;
    }
    int identity = 1;
    for (Py_ssize_t q = 0; q < span; q++) {
        if (cind[q] < -1 || cind[q] >= width) {
            PyErr_SetString(PyExc_ValueError, "column_index: outside the image");
            goto done;
        }
        identity = identity && cind[q] == q;
    }
    for (Py_ssize_t p = first * sy; p <= last_row; p++)
        if (rind[p] < -1 || rind[p] >= height) {
            PyErr_SetString(PyExc_ValueError, "row_index: outside the image");
            goto done;
        }
    Py_ssize_t slots = max_dr + 1, row_floats = (span > 0 ? span : 1) * channels;
    acc = chunk_buffer(channels);
    tap_rows = row_pointers(parts, nparts);
    ring = identity ? NULL : PyMem_RawMalloc(sizeof(float) * row_floats * slots);
    zeros = PyMem_RawCalloc(row_floats, sizeof(float));
    tags = PyMem_RawMalloc(sizeof(Py_ssize_t) * slots);
    if (acc == NULL || tap_rows == NULL || zeros == NULL || tags == NULL || (!identity && ring == NULL)) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t k = 0; k < slots; k++) tags[k] = -1;
    Py_BEGIN_ALLOW_THREADS;
    const char *base = in.buf;
    for (Py_ssize_t i = 0; i < rows; i++) {
        for (Py_ssize_t p = 0; p < nparts; p++) {
            const Part *part = &parts[p];
            for (Py_ssize_t t = 0; t < part->ntaps; t++) {
                Py_ssize_t r = (first + i) * sy + part->taps[t].dr;
                long long src = rind[r];
                if (src < 0) {
                    tap_rows[t] = zeros;
                } else if (identity) {
                    tap_rows[t] = (const float *)(base + src * in.strides[0]);
                } else {
                    float *row = ring + (r % slots) * row_floats;
                    if (tags[r % slots] != r) { /* assemble padded row r: runs of columns, zeros */
                        const float *source = (const float *)(base + src * in.strides[0]);
                        for (Py_ssize_t q = 0; q < span;) {
                            Py_ssize_t run = 1;
                            if (cind[q] < 0) {
                                while (q + run < span && cind[q + run] < 0) run++;
                                memset(row + q * channels, 0, sizeof(float) * run * channels);
                            } else {
                                while (q + run < span && cind[q + run] == cind[q] + run) run++;
                                memcpy(row + q * channels, source + cind[q] * channels,
                                       sizeof(float) * run * channels);
                            }
                            q += run;
                        }
                        tags[r % slots] = r;
                    }
                    tap_rows[t] = row;
                }
            }
            compute_row(tap_rows, part->taps, part->ntaps, channels, (char *)part->out.buf + i * part->out.strides[0],
                        part->out.strides[1], part->out.shape[1], sx, acc);
        }
    }
    Py_END_ALLOW_THREADS;
finished:
    result = Py_None;
    Py_INCREF(result);
done:
    PyMem_RawFree(tags);
    PyMem_RawFree(zeros);
    PyMem_RawFree(ring);
    PyMem_RawFree(acc);
    PyMem_Free(tap_rows);
    free_parts(parts, nparts);
    if (held >= 3) PyBuffer_Release(&cix);
    if (held >= 2) PyBuffer_Release(&rix);
    if (held >= 1) PyBuffer_Release(&in);
    return result;
}

static PyMethodDef methods[] = {
    {"correlate", correlate, METH_VARARGS,
     "correlate(block, [(out, taps), ...], stride_y, stride_x): for each part, out[i, j, c] = sum of "
     "w * block[i*sy + dr, j*sx + dc, c] over its taps (dr, dc, w), in their order; row by row, "
     "every part of a row in turn; releases the GIL."},
    {"correlate_padded", correlate_padded, METH_VARARGS,
     "correlate_padded(image, [(out, taps), ...], stride_y, stride_x, row_index, column_index, first_row): "
     "correlate on the padded image whose row p is image row row_index[p] and column q image column "
     "column_index[q] (int64, -1: zeros); output row i reads padded rows (first_row + i)*sy + dr; "
     "releases the GIL."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native",
                                    "Compiled inner loops of convcli's engine.", -1, methods};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
