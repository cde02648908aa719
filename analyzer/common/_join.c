/* analyzer.common._join: the JSON writer's two text copies at C speed (built with the compiled
 * modules by setup.py; the pure-Python build has no such module and common/join.py does the
 * same in Python, with the same result).
 *
 * `concat(*pieces)` is `"".join(pieces)`: a connection's JSON line is some 80 short pieces
 * (render/json_line.py), and the join is the most expensive step of writing it; compiled, an
 * f-string or `str.join` spends some 50 to 90 instructions a piece, where the copy itself is a
 * few. Every piece must be a `str` (a TypeError otherwise, as `str.join` raises). When all are
 * ASCII (every line but one with an unusual finding message or history), the pieces are
 * copied into one new ASCII string; otherwise `str.join` does it.
 *
 * `plain(s)`: whether `s` is a `str` of ASCII characters none of which JSON escapes (no
 * control character, quote or backslash), which the json module's encoder writes as it is
 * between quotes: a finding's message mostly, put in a line as three pieces, with no text
 * escaped or made. False for anything else (not a `str`, not ASCII: the encoder's work).
 *
 * `text_block(sep, keys, lines)` is what report/runs.py `RunFile.write_text` writes of a block
 * of lines (each a `str`) under their keys (ints): `(keys, ends, text)`, the keys and the
 * lines' ends in the text (characters) as native 64-bit integers (`array("q").tobytes()`), and
 * the lines joined by `sep` as UTF-8; when `sep` and every line are ASCII and every key fits
 * in 64 bits, else None (the caller then does it in Python: the text encoded with
 * "surrogatepass", the keys as records). One copy of the text where joining and then encoding
 * makes two, and no int objects for the ends.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* `n` bytes from `src` to `dst`: the short copies (most pieces are a few bytes) as one or two
 * word moves, not a call. */
static inline void
copy(Py_UCS1 *dst, const Py_UCS1 *src, Py_ssize_t n)
{
    if (n > 16) {
        memcpy(dst, src, n);
    }
    else if (n >= 8) {
        uint64_t a, b;
        memcpy(&a, src, 8);
        memcpy(&b, src + n - 8, 8);
        memcpy(dst, &a, 8);
        memcpy(dst + n - 8, &b, 8);
    }
    else if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, src, 4);
        memcpy(&b, src + n - 4, 4);
        memcpy(dst, &a, 4);
        memcpy(dst + n - 4, &b, 4);
    }
    else {
        for (Py_ssize_t i = 0; i < n; i++)
            dst[i] = src[i];
    }
}

static PyObject *
concat(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t i, size = 0;
    int ascii = 1;
    for (i = 0; i < nargs; i++) {
        PyObject *piece = args[i];
        if (!PyUnicode_CheckExact(piece)) {
            PyErr_Format(PyExc_TypeError, "concat: piece %zd is %.80s, not str", i,
                         Py_TYPE(piece)->tp_name);
            return NULL;
        }
        /* compact ASCII: its characters follow its header, one byte each (anything else,
         * not ASCII or in the legacy layout, goes to str.join) */
        if (!PyUnicode_IS_COMPACT_ASCII(piece))
            ascii = 0;
        size += ((PyASCIIObject *)piece)->length;
    }
    if (!ascii) {
        PyObject *tuple, *empty, *out;
        tuple = PyTuple_New(nargs);
        if (tuple == NULL)
            return NULL;
        for (i = 0; i < nargs; i++) {
            Py_INCREF(args[i]);
            PyTuple_SET_ITEM(tuple, i, args[i]);
        }
        empty = PyUnicode_FromStringAndSize("", 0);
        if (empty == NULL) {
            Py_DECREF(tuple);
            return NULL;
        }
        out = PyUnicode_Join(empty, tuple);
        Py_DECREF(empty);
        Py_DECREF(tuple);
        return out;
    }
    PyObject *out = PyUnicode_New(size, 127);
    if (out == NULL)
        return NULL;
    Py_UCS1 *at = PyUnicode_1BYTE_DATA(out);
    for (i = 0; i < nargs; i++) {
        PyASCIIObject *piece = (PyASCIIObject *)args[i];
        Py_ssize_t n = piece->length;
        copy(at, (const Py_UCS1 *)(piece + 1), n);
        at += n;
    }
    return out;
}

