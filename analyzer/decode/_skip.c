/* analyzer.decode._skip: a `--jobs` shard's reader steps over the other shards' classic-pcap
 * records at C speed (built with the compiled modules by setup.py; the pure-Python build has
 * no such module and runs capture/pcap.py's own loop, with the same result).
 *
 * `Skipper(linktype, count, mine, le, limit, frac_ns)` is made by decode/shard.py
 * `ShardTest.skipper` for a pcap cursor (capture/pcap.py `PcapCursor.skip`). Its `run(buf, pos)`
 * reads the records of `buf` (a bytes object) from `pos` on, exactly as `PcapCursor.advance`
 * would: each record whose header and frame are in `buf` with 0 < caplen <= limit is read
 * (its time made as `second_ns(sec) + frac * frac_ns`, counted, compared with the record
 * before it, taken into the lowest and highest time), and its shard computed as decode/shard.py
 * `shard_at` computes it (the same checks on the same bytes, the same hash). Another shard's
 * record is stepped over; every other record (its shard is `mine`, or -1, or it is the
 * 65536th, 131072nd, ... record: the caller's progress marks) is one for the cursor to hand
 * out. It reads on, over at least `span` bytes of records, to the first record it leaves to
 * the cursor's own code (the end of `buf`, a record or header not all in it, an empty record,
 * a captured length over `limit`) or the first past `span`, and returns
 * `(kept, stop, n, more)`: the records to hand out, as 8 bytes each, little-endian: the
 * record's offset in `buf` (32 bits), then the records read since the one before, this one
 * included (bits 0-16: at most 65536, every 65536th is handed out), the record's shard + 2
 * (bits 17-30: `count` is at most 8190) and whether its second is the second of the entry
 * before it in the list (bit 31: the cursor made that second's time then, and need not read
 * this record's); where it stopped in `buf`; the records it read after the last one kept;
 * and 1 when only `span` stopped it (it can go on from `stop`).
 *
 * One call a span (the caller's 256 KiB: the records still in the core's 1 MiB L2 cache when
 * the cursor hands them out) and 8 bytes a record to hand out, read in place: a call, or an
 * int object, a record costs more than the compiled Python loop spends on a record, and a
 * copy of the records costs a pass over memory.
 *
 * What the cursor must know of the records read here: their number (`frames`, kept here and
 * in step with the cursor's by `sync(frames, last)` after the cursor read records itself), the
 * last one's time (`last`), and, once at its end, the records stamped earlier than the record
 * before them (`back`) and the lowest and highest time (`lo`, `hi`). Every byte read is inside
 * `buf`: each offset is checked against the record's end before it is read, which is within
 * the buffer, whatever the bytes say.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

/* A prime below 2**16, as decode/shard.py `_PRIME`. */
#define PRIME 65521
/* Above every pcap time, as capture/pcap.py `_NO_TS`. */
#define NO_TS (((int64_t)1 << 62) - 1)
/* The largest `count` whose shard + 2 fits in the result's 14 bits. */
#define MAX_COUNT 8190

typedef struct {
    PyObject_HEAD
    int64_t linktype, count, mine, limit, frac_ns;
    int le;
    int64_t frames;    /* records read, by this object and the cursor (`sync`) */
    int64_t last;      /* the time of the last of them */
    int64_t back;      /* records read here stamped earlier than the record before them */
    int64_t lo, hi;    /* the lowest and highest time of the records read here */
} Skipper;

/* Whole words loaded at once (one instruction) where the compiler is known to do it: GCC and
 * Clang on a little-endian machine; elsewhere the byte-by-byte forms, which any compiler and
 * byte order read right. */
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define WORDS_LE 1
#define ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define WORDS_LE 0
#define ALWAYS_INLINE inline
#endif

/* The 16-bit big-endian (network order) integer at `p`. */
static inline uint32_t
be16(const unsigned char *p)
{
    return (uint32_t)p[0] << 8 | p[1];
}

