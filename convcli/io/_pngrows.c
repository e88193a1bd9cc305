/* PNG row unfiltering for convcli.io.pngread (a plain CPython extension, no numpy).
 *
 * unfilter(raw, out, previous, bpp) reverses the PNG filters of whole rows:
 *   raw       n rows of 1 + stride bytes each (the filter-type byte, then the filtered bytes),
 *             as they come out of the inflated IDAT stream;
 *   out       a writable buffer of n * stride bytes, the rows unfiltered;
 *   previous  the unfiltered row above the first (stride bytes), or b"" at the top of the image;
 *   bpp       bytes per complete pixel, at least 1 (the filters' left neighbour distance).
 * Every filter is the PNG specification's (section 9.2), modulo 256.  Average and Paeth depend
 * on the byte just unfiltered to their left, so they run sequentially along a row; that is why
 * this is compiled code.  The GIL is released while rows are unfiltered.  A filter type above 4
 * raises ValueError naming the row (counted from the first row of ``raw``).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>
#include <string.h>

static inline unsigned char paeth(int a, int b, int c)
{
    int p = a + b - c;
    int pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    if (pa <= pb && pa <= pc)
        return (unsigned char)a;
    return (unsigned char)(pb <= pc ? b : c);
}

/* One row; `up` is the unfiltered row above (zeros at the top).  Inlined with a constant bpp
 * for the common pixel sizes, so that the compiler can unroll the byte loop. */
static inline int unfilter_row(int type, const unsigned char *src, unsigned char *dst,
                               const unsigned char *up, Py_ssize_t stride, Py_ssize_t bpp)
{
    Py_ssize_t i;
    Py_ssize_t head = bpp < stride ? bpp : stride;
    switch (type) {
    case 0:
        memcpy(dst, src, (size_t)stride);
        return 0;
    case 1:
        memcpy(dst, src, (size_t)head);
        for (i = bpp; i < stride; i++)
            dst[i] = (unsigned char)(src[i] + dst[i - bpp]);
        return 0;
    case 2:
        for (i = 0; i < stride; i++)
            dst[i] = (unsigned char)(src[i] + up[i]);
        return 0;
    case 3:
        for (i = 0; i < head; i++)
            dst[i] = (unsigned char)(src[i] + (up[i] >> 1));
        for (i = bpp; i < stride; i++)
            dst[i] = (unsigned char)(src[i] + ((dst[i - bpp] + up[i]) >> 1));
        return 0;
    case 4:
        for (i = 0; i < head; i++)
            dst[i] = (unsigned char)(src[i] + up[i]); /* paeth(0, b, 0) is b */
        for (i = bpp; i < stride; i++)
            dst[i] = (unsigned char)(src[i] + paeth(dst[i - bpp], up[i], up[i - bpp]));
        return 0;
    default:
        return -1;
    }
}

static Py_ssize_t unfilter_rows(const unsigned char *raw, unsigned char *out, const unsigned char *first_up,
                                Py_ssize_t rows, Py_ssize_t stride, Py_ssize_t bpp, int *bad_type)
{
    Py_ssize_t r;
    const unsigned char *up = first_up;
    for (r = 0; r < rows; r++) {
        const unsigned char *src = raw + r * (stride + 1);
        unsigned char *dst = out + r * stride;
        int type = src[0];
        int status;
        switch (bpp) { /* constant bpp: the compiler specialises each case */
        case 1:
            status = unfilter_row(type, src + 1, dst, up, stride, 1);
            break;
        case 2:
            status = unfilter_row(type, src + 1, dst, up, stride, 2);
            break;
        case 3:
            status = unfilter_row(type, src + 1, dst, up, stride, 3);
            break;
        case 4:
            status = unfilter_row(type, src + 1, dst, up, stride, 4);
            break;
        case 6:
            status = unfilter_row(type, src + 1, dst, up, stride, 6);
            break;
        case 8:
            status = unfilter_row(type, src + 1, dst, up, stride, 8);
            break;
        default:
            status = unfilter_row(type, src + 1, dst, up, stride, bpp);
        }
        if (status) {
            *bad_type = type;
            return r;
        }
        up = dst;
    }
    return -1;
}

static PyObject *unfilter(PyObject *self, PyObject *args)
{
    Py_buffer raw, out, previous;
    Py_ssize_t bpp, stride, rows, bad_row;
    int bad_type = 0;
    unsigned char *zeros = NULL;
    const unsigned char *up;

    if (!PyArg_ParseTuple(args, "y*w*y*n", &raw, &out, &previous, &bpp))
        return NULL;
    rows = 0;
    stride = 0;
    if (bpp < 1) {
        PyErr_SetString(PyExc_ValueError, "bpp must be at least 1");
        goto fail;
    }
    if (out.len == 0 || raw.len == 0) {
        if (out.len != 0 || raw.len != 0) {
            PyErr_SetString(PyExc_ValueError, "raw and out disagree on the number of rows");
            goto fail;
        }
        PyBuffer_Release(&raw);
        PyBuffer_Release(&out);
        PyBuffer_Release(&previous);
        Py_RETURN_NONE;
    }
    /* n * (stride + 1) raw bytes for n * stride out bytes: n = raw.len - out.len. */
    rows = raw.len - out.len;
    if (rows <= 0 || out.len % rows != 0) {
        PyErr_SetString(PyExc_ValueError, "raw must hold one filter byte more per row than out");
        goto fail;
    }
    stride = out.len / rows;
    if (previous.len != 0 && previous.len != stride) {
        PyErr_SetString(PyExc_ValueError, "previous must be one row (stride bytes) or empty");
        goto fail;
    }
    if (previous.len == 0) {
        zeros = (unsigned char *)PyMem_Calloc((size_t)stride, 1);
        if (zeros == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
        up = zeros;
    } else {
        up = (const unsigned char *)previous.buf;
    }
    Py_BEGIN_ALLOW_THREADS
    bad_row = unfilter_rows((const unsigned char *)raw.buf, (unsigned char *)out.buf, up, rows, stride, bpp,
                            &bad_type);
    Py_END_ALLOW_THREADS
    PyMem_Free(zeros);
    PyBuffer_Release(&raw);
    PyBuffer_Release(&out);
    PyBuffer_Release(&previous);
    if (bad_row >= 0) {
        PyErr_Format(PyExc_ValueError, "row %zd has filter type %d (0-4 are defined)", bad_row, bad_type);
        return NULL;
    }
    Py_RETURN_NONE;

fail:
    PyBuffer_Release(&raw);
    PyBuffer_Release(&out);
    PyBuffer_Release(&previous);
    return NULL;
}

static PyMethodDef methods[] = {
    {"unfilter", unfilter, METH_VARARGS,
     "unfilter(raw, out, previous, bpp): reverse the PNG row filters of raw (rows of a filter byte "
     "and stride bytes) into out (rows of stride bytes); previous is the row above, or b'' at the top."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_pngrows", "PNG row unfiltering (see convcli/io/pngread.py).", -1, methods,
};

PyMODINIT_FUNC PyInit__pngrows(void)
{
    return PyModule_Create(&module);
}
