/* analyzer.decode._flowkey: a segment's 4-tuple key (`Segment.key`) as one bytes object per
 * 4-tuple, not a new one per packet (built with the compiled modules by setup.py; the pure
 * build has no such module and decode/flowkey.py does the same in Python: a new object each
 * time, equal to the one made here).
 *
 * Why: the flow table (tcp/flows.py) finds a packet's connection by its key in a dict. A key
 * sliced from each packet is a new object: its hash (SipHash, some 150 instructions for 12
 * bytes) is computed before the probe, and the probe compares it with the table's key byte by
 * byte; the slice itself is an allocation, and a connection tells its sides apart by comparing
 * keys again (tcp/conn.py). The same object every packet has its hash cached in it, the probe
 * and the side test find it by identity, and nothing is allocated.
 *
 * `key_of(key)` is `key` (a 4-tuple key the decoder sliced from a packet); `reverse_key(key)`
 * the same 4-tuple seen from the other end (addresses swapped, ports swapped). Both return the
 * object a small cache holds for those bytes when it has one, else `key` or a new object, which
 * the cache then holds. The cache is set-associative, two ways of `1 << SET_BITS` sets, each
 * way one reference: a bounded memory (64 KB of slots and the keys they hold: 384 KB of IPv4
 * keys, 576 KB of IPv6 ones at most) and no deletion to keep up with; a 4-tuple that lost its place is made
 * anew, equal, and only costs what a slice costs. Results never depend on the cache: only
 * which object among equal ones is returned.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* 8,192 keys (two ways of 4,096 sets). What a cache holds beyond the flow table's own keys is the
 * keys of connections already gone: 65,536 held 3.6 MB more at the peak of 100 k connections
 * closing in one 2*MSL window (JSON past 100 MiB), for 0.8 % fewer instructions on the closing
 * shape (66,135 against 66,657 a connection, seeded; 32,768 gave 66,644). */
#define SET_BITS 12
#define SETS (1 << SET_BITS)
/* Longest key: two IPv6 addresses and two ports. */
#define KEY_MAX 36

static PyObject *cache[SETS][2];

static inline uint64_t
load64(const unsigned char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

static inline uint32_t
load32(const unsigned char *p)
{
    uint32_t w;
    memcpy(&w, p, 4);
    return w;
}

/* The set of `n` bytes at `p` (a key: `n` is 12 or 36, 8-byte words then 4 bytes): the words
 * multiplied and folded, the top bits of the result. */
static inline uint64_t
set_of(const unsigned char *p, Py_ssize_t n)
{
    uint64_t h = (uint64_t)n;
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8)
        h = (h ^ load64(p + i)) * 0xFF51AFD7ED558CCDULL;
    h = (h ^ load32(p + i)) * 0xC4CEB9FE1A85EC53ULL;
    h ^= h >> 31;
    h *= 0x9E3779B97F4A7C15ULL;
    return h >> (64 - SET_BITS);
}

/* Whether the bytes object `k` holds the `n` bytes at `p` (`n` as above; word by word: no
 * call). */
static inline int
same(PyObject *k, const unsigned char *p, Py_ssize_t n)
{
    if (k == NULL || Py_SIZE(k) != n)
        return 0;
    const unsigned char *q = (const unsigned char *)PyBytes_AS_STRING(k);
    uint64_t d = 0;
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8)
        d |= load64(p + i) ^ load64(q + i);
    d |= load32(p + i) ^ load32(q + i);
    return d == 0;
}

/* A new reference to the bytes object holding the `n` bytes at `p`: the cache's, else `have`
 * (a bytes object holding them, or NULL: then a new one), which the cache then holds. `p` may
 * lie in an object the cache lets go of: it is read before. */