/* A record header's 32-bit field at `p`, little-endian when `le`. */
static inline int64_t
u32(const unsigned char *p, int le)
{
#if WORDS_LE
    uint32_t v;
    memcpy(&v, p, 4);
    return le ? v : __builtin_bswap32(v);
#else
    if (le)
        return (int64_t)p[0] | (int64_t)p[1] << 8 | (int64_t)p[2] << 16 | (int64_t)p[3] << 24;
    return (int64_t)p[0] << 24 | (int64_t)p[1] << 16 | (int64_t)p[2] << 8 | (int64_t)p[3];
#endif
}

/* decode/frames.py `ip_offset`: where the IP header of `b[start:end]` starts, times two, plus
 * one for IPv6; -1 for a frame that is not one of `decode_at`'s layouts. */
static inline int64_t
ip_offset(int64_t linktype, const unsigned char *b, int64_t start, int64_t end)
{
    int64_t size = end - start, off;
    uint32_t etype;
    if (linktype == 1) {
        if (size < 14)
            return -1;
        etype = be16(b + start + 12);
        off = start + 14;
        if (etype == 0x8100 && size >= 18) {
            etype = be16(b + start + 16);
            off = start + 18;
        }
    }
    else if (linktype == 276) {
        if (size < 20)
            return -1;
        etype = be16(b + start);
        off = start + 20;
    }
    else if (linktype == 113) {
        if (size < 16)
            return -1;
        etype = be16(b + start + 14);
        off = start + 16;
    }
    else if (linktype == 101 || linktype == 12 || linktype == 14) {
        int ver;
        if (size < 1)
            return -1;
        ver = b[start] >> 4;
        if (ver == 4)
            return start << 1;
        return ver == 6 ? (start << 1 | 1) : -1;
    }
    else
        return -1;
    if (etype == 0x0800)
        return off << 1;
    if (etype == 0x86DD)
        return off << 1 | 1;
    return -1;
}

#if WORDS_LE
/* The 32 bits at `p`, as the machine reads them (little-endian). */
static inline uint32_t
ld32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
#endif

/* decode/shard.py `_shard`: the shard of the 4-tuple at `b + at`, addresses `alen` long
 * (`pow2`: whether `count` is a power of two). */
static inline int64_t
shard_of(const unsigned char *b, int64_t at, int64_t alen, uint32_t count, int pow2)
{
    const unsigned char *p = b + at + 2 * alen, *q = b + at + alen;
    uint32_t h, r;
#if WORDS_LE
    /* Three words as loaded, bytes s0-s3 (the source address's last four), d0-d3 (the
     * destination's), p0-p3 (the ports): xor the addresses' last two bytes apart (bits 16-31)
     * and the ports' halves (bits 0-15), giving bytes p0^p2 p1^p3 s2^d2 s3^d3 (from bit 0 up).
     * `_shard`'s value is s2^d2 s3^d3 p0^p2 p1^p3 read big-endian: the bytes reversed, then
     * the halves swapped. */
    uint32_t a = ld32(q - 4) ^ ld32(p - 4), ports = ld32(p);
    h = (a & 0xFFFF0000u) | ((ports ^ ports >> 16) & 0xFFFFu);
    h = __builtin_bswap32(h);
    h = h << 16 | h >> 16;
#else
    /* (the source address's low 16 bits, then the source port) ^ (the same of the
     * destination): the halves apart. */
    h = (be16(q - 2) ^ be16(p - 2)) << 16 | (be16(p) ^ be16(p + 2));
#endif
    h ^= h >> 15;
    r = h % PRIME;
    return pow2 ? r & (count - 1) : r % count;
}

