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
#include <string.h>

/* The Paeth predictor without branches (stb_image's form, equal to the specification's
 * "pa <= pb && pa <= pc ? a : pb <= pc ? b : c" for every a, b, c in 0..255): the compiler
 * makes conditional moves of it, where the specification's branches mispredict on noisy rows
 * (about 70 MB/s against several hundred). */
static inline unsigned char paeth(int a, int b, int c)
{
    int thresh = c * 3 - (a + b);
    int lo = a < b ? a : b;
    int hi = a < b ? b : a;
    int t0 = (hi <= thresh) ? lo : c;
    int t1 = (thresh <= lo) ? hi : t0;
    return (unsigned char)t1;
}

#ifdef __SSE2__
#include <emmintrin.h>

/* Paeth on 3- or 4-byte pixels with SSE2, a pixel's channels side by side in 16-bit lanes
 * (libpng's filter_sse2_intrinsics.c does the same): the chain from pixel to pixel is a few
 * vector instructions.  Equal to the scalar predictor, ties included: the smallest distance
 * wins, a before b before c. */
static inline __m128i load_pixel(const unsigned char *p, Py_ssize_t size)
{
    int value = 0;
    memcpy(&value, p, (size_t)size);
    return _mm_unpacklo_epi8(_mm_cvtsi32_si128(value), _mm_setzero_si128());
}

static inline void store_pixel(unsigned char *p, __m128i v, Py_ssize_t size)
{
    int value = _mm_cvtsi128_si32(_mm_packus_epi16(v, v));
    memcpy(p, &value, (size_t)size);
}

static inline __m128i abs_i16(__m128i x)
{
    __m128i negative = _mm_cmplt_epi16(x, _mm_setzero_si128());
    return _mm_add_epi16(_mm_xor_si128(x, negative), _mm_srli_epi16(negative, 15));
}

static inline __m128i choose(__m128i mask, __m128i yes, __m128i no)
{
    return _mm_or_si128(_mm_and_si128(mask, yes), _mm_andnot_si128(mask, no));
}

static inline void paeth_row_sse2(const unsigned char *src, unsigned char *dst, const unsigned char *up,
                           Py_ssize_t stride, Py_ssize_t bpp)
{
    __m128i a = _mm_setzero_si128(), c = _mm_setzero_si128();
    Py_ssize_t i;
    /* 3-byte pixels move as 4 bytes (a 3-byte copy is two moves, and slow) but the last: the
     * fourth byte read belongs to the next pixel (or row), the one written is rewritten next. */
    Py_ssize_t wide = stride - 4;
#define PAETH_PIXEL(SIZE)                                                                                \
    do {                                                                                                 \
        __m128i b = load_pixel(up + i, SIZE);                                                            \
        __m128i x = load_pixel(src + i, SIZE);                                                           \
        __m128i pa = _mm_sub_epi16(b, c); /* p - a */                                                    \
        __m128i pb = _mm_sub_epi16(a, c); /* p - b */                                                    \
        __m128i pc = abs_i16(_mm_add_epi16(pa, pb));                                                     \
        __m128i smallest;                                                                                \
        pa = abs_i16(pa);                                                                                \
        pb = abs_i16(pb);                                                                                \
        smallest = _mm_min_epi16(pc, _mm_min_epi16(pa, pb));                                             \
        x = _mm_add_epi8(x, choose(_mm_cmpeq_epi16(smallest, pa), a,                                     \
                                   choose(_mm_cmpeq_epi16(smallest, pb), b, c)));                        \
        x = _mm_and_si128(x, _mm_set1_epi16(0xFF));                                                      \
        store_pixel(dst + i, x, SIZE);                                                                   \
        a = x;                                                                                           \
        c = b;                                                                                           \
    } while (0)
    for (i = 0; i <= wide; i += bpp)
        PAETH_PIXEL(4);
    for (; i < stride; i += bpp)
        PAETH_PIXEL(bpp);
#undef PAETH_PIXEL
}
#endif

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
#ifdef __SSE2__
        if ((bpp == 3 || bpp == 4) && stride % bpp == 0) {
            paeth_row_sse2(src, dst, up, stride, bpp);
            return 0;
        }
#endif
        for (i = 0; i < head; i++)
            dst[i] = (unsigned char)(src[i] + up[i]); /* paeth(0, b, 0) is b */
        if (bpp <= 8 && stride % bpp == 0) {
            /* Pixel by pixel, the left and upper-left bytes of each channel kept in registers:
             * the chain from one pixel to the next is then the predictor alone, without a
             * store and reload of dst[i - bpp] (about twice the speed). */
            int left[8], upleft[8], k;
            for (k = 0; k < bpp; k++) {
                left[k] = dst[k];
                upleft[k] = up[k];
            }
            for (i = bpp; i < stride; i += bpp) {
                for (k = 0; k < bpp; k++) {
                    int above = up[i + k];
                    int value = (src[i + k] + paeth(left[k], above, upleft[k])) & 0xFF;
                    dst[i + k] = (unsigned char)value;
                    left[k] = value;
                    upleft[k] = above;
                }
            }
            return 0;
        }
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
/* A constant bpp in each case: the compiler specialises the row loops for it. */
#define WITH_BPP(N)                                                                                      \
    case N:                                                                                              \
        status = unfilter_row(type, src + 1, dst, up, stride, N);                                        \
        break
        switch (bpp) {
            WITH_BPP(1);
            WITH_BPP(2);
            WITH_BPP(3);
            WITH_BPP(4);
            WITH_BPP(6);
            WITH_BPP(8);
        default:
            status = unfilter_row(type, src + 1, dst, up, stride, bpp);
        }
#undef WITH_BPP
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