static inline PyObject *
intern_n(const unsigned char *p, Py_ssize_t n, PyObject *have)
{
    PyObject **set = cache[set_of(p, n)];
    PyObject *k = set[0];
    if (same(k, p, n)) {
        Py_INCREF(k);
        return k;
    }
    k = set[1];
    if (same(k, p, n)) {                /* the most recent first */
        set[1] = set[0];
        set[0] = k;
        Py_INCREF(k);
        return k;
    }
    if (have != NULL) {
        k = have;
        Py_INCREF(k);
    }
    else {
        k = PyBytes_FromStringAndSize((const char *)p, n);
        if (k == NULL)
            return NULL;
    }
    PyObject *old = set[1];
    set[1] = set[0];
    Py_INCREF(k);
    set[0] = k;
    Py_XDECREF(old);
    return k;
}

/* `intern_n` for the two sizes of a key (IPv4, IPv6), spelled out: the loops above unrolled.
 * Bytes of another size (none from the decoder) are not held: `have` (NULL: new ones). */
static PyObject *
intern(const unsigned char *p, Py_ssize_t n, PyObject *have)
{
    if (n == 12)
        return intern_n(p, 12, have);
    if (n == 36)
        return intern_n(p, 36, have);
    if (have != NULL) {
        Py_INCREF(have);
        return have;
    }
    return PyBytes_FromStringAndSize((const char *)p, n);
}

static PyObject *
key_of(PyObject *self, PyObject *key)
{
    (void)self;
    if (PyBytes_CheckExact(key) && PyBytes_GET_SIZE(key) <= KEY_MAX) {
        return intern((const unsigned char *)PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key), key);
    }
    Py_INCREF(key);                     /* anything else: itself */
    return key;
}

/* What decode/flowkey.py's slices give for a key that is no 4-tuple (the decoder makes none:
 * its addresses are 4 or 16 bytes both): key[n:2n] + key[:n] + key[2n+2:] + key[2n:2n+2]. */
static PyObject *
reverse_slices(PyObject *key, Py_ssize_t n)
{
    Py_ssize_t bounds[4][2] = {{n, 2 * n}, {0, n}, {2 * n + 2, PY_SSIZE_T_MAX},
                               {2 * n, 2 * n + 2}};
    PyObject *out = PyBytes_FromStringAndSize(NULL, 0);
    for (int i = 0; i < 4 && out != NULL; i++) {
        PyObject *piece = PySequence_GetSlice(key, bounds[i][0], bounds[i][1]);
        if (piece == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyBytes_ConcatAndDel(&out, piece);
    }
    return out;
}

static PyObject *
reverse_key(PyObject *self, PyObject *key)
{
    (void)self;
    if (!PyBytes_CheckExact(key)) {
        PyErr_SetString(PyExc_TypeError, "reverse_key: a bytes key");
        return NULL;
    }
    Py_ssize_t len = PyBytes_GET_SIZE(key);
    Py_ssize_t n = (len - 4) >> 1;
    const unsigned char *k = (const unsigned char *)PyBytes_AS_STRING(key);
    if (len > KEY_MAX || n < 0 || 2 * n + 4 != len)
        return reverse_slices(key, n);
    unsigned char r[KEY_MAX];
    memcpy(r, k + n, n);
    memcpy(r + n, k, n);
    r[2 * n] = k[2 * n + 2];
    r[2 * n + 1] = k[2 * n + 3];
    r[2 * n + 2] = k[2 * n];
    r[2 * n + 3] = k[2 * n + 1];
    return intern(r, len, NULL);
}

static PyMethodDef module_methods[] = {
    {"key_of", (PyCFunction)key_of, METH_O,
     "key_of(key) -> key, or an equal bytes object made before (one object per 4-tuple)"},
    {"reverse_key", (PyCFunction)reverse_key, METH_O,
     "reverse_key(key) -> the 4-tuple key seen from the other end, one object per 4-tuple"},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "analyzer.decode._flowkey",
    .m_doc = "4-tuple keys, one object per 4-tuple (decode/flowkey.py is the same in Python).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__flowkey(void)
{
    return PyModule_Create(&module);
}