/* decode/shard.py `_part`: the shard of the frame `b[start:end]`, or -1. */
static ALWAYS_INLINE int64_t
part_of(int64_t linktype, const unsigned char *b, int64_t start, int64_t end, uint32_t count,
        int pow2)
{
    int64_t at, off, t, hl;
#if WORDS_LE
    /* Ethernet and IPv4 first (most frames of most captures), behind one VLAN tag or none: the
     * frame is long enough for the IPv4 and TCP headers, the Ethernet type is IPv4 and the
     * first byte 0x45 (one word), not a fragment and TCP (one word). These are the checks of
     * `ip_offset` and of the IPv4 case below, in another order; every other frame takes the
     * general path. */
    if (linktype == 1 && end - start >= 54) {
        const unsigned char *f = b + start, *ip = f + 14;
        uint32_t w = ld32(f + 12);
        if ((w & 0xFFFF) == 0x0081 && end - start >= 58) {        /* 0x8100, as loaded */
            w = ld32(f + 16);
            ip = f + 18;
        }
        if ((w & 0xFFFFFF) == 0x450008 && (ld32(ip + 6) & 0xFF00FF3Fu) == 0x06000000u) {
            int64_t tot = be16(ip + 2);
            off = ip - b;
            t = off + 20;
            hl = (int64_t)b[t + 12] >> 2 & 0x3C;
            if (20 <= hl && hl <= tot - 20 && end >= t + hl)
                return shard_of(b, off + 12, 4, count, pow2);
            return -1;
        }
    }
#endif
    at = ip_offset(linktype, b, start, end);
    if (at < 0)
        return -1;
    off = at >> 1;
    if (at & 1) {
        if (end >= off + 60) {
            int64_t plen = be16(b + off + 4);
            t = off + 40;
            hl = (int64_t)b[t + 12] >> 2 & 0x3C;
            if (b[off] >> 4 == 6 && b[off + 6] == 6 && 20 <= hl && hl <= plen && end >= t + hl)
                return shard_of(b, off + 8, 16, count, pow2);
        }
        return -1;
    }
    if (end >= off + 40) {
        int64_t tot = be16(b + off + 2);
        t = off + 20;
        hl = (int64_t)b[t + 12] >> 2 & 0x3C;
        if (b[off] == 0x45 && b[off + 9] == 6 && !(be16(b + off + 6) & 0x3FFF)
                && 20 <= hl && hl <= tot - 20 && end >= t + hl)
            return shard_of(b, off + 12, 4, count, pow2);
    }
    return -1;
}

/* The integers `args[0:n]` into `out`: 0, or -1 with the exception set (not an int, or
 * beyond 64 bits). */
static int
int64_args(PyObject *const *args, Py_ssize_t n, int64_t *out)
{
    Py_ssize_t i;
    for (i = 0; i < n; i++) {
        out[i] = PyLong_AsLongLong(args[i]);
        if (out[i] == -1 && PyErr_Occurred())
            return -1;
    }
    return 0;
}

/* What `run` reads and counts: its records, and where they are listed. */
typedef struct {
    int64_t pos, n, used, frames, prev, back, lo, hi;
    int more;
} Scan;

/* `run`'s loop over `b[pos:size]` up to `until` (module comment), into `out`; `le`,
 * `linktype` and `pow2` (whether `count` is a power of two) are constants where it is called,
 * so each byte order and Ethernet have a loop of their own, and little-endian Ethernet one for
 * each kind of `count`. */
static ALWAYS_INLINE void
scan(Scan *s, const unsigned char *b, int64_t size, int64_t until, unsigned char *out,
     const int le, const int64_t linktype, const int pow2, const Skipper *self)
{
    int64_t pos = s->pos, n = s->n, used = s->used, frames = s->frames;
    /* No record before the first of the capture: none is earlier than it. */
    int64_t prev = frames ? s->prev : INT64_MIN;
    int64_t back = s->back, lo = s->lo, hi = s->hi, kept_sec = -1;
    const int64_t limit = self->limit, mine = self->mine, frac_ns = self->frac_ns;
    const uint32_t count = (uint32_t)self->count;
    /* Below `lim`, both `until` and a whole header ahead. */
    const int64_t lim = until < size - 15 ? until : size - 15;
    while (pos < lim) {
        int64_t sec, frac, caplen, end, ts, part;
        sec = u32(b + pos, le);
        frac = u32(b + pos + 4, le);
        caplen = u32(b + pos + 8, le);
        end = pos + 16 + caplen;
        /* caplen == 0 or caplen > limit (0 <= limit < 2**32), or past the buffer. */
        if ((uint64_t)(caplen - 1) >= (uint64_t)limit || end > size)
            break;
        /* 0 <= sec < 2**32, frac < 2**32, frac_ns <= 1000: below 2**63. */
        ts = sec * 1000000000LL + frac * frac_ns;
        frames += 1;
        n += 1;
        back += ts < prev;
        prev = ts;
        lo = ts < lo ? ts : lo;
        hi = ts > hi ? ts : hi;
        part = part_of(linktype, b, pos + 16, end, count, pow2);
        if (part < 0 || part == mine || !(frames & 0xFFFF)) {
            uint32_t x = (uint32_t)(n | (part + 2) << 17 | (int64_t)(sec == kept_sec) << 31);
            uint32_t p32 = (uint32_t)pos;
            unsigned char *e = out + used;
#if WORDS_LE
            memcpy(e, &p32, 4);
            memcpy(e + 4, &x, 4);
#else
            e[0] = p32 & 0xFF; e[1] = p32 >> 8 & 0xFF; e[2] = p32 >> 16 & 0xFF; e[3] = p32 >> 24;
            e[4] = x & 0xFF; e[5] = x >> 8 & 0xFF; e[6] = x >> 16 & 0xFF; e[7] = x >> 24;
#endif
            used += 8;
            n = 0;
            kept_sec = sec;
        }
        pos = end;
    }
    int more = pos >= until && pos + 16 <= size;     /* stopped by `span` only */
    if (!frames)
        prev = s->prev;
    s->pos = pos; s->n = n; s->used = used; s->frames = frames; s->prev = prev;
    s->back = back; s->lo = lo; s->hi = hi; s->more = more;
}