static PyObject *
text_block(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "text_block(sep, keys, lines) takes three arguments");
        return NULL;
    }
    PyObject *sep = args[0], *keys = args[1], *lines = args[2];
    if (!PyUnicode_CheckExact(sep) || !PyList_CheckExact(keys) || !PyList_CheckExact(lines)) {
        PyErr_SetString(PyExc_TypeError,
                        "text_block: sep must be a str, keys and lines lists");
        return NULL;
    }
    Py_ssize_t i, count = PyList_GET_SIZE(lines);
    if (PyList_GET_SIZE(keys) != count) {
        PyErr_SetString(PyExc_ValueError, "text_block: as many keys as lines");
        return NULL;
    }
    if (!PyUnicode_IS_COMPACT_ASCII(sep))
        Py_RETURN_NONE;
    Py_ssize_t seplen = ((PyASCIIObject *)sep)->length;
    Py_ssize_t size = count > 0 ? seplen * (count - 1) : 0;
    for (i = 0; i < count; i++) {
        PyObject *line = PyList_GET_ITEM(lines, i);
        if (!PyUnicode_CheckExact(line)) {
            PyErr_Format(PyExc_TypeError, "text_block: line %zd is %.80s, not str", i,
                         Py_TYPE(line)->tp_name);
            return NULL;
        }
        if (!PyUnicode_IS_COMPACT_ASCII(line))
            Py_RETURN_NONE;
        size += ((PyASCIIObject *)line)->length;
    }
    PyObject *packed = PyBytes_FromStringAndSize(NULL, 8 * count);
    if (packed == NULL)
        return NULL;
    char *to = PyBytes_AS_STRING(packed);
    for (i = 0; i < count; i++) {
        PyObject *key = PyList_GET_ITEM(keys, i);
        int overflow = 0;
        long long value;
        if (!PyLong_CheckExact(key)) {          /* (not what a store keys by): as Python does */
            Py_DECREF(packed);
            Py_RETURN_NONE;
        }
        value = PyLong_AsLongLongAndOverflow(key, &overflow);
        if (overflow) {                         /* beyond 64 bits: the caller writes records */
            Py_DECREF(packed);
            Py_RETURN_NONE;
        }
        int64_t v = (int64_t)value;
        memcpy(to + 8 * i, &v, 8);
    }
    PyObject *ends = PyBytes_FromStringAndSize(NULL, 8 * count);
    PyObject *text = PyBytes_FromStringAndSize(NULL, size);
    if (ends == NULL || text == NULL) {
        Py_DECREF(packed);
        Py_XDECREF(ends);
        Py_XDECREF(text);
        return NULL;
    }
    char *end_at = PyBytes_AS_STRING(ends);
    char *at = PyBytes_AS_STRING(text);
    const char *sepdata = (const char *)(((PyASCIIObject *)sep) + 1);
    int64_t end = -(int64_t)seplen;
    /* (the lists cannot change while this runs: nothing here calls back into Python) */
    for (i = 0; i < count; i++) {
        PyASCIIObject *line = (PyASCIIObject *)PyList_GET_ITEM(lines, i);
        Py_ssize_t n = line->length;
        if (i) {
            memcpy(at, sepdata, seplen);
            at += seplen;
        }
        memcpy(at, line + 1, n);
        at += n;
        end += seplen + n;
        memcpy(end_at + 8 * i, &end, 8);
    }
    PyObject *out = PyTuple_New(3);
    if (out == NULL) {
        Py_DECREF(packed);
        Py_DECREF(ends);
        Py_DECREF(text);
        return NULL;
    }
    PyTuple_SET_ITEM(out, 0, packed);
    PyTuple_SET_ITEM(out, 1, ends);
    PyTuple_SET_ITEM(out, 2, text);
    return out;
}

static PyObject *
plain(PyObject *self, PyObject *arg)
{
    if (!PyUnicode_CheckExact(arg) || !PyUnicode_IS_COMPACT_ASCII(arg))
        Py_RETURN_FALSE;
    const unsigned char *at = (const unsigned char *)(((PyASCIIObject *)arg) + 1);
    Py_ssize_t i = 0, n = ((PyASCIIObject *)arg)->length;
    /* Eight characters at a time (all below 0x80: ASCII): a byte below 0x20, or equal to a
     * quote or a backslash (a zero byte once XORed with it), sets its high bit in `hit`. */
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    for (; i + 8 <= n; i += 8) {
        uint64_t w, q, b, hit;
        memcpy(&w, at + i, 8);
        q = w ^ (ones * '"');
        b = w ^ (ones * '\\');
        hit = ((w - ones * 0x20) | (q - ones) | (b - ones)) & highs;
        if (hit)
            Py_RETURN_FALSE;
    }
    for (; i < n; i++) {
        unsigned char c = at[i];
        if (c < 0x20 || c == '"' || c == '\\')
            Py_RETURN_FALSE;
    }
    Py_RETURN_TRUE;
}

static PyMethodDef module_methods[] = {
    {"concat", (PyCFunction)(void (*)(void))concat, METH_FASTCALL,
     "concat(*pieces) -> ''.join(pieces)"},
    {"plain", (PyCFunction)plain, METH_O,
     "plain(s) -> whether s is ASCII text JSON writes as it is, between quotes"},
    {"text_block", (PyCFunction)(void (*)(void))text_block, METH_FASTCALL,
     "text_block(sep, keys, lines) -> (keys, ends, text) as a spilled text block writes them, "
     "or None"},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "analyzer.common._join",
    .m_doc = "The JSON writer's text copies at C speed (common/join.py is the same in Python).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__join(void)
{
    return PyModule_Create(&module);
}
