/* analyzer.common._join: the JSON writer's text copies at C speed (built with the compiled
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
 *
 * `subtuple(cls, *items)` is `tuple.__new__(cls, items)` for a subclass of tuple (a
 * NamedTuple: judge/result.py's `Lingering`, one a connection that ends in TIME_WAIT) made
 * as that makes it, but without the two tuples on the way (the arguments', then the items')
 * and the arguments parsed: some 800 instructions where this takes a tenth.
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


/* `merge_lines(sources, steps, first)`: the JSON report's lines of a parallel run
 * (render/json_out.py `_write_numbered`), merged by key from sorted sources, each begun with
 * its stream number, as one bytes object: what the parent writes once every shard has ended.
 * In Python (common/join.py) a line costs some 5 k instructions: a slice object and a view
 * of the message for its text, an int, a str and a bytes for its number, the step through
 * every shard's numbers, the join; here some tens and the copy.
 *
 * `sources`: a list of lists `[keys, ends, data, sep, at]`, one a source, each the block in
 * hand of a source whose keys ascend and appear in no other: `keys` and `ends` (lists of ints,
 * or buffers of native 64-bit integers: `array("q")`), the line `i` being `data[start:ends[i]]`
 * with `start` 0 for the first and `ends[i - 1] + sep` for the others (`data`: bytes or any
 * buffer of them), `at` the next line to take. `steps`: a list of lists `[numbers, j]`, one a
 * shard, its numbers (a buffer of ascending 64-bit integers) and how many of them are below
 * the last key numbered: the stream number of key `p` is how many numbers, all shards
 * together, are below `p`. `first`: no line written before (the first line begins
 * `\n  {"id": `, the others `,\n  {"id": `).
 *
 * `merge_lines(sources, steps, first, between)`: the lines as they are, no number (`steps` is
 * then read not at all), the bytes `between` before each but the first: lines that do not
 * depend on the numbering (render/zeek_out.py: a conn.log row names its connection by its
 * first frame).
 *
 * Lines are taken from the source of the lowest key, each line of it below every other
 * source's next key at once, until a source's block is used up or `MERGE_BYTES` are made.
 * Returns `(text, done)`: `done` is the index of the source whose block is used up (the
 * caller puts its next block in its place, or removes it), -1 when stopped for size. Each
 * source's `at` and each shard's `j` are updated in place. ValueError for a block whose ends
 * do not fit its data. */

#define MERGE_BYTES (1 << 16)

typedef struct {
    PyObject *keys, *ends;              /* lists, or NULL */
    const int64_t *kbuf, *ebuf;         /* buffers, or NULL */
    Py_ssize_t count, sep, at;
    int64_t head;                       /* the key at `at` */
    const char *data;
    Py_ssize_t size;
    Py_buffer kview, eview, dview;
    int kheld, eheld, dheld;
} Source;

typedef struct {
    const int64_t *numbers;
    Py_ssize_t count, j;
    Py_buffer view;
    int held;
} Steps;

static int
int64_at(PyObject *list, const int64_t *buf, Py_ssize_t i, int64_t *out)
{
    if (buf != NULL) {
        memcpy(out, buf + i, 8);
        return 0;
    }
    long long v = PyLong_AsLongLong(PyList_GET_ITEM(list, i));
    if (v == -1 && PyErr_Occurred())
        return -1;
    *out = (int64_t)v;
    return 0;
}

/* A list of ints, or a buffer of 64-bit integers (held in `view`): its items and count. */
static int
int64s(PyObject *obj, PyObject **list, const int64_t **buf, Py_buffer *view, int *held,
       Py_ssize_t *count)
{
    if (PyList_Check(obj)) {
        *list = obj;
        *buf = NULL;
        *count = PyList_GET_SIZE(obj);
        return 0;
    }
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0)
        return -1;
    *held = 1;
    if (view->len % 8) {
        PyErr_SetString(PyExc_ValueError, "merge_lines: not a buffer of 64-bit integers");
        return -1;
    }
    *list = NULL;
    *buf = (const int64_t *)view->buf;
    *count = view->len / 8;
    return 0;
}