static PyObject *
Skipper_run(Skipper *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *buf, *kept, *result;
    const unsigned char *b;
    unsigned char *out;
    int64_t size, pos, span, until, at[2];
    Scan s;

    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "run(buf, pos, span) takes three arguments");
        return NULL;
    }
    buf = args[0];
    if (!PyBytes_Check(buf)) {
        PyErr_SetString(PyExc_TypeError, "run(buf, pos, span): buf must be bytes");
        return NULL;
    }
    if (int64_args(args + 1, 2, at) < 0)
        return NULL;
    pos = at[0];
    span = at[1];
    size = PyBytes_GET_SIZE(buf);
    if (pos < 0 || pos > size || span < 1) {
        PyErr_SetString(PyExc_ValueError, "run(buf, pos, span): pos outside buf, or span < 1");
        return NULL;
    }
    until = size - pos > span ? pos + span : size;
    /* At most one entry for each 17 bytes read (a record is 16 bytes and a frame). */
    kept = PyBytes_FromStringAndSize(NULL, 8 * ((until - pos) / 17 + 1));
    if (kept == NULL)
        return NULL;
    b = (const unsigned char *)PyBytes_AS_STRING(buf);
    out = (unsigned char *)PyBytes_AS_STRING(kept);
    s.pos = pos; s.n = 0; s.used = 0; s.frames = self->frames; s.prev = self->last;
    s.back = 0; s.lo = self->lo; s.hi = self->hi; s.more = 0;
    /* An offset that would not fit in 32 bits: everything is left to the cursor. */
    if (size <= 0xFFFFFFFFLL) {
        int pow2 = !(self->count & (self->count - 1));
        if (self->linktype == 1) {
            if (self->le && pow2)
                scan(&s, b, size, until, out, 1, 1, 1, self);
            else if (self->le)
                scan(&s, b, size, until, out, 1, 1, 0, self);
            else
                scan(&s, b, size, until, out, 0, 1, pow2, self);
        }
        else if (self->le)
            scan(&s, b, size, until, out, 1, self->linktype, pow2, self);
        else
            scan(&s, b, size, until, out, 0, self->linktype, pow2, self);
    }
    if (_PyBytes_Resize(&kept, s.used) < 0)
        return NULL;
    self->frames = s.frames;
    self->last = s.prev;
    self->back += s.back;
    self->lo = s.lo;
    self->hi = s.hi;
    result = Py_BuildValue("(NLLN)", kept, (long long)s.pos, (long long)s.n,   /* takes `kept` */
                           PyBool_FromLong(s.more));
    return result;
}

static PyObject *
Skipper_sync(Skipper *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t v[2];
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "sync(frames, last) takes two arguments");
        return NULL;
    }
    if (int64_args(args, 2, v) < 0)
        return NULL;
    self->frames = v[0];
    self->last = v[1];
    Py_RETURN_NONE;
}

