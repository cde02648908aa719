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
 * `ascii_join(sep, lines)` is `sep.join(lines).encode("utf-8")` when `sep` and every line (a
 * list of `str`) are ASCII, and None otherwise (the caller then encodes the text itself, as
 * "surrogatepass" asks): the spill of JSON lines to disk (report/runs.py) writes this, one copy
 * of the text where joining and then encoding makes two.
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
ascii_join(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "ascii_join(sep, lines) takes two arguments");
        return NULL;
    }
    PyObject *sep = args[0], *lines = args[1];
    if (!PyUnicode_CheckExact(sep) || !PyList_CheckExact(lines)) {
        PyErr_SetString(PyExc_TypeError, "ascii_join: sep must be a str and lines a list");
        return NULL;
    }
    if (PyUnicode_READY(sep) < 0)
        return NULL;
    Py_ssize_t i, count = PyList_GET_SIZE(lines), seplen = PyUnicode_GET_LENGTH(sep);
    if (!PyUnicode_IS_ASCII(sep))
        Py_RETURN_NONE;
    Py_ssize_t size = count > 0 ? seplen * (count - 1) : 0;
    for (i = 0; i < count; i++) {
        PyObject *line = PyList_GET_ITEM(lines, i);
        if (!PyUnicode_CheckExact(line)) {
            PyErr_Format(PyExc_TypeError, "ascii_join: line %zd is %.80s, not str", i,
                         Py_TYPE(line)->tp_name);
            return NULL;
        }
        if (PyUnicode_READY(line) < 0)
            return NULL;
        if (!PyUnicode_IS_ASCII(line))
            Py_RETURN_NONE;
        size += PyUnicode_GET_LENGTH(line);
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, size);
    if (out == NULL)
        return NULL;
    char *at = PyBytes_AS_STRING(out);
    const Py_UCS1 *sepdata = PyUnicode_1BYTE_DATA(sep);
    /* (the list cannot change while this runs: nothing here calls back into Python) */
    for (i = 0; i < count; i++) {
        PyObject *line = PyList_GET_ITEM(lines, i);
        Py_ssize_t n = PyUnicode_GET_LENGTH(line);
        if (i) {
            memcpy(at, sepdata, seplen);
            at += seplen;
        }
        memcpy(at, PyUnicode_1BYTE_DATA(line), n);
        at += n;
    }
    return out;
}

static PyMethodDef module_methods[] = {
    {"concat", (PyCFunction)(void (*)(void))concat, METH_FASTCALL,
     "concat(*pieces) -> ''.join(pieces)"},
    {"ascii_join", (PyCFunction)(void (*)(void))ascii_join, METH_FASTCALL,
     "ascii_join(sep, lines) -> sep.join(lines) as bytes when all of it is ASCII, else None"},
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