/* The decimal digits of `n` (not negative) at `to`; their count. */
static Py_ssize_t
digits(char *to, int64_t n)
{
    char tmp[24];
    Py_ssize_t k = 0;
    uint64_t v = (uint64_t)n;
    do {
        tmp[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (Py_ssize_t i = 0; i < k; i++)
        to[i] = tmp[k - 1 - i];
    return k;
}

static PyObject *
merge_lines(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    static const char first_id[] = "\n  {\"id\": ";
    static const char next_id[] = ",\n  {\"id\": ";
    const Py_ssize_t first_len = sizeof(first_id) - 1, next_len = sizeof(next_id) - 1;
    if ((nargs != 3 && nargs != 4) || !PyList_Check(args[0]) || !PyList_Check(args[1]) ||
            (nargs == 4 && !PyBytes_Check(args[3]))) {
        PyErr_SetString(PyExc_TypeError,
                        "merge_lines(sources, steps, first[, between]): two lists, a flag, bytes");
        return NULL;
    }
    PyObject *sources = args[0], *steps = args[1], *out = NULL, *result = NULL;
    int first = PyObject_IsTrue(args[2]);
    if (first < 0)
        return NULL;
    /* `between` given: lines as they are, it before each but the first, no numbers */
    const int plain_lines = nargs == 4;
    const char *between_s = plain_lines ? PyBytes_AS_STRING(args[3]) : NULL;
    const Py_ssize_t between_len = plain_lines ? PyBytes_GET_SIZE(args[3]) : 0;
    Py_ssize_t ns = PyList_GET_SIZE(sources), nt = plain_lines ? 0 : PyList_GET_SIZE(steps), s, t;
    Source *src = PyMem_Calloc(ns ? ns : 1, sizeof(Source));
    Steps *st = PyMem_Calloc(nt ? nt : 1, sizeof(Steps));
    Py_ssize_t done = -1, size = 0, cap = MERGE_BYTES + 4096;
    if (src == NULL || st == NULL) {
        PyErr_NoMemory();
        goto end;
    }
    for (s = 0; s < ns; s++) {
        PyObject *entry = PyList_GET_ITEM(sources, s);
        Source *x = &src[s];
        Py_ssize_t ecount;
        if (!PyList_Check(entry) || PyList_GET_SIZE(entry) != 5) {
            PyErr_SetString(PyExc_TypeError, "merge_lines: a source is [keys, ends, data, sep, at]");
            goto end;
        }
        if (int64s(PyList_GET_ITEM(entry, 0), &x->keys, &x->kbuf, &x->kview, &x->kheld,
                   &x->count) < 0 ||
            int64s(PyList_GET_ITEM(entry, 1), &x->ends, &x->ebuf, &x->eview, &x->eheld,
                   &ecount) < 0)
            goto end;
        if (PyObject_GetBuffer(PyList_GET_ITEM(entry, 2), &x->dview, PyBUF_SIMPLE) < 0)
            goto end;
        x->dheld = 1;
        x->data = (const char *)x->dview.buf;
        x->size = x->dview.len;
        x->sep = PyLong_AsSsize_t(PyList_GET_ITEM(entry, 3));
        x->at = PyLong_AsSsize_t(PyList_GET_ITEM(entry, 4));
        if (PyErr_Occurred())
            goto end;
        if (ecount < x->count || x->at < 0 || x->at >= x->count || x->sep < 0) {
            PyErr_SetString(PyExc_ValueError, "merge_lines: a source's block has no line at `at`");
            goto end;
        }
        if (int64_at(x->keys, x->kbuf, x->at, &x->head) < 0)
            goto end;
    }
    for (t = 0; t < nt; t++) {
        PyObject *entry = PyList_GET_ITEM(steps, t);
        PyObject *list = NULL;
        Steps *y = &st[t];
        if (!PyList_Check(entry) || PyList_GET_SIZE(entry) != 2) {
            PyErr_SetString(PyExc_TypeError, "merge_lines: a shard's steps are [numbers, j]");
            goto end;
        }
        if (int64s(PyList_GET_ITEM(entry, 0), &list, &y->numbers, &y->view, &y->held,
                   &y->count) < 0)
            goto end;
        if (list != NULL) {
            PyErr_SetString(PyExc_TypeError, "merge_lines: a shard's numbers are a buffer");
            goto end;
        }
        y->j = PyLong_AsSsize_t(PyList_GET_ITEM(entry, 1));
        if (y->j == -1 && PyErr_Occurred())
            goto end;
        if (y->j < 0 || y->j > y->count)
            y->j = 0;
    }
    out = PyBytes_FromStringAndSize(NULL, cap);
    if (out == NULL)
        goto end;
    while (ns > 0 && done < 0 && size < MERGE_BYTES) {
        /* the source of the lowest next key, and the others' lowest (`bound`) */
        Py_ssize_t best = 0;
        int64_t low = src[0].head, bound = 0, key;
        int alone = 1;
        for (s = 1; s < ns; s++) {
            key = src[s].head;
            if (key < low) {
                bound = low;
                low = key;
                best = s;
            }
            else if (alone || key < bound)
                bound = key;
            alone = 0;
        }
        Source *x = &src[best];
        Py_ssize_t i = x->at;
        key = low;
        for (;;) {
            int64_t end, start = 0, n = 0;
            if (i > 0) {
                if (int64_at(x->ends, x->ebuf, i - 1, &start) < 0)
                    goto end;
                start += x->sep;
            }
            if (int64_at(x->ends, x->ebuf, i, &end) < 0)
                goto end;
            if (start < 0 || end < start || end > x->size) {
                PyErr_SetString(PyExc_ValueError, "merge_lines: a line beyond its block's data");
                goto end;
            }
            for (t = 0; t < nt; t++) {      /* the stream number: numbers below `key` */
                Steps *y = &st[t];
                Py_ssize_t j = y->j;
                if (j > 0 && y->numbers[j - 1] >= key)
                    j = 0;                  /* (keys not ascending: counted again) */
                while (j < y->count && y->numbers[j] < key)
                    j++;
                y->j = j;
                n += j;
            }
            Py_ssize_t need = size + next_len + between_len + 24 + (Py_ssize_t)(end - start);
            if (need > cap) {
                cap = need + cap / 2;
                if (_PyBytes_Resize(&out, cap) < 0)
                    goto end;
            }
            char *to = PyBytes_AS_STRING(out) + size;
            if (plain_lines) {
                if (!first) {
                    memcpy(to, between_s, (size_t)between_len);
                    to += between_len;
                }
                first = 0;
                memcpy(to, x->data + start, (size_t)(end - start));
                to += end - start;
            }
            else {
                if (first) {
                    memcpy(to, first_id, first_len);
                    to += first_len;
                    first = 0;
                }
                else {
                    memcpy(to, next_id, next_len);
                    to += next_len;
                }
                to += digits(to, n);
                memcpy(to, x->data + start, (size_t)(end - start));
                to += end - start;
            }
            size = to - PyBytes_AS_STRING(out);
            i += 1;
            if (i >= x->count) {
                done = best;
                break;
            }
            if (int64_at(x->keys, x->kbuf, i, &key) < 0)
                goto end;
            x->head = key;
            if ((!alone && key > bound) || size >= MERGE_BYTES)
                break;
        }
        x->at = i;
    }
    if (_PyBytes_Resize(&out, size) < 0)
        goto end;
    for (s = 0; s < ns; s++) {
        PyObject *at = PyLong_FromSsize_t(src[s].at);
        if (at == NULL || PyList_SetItem(PyList_GET_ITEM(sources, s), 4, at) < 0)
            goto end;
    }
    for (t = 0; t < nt; t++) {
        PyObject *j = PyLong_FromSsize_t(st[t].j);
        if (j == NULL || PyList_SetItem(PyList_GET_ITEM(steps, t), 1, j) < 0)
            goto end;
    }
    result = Py_BuildValue("(On)", out, done);
end:
    Py_XDECREF(out);
    if (src != NULL) {
        for (s = 0; s < ns; s++) {
            if (src[s].kheld)
                PyBuffer_Release(&src[s].kview);
            if (src[s].eheld)
                PyBuffer_Release(&src[s].eview);
            if (src[s].dheld)
                PyBuffer_Release(&src[s].dview);
        }
        PyMem_Free(src);
    }
    if (st != NULL) {
        for (t = 0; t < nt; t++)
            if (st[t].held)
                PyBuffer_Release(&st[t].view);
        PyMem_Free(st);
    }
    return result;
}

static PyObject *
subtuple(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyTypeObject *type;
    PyObject *result;
    Py_ssize_t i;

    if (nargs < 1 || !PyType_Check(args[0]) ||
            !PyType_IsSubtype((PyTypeObject *)args[0], &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "subtuple: the first argument must be a tuple type");
        return NULL;
    }
    type = (PyTypeObject *)args[0];
    result = type->tp_alloc(type, nargs - 1);       /* (as tuple_subtype_new does) */
    if (result == NULL)
        return NULL;
    for (i = 1; i < nargs; i++) {
        Py_INCREF(args[i]);
        PyTuple_SET_ITEM(result, i - 1, args[i]);
    }
    if (!PyObject_GC_IsTracked(result))
        PyObject_GC_Track(result);
    return result;
}

static PyMethodDef module_methods[] = {
    {"concat", (PyCFunction)(void (*)(void))concat, METH_FASTCALL,
     "concat(*pieces) -> ''.join(pieces)"},
    {"plain", (PyCFunction)plain, METH_O,
     "plain(s) -> whether s is ASCII text JSON writes as it is, between quotes"},
    {"text_block", (PyCFunction)(void (*)(void))text_block, METH_FASTCALL,
     "text_block(sep, keys, lines) -> (keys, ends, text) as a spilled text block writes them, "
     "or None"},
    {"merge_lines", (PyCFunction)(void (*)(void))merge_lines, METH_FASTCALL,
     "merge_lines(sources, steps, first[, between]) -> (text, done): lines merged by key, "
     "numbered (or as they are, between between two)"},
    {"subtuple", (PyCFunction)(void (*)(void))subtuple, METH_FASTCALL,
     "subtuple(cls, *items) -> tuple.__new__(cls, items), for a subclass of tuple"},
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