static int
Skipper_init(Skipper *self, PyObject *args, PyObject *kwds)
{
    long long linktype, count, mine, limit, frac_ns;
    int le;
    static char *names[] = {"linktype", "count", "mine", "le", "limit", "frac_ns", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "LLLpLL", names, &linktype, &count, &mine,
                                     &le, &limit, &frac_ns))
        return -1;
    if (count < 1 || count > MAX_COUNT || mine < 0 || mine >= count || limit < 0
            || limit > 0xFFFFFFFFLL || frac_ns < 0 || frac_ns > 1000) {
        PyErr_SetString(PyExc_ValueError, "Skipper: arguments out of range");
        return -1;
    }
    self->linktype = linktype;
    self->count = count;
    self->mine = mine;
    self->le = le;
    self->limit = limit;
    self->frac_ns = frac_ns;
    self->frames = 0;
    self->last = 0;
    self->back = 0;
    self->lo = NO_TS;
    self->hi = -1;
    return 0;
}

static PyMethodDef Skipper_methods[] = {
    {"run", (PyCFunction)(void (*)(void))Skipper_run, METH_FASTCALL,
     "run(buf, pos, span) -> (the records to hand out, where it stopped, records read after "
     "them, whether only `span` stopped it)"},
    {"sync", (PyCFunction)(void (*)(void))Skipper_sync, METH_FASTCALL,
     "sync(frames, last): the records the cursor has read, and the last one's time"},
    {NULL, NULL, 0, NULL}
};

static PyMemberDef Skipper_members[] = {
    {"frames", T_LONGLONG, offsetof(Skipper, frames), READONLY, "records read"},
    {"last", T_LONGLONG, offsetof(Skipper, last), READONLY, "the last record's time"},
    {"back", T_LONGLONG, offsetof(Skipper, back), READONLY,
     "records read here stamped earlier than the record before them"},
    {"lo", T_LONGLONG, offsetof(Skipper, lo), READONLY, "the lowest time read here"},
    {"hi", T_LONGLONG, offsetof(Skipper, hi), READONLY, "the highest time read here (-1: none)"},
    {NULL, 0, 0, 0, NULL}
};

static PyTypeObject SkipperType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "analyzer.decode._skip.Skipper",
    .tp_doc = "Steps over the other shards' records of a classic pcap read buffer.",
    .tp_basicsize = sizeof(Skipper),
    .tp_itemsize = 0,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Skipper_init,
    .tp_methods = Skipper_methods,
    .tp_members = Skipper_members,
};

static PyObject *
part(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t linktype, v[3], start, end, count;
    PyObject *buf;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "part(linktype, buf, start, end, count)");
        return NULL;
    }
    if (int64_args(args, 1, &linktype) < 0 || int64_args(args + 2, 3, v) < 0)
        return NULL;
    buf = args[1];
    start = v[0];
    end = v[1];
    count = v[2];
    if (!PyBytes_Check(buf)) {
        PyErr_SetString(PyExc_TypeError, "part: buf must be bytes");
        return NULL;
    }
    if (start < 0 || end < start || end > PyBytes_GET_SIZE(buf) || count < 1) {
        PyErr_SetString(PyExc_ValueError, "part: start, end or count out of range");
        return NULL;
    }
    if (count > 65536)          /* `% count` of a value below 65521 is the value, as `& 65535` */
        count = 65536;
    return PyLong_FromLongLong(
        part_of(linktype, (const unsigned char *)PyBytes_AS_STRING(buf), start, end,
                (uint32_t)count, !(count & (count - 1))));
}

static PyMethodDef module_methods[] = {
    {"part", (PyCFunction)(void (*)(void))part, METH_FASTCALL,
     "part(linktype, buf, start, end, count): decode/shard.py shard_at, in C (for the tests)"},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "analyzer.decode._skip",
    .m_doc = "A --jobs shard's reader steps over the other shards' pcap records at C speed.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__skip(void)
{
    PyObject *m;
    if (PyType_Ready(&SkipperType) < 0)
        return NULL;
    m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "MAX_COUNT", MAX_COUNT) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&SkipperType);
    if (PyModule_AddObject(m, "Skipper", (PyObject *)&SkipperType) < 0) {
        Py_DECREF(&SkipperType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
