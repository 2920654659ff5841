/* The bbolt tree walk in C: exporter.sources.bolt_walk._PyWalk step for step (the same pages read
 * in the same order, the same checks, the same budgets, the same result and the same errors),
 * minus the interpreter's cost per element. containerd's meta.db holds ~200,000 elements for
 * 10,000 snapshots; the Python walk spends ~1 us on each.
 *
 * Optional: setup.py builds it where a C compiler and Python's headers exist; without it,
 * bolt.py walks in Python (tests/unit/test_bolt.py runs both on real, torn and fuzzed files
 * and compares them).
 *
 * init(corrupt: type)  the exception raised for a broken structure
 * walk(fd, pread, page_size, hwm, root, sequence, node) -> the root bucket as `node` says
 *   pread: None for the pread(2) syscall, else a callable (fd, size, offset) -> bytes (tests).
 *   node: bolt._compile's output: an int kind, or (kind, {name: (slot, node)}, node or None).
 * OSError comes out as is (bolt.py makes it Unreadable). The GIL is held throughout (tens of
 * ms for meta.db): each pread is about a microsecond, and releasing the GIL around 20,000 of
 * them would hand it to any busy thread each time and wait its switch interval to get it back.
 *
 * maker(cls, fields) -> a constructor of a frozen slots dataclass that sets its slots directly
 *   (bolt.maker checks the class; the records of both files are made with it).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <structmember.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_DEPTH 64
#define PAGE_HEADER 16
#define HEAD 512 /* bytes read first of a bucket's root page (less than any page size) */
#define ELEMENT 16
#define INBUCKET 16
#define BRANCH 0x01
#define LEAF 0x02
#define BUCKET_LEAF 0x01

enum { K_BUCKET = 0, K_TEXT = 1, K_BYTES = 2, K_UVARINT = 3, K_VARINT = 4, K_KEYS = 5, K_FULL = 6, K_ROW = 7 };

static PyObject *Corrupt = NULL;

/* --- the compiled shape ------------------------------------------------------------------ */

typedef struct Node {
    int kind;
    Py_ssize_t n;        /* named children */
    const char **name;   /* into the shape's bytes keys: the shape lives through the call */
    Py_ssize_t *len;
    PyObject **slot;     /* borrowed: the key in the result (text), or the Row's index */
    Py_ssize_t *index;   /* K_ROW: slot as a C integer */
    struct Node **kid;
    struct Node *other;  /* ANY */
} Node;

static Node FULL_NODE = {K_FULL, 0, NULL, NULL, NULL, NULL, NULL, NULL};

static void node_free(Node *n) {
    if (n == NULL || n == &FULL_NODE) return;
    for (Py_ssize_t i = 0; i < n->n; i++) node_free(n->kid[i]);
    node_free(n->other);
    free(n->name);
    free(n->len);
    free(n->slot);
    free(n->index);
    free(n->kid);
    free(n);
}

static Node *node_new(PyObject *obj, int depth) {
    if (depth > 100) {
        PyErr_SetString(PyExc_ValueError, "shape nested too deep");
        return NULL;
    }
    if (PyLong_Check(obj)) {
        long k = PyLong_AsLong(obj);
        if (k == K_FULL) return &FULL_NODE;
        if (k < K_TEXT || k > K_KEYS) {
            PyErr_SetString(PyExc_ValueError, "not a shape kind");
            return NULL;
        }
        Node *n = calloc(1, sizeof(Node));
        if (n == NULL) return (Node *)PyErr_NoMemory();
        n->kind = (int)k;
        return n;
    }
    if (!PyTuple_Check(obj) || PyTuple_GET_SIZE(obj) != 3 || !PyLong_Check(PyTuple_GET_ITEM(obj, 0)) ||
        !PyDict_Check(PyTuple_GET_ITEM(obj, 1))) {
        PyErr_SetString(PyExc_TypeError, "a compiled shape: (kind, {name: (slot, node)}, node or None)");
        return NULL;
    }
    long kind = PyLong_AsLong(PyTuple_GET_ITEM(obj, 0));
    if (kind != K_BUCKET && kind != K_ROW) {
        PyErr_SetString(PyExc_ValueError, "not a bucket's shape kind");
        return NULL;
    }
    PyObject *names = PyTuple_GET_ITEM(obj, 1), *other = PyTuple_GET_ITEM(obj, 2);
    Py_ssize_t count = PyDict_GET_SIZE(names);
    Node *n = calloc(1, sizeof(Node));
    if (n == NULL) return (Node *)PyErr_NoMemory();
    n->kind = (int)kind;
    n->name = calloc(count + 1, sizeof(char *));
    n->len = calloc(count + 1, sizeof(Py_ssize_t));
    n->slot = calloc(count + 1, sizeof(PyObject *));
    n->index = calloc(count + 1, sizeof(Py_ssize_t));
    n->kid = calloc(count + 1, sizeof(Node *));
    if (n->name == NULL || n->len == NULL || n->slot == NULL || n->index == NULL || n->kid == NULL) {
        node_free(n);
        return (Node *)PyErr_NoMemory();
    }
    Py_ssize_t pos = 0;
    PyObject *k, *v;
    while (PyDict_Next(names, &pos, &k, &v)) {
        if (!PyBytes_Check(k) || !PyTuple_Check(v) || PyTuple_GET_SIZE(v) != 2) {
            PyErr_SetString(PyExc_TypeError, "a compiled shape's names: {bytes: (slot, node)}");
            node_free(n);
            return NULL;
        }
        PyObject *slot = PyTuple_GET_ITEM(v, 0);
        Py_ssize_t index = -1;
        if (kind == K_ROW) {
            index = PyLong_Check(slot) ? PyLong_AsSsize_t(slot) : -1;
            if (index < 0 || index >= count) {
                PyErr_SetString(PyExc_ValueError, "a Row's index out of range");
                node_free(n);
                return NULL;
            }
        } else if (!PyUnicode_Check(slot)) {
            PyErr_SetString(PyExc_TypeError, "a bucket's result keys are str");
            node_free(n);
            return NULL;
        }
        Node *kid = node_new(PyTuple_GET_ITEM(v, 1), depth + 1);
        if (kid == NULL) {
            node_free(n);
            return NULL;
        }
        n->name[n->n] = PyBytes_AS_STRING(k);
        n->len[n->n] = PyBytes_GET_SIZE(k);
        n->slot[n->n] = slot;
        n->index[n->n] = index;
        n->kid[n->n++] = kid;
    }
    if (other != Py_None && (n->other = node_new(other, depth + 1)) == NULL) {
        node_free(n);
        return NULL;
    }
    return n;
}

/* The index of the name `key` in n, or -1. */
static Py_ssize_t node_find(const Node *n, const uint8_t *key, size_t ks) {
    for (Py_ssize_t i = 0; i < n->n; i++)
        if ((size_t)n->len[i] == ks && memcmp(n->name[i], key, ks) == 0) return i;
    return -1;
}

static int is_value_kind(int k) { return k >= K_TEXT && k <= K_VARINT; }
static int is_bucket_kind(int k) { return k == K_BUCKET || k == K_KEYS || k == K_FULL || k == K_ROW; }

/* --- little-endian fields ---------------------------------------------------------------- */

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

/* --- the walk ---------------------------------------------------------------------------- */

typedef struct {
    int fd;
    PyObject *pread; /* NULL: the syscall */
    uint64_t ps, hwm;
    uint8_t *seen;
    long long elements, copied; /* budgets, as _PyWalk's */
    /* one page buffer per depth, kept for the walk: at each depth one page is open at a time
     * (its parents' below, its children's above), so no malloc and free per page */
    uint8_t *buf[MAX_DEPTH + 1];
    size_t cap[MAX_DEPTH + 1];
} Walk;

static PyObject *bytes_head(const uint8_t *p, size_t n) {
    return PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)(n < 60 ? n : 60));
}

/* size bytes at offset into buf: 0, or -1 with an exception set */
static int read_at(Walk *w, uint8_t *buf, uint64_t size, uint64_t offset) {
    if (w->pread == NULL) {
        uint64_t got = 0;
        for (;;) {
            ssize_t r = pread(w->fd, buf, (size_t)size, (off_t)offset);
            if (r >= 0) {
                got = (uint64_t)r;
                break;
            }
            if (errno != EINTR) {
                PyErr_SetFromErrno(PyExc_OSError);
                return -1;
            }
            if (PyErr_CheckSignals() < 0) return -1;
        }
        if (got != size) {
            PyErr_Format(Corrupt, "short read: %llu of %llu bytes at %llu", (unsigned long long)got,
                         (unsigned long long)size, (unsigned long long)offset);
            return -1;
        }
        return 0;
    }
    PyObject *r = PyObject_CallFunction(w->pread, "iKK", w->fd, (unsigned long long)size,
                                        (unsigned long long)offset);
    if (r == NULL) return -1;
    Py_buffer view;
    if (PyObject_GetBuffer(r, &view, PyBUF_SIMPLE) < 0) {
        Py_DECREF(r);
        return -1;
    }
    int rc = 0;
    if ((uint64_t)view.len != size) {
        PyErr_Format(Corrupt, "short read: %zd of %llu bytes at %llu", view.len, (unsigned long long)size,
                     (unsigned long long)offset);
        rc = -1;
    } else {
        memcpy(buf, view.buf, (size_t)size);
    }
    PyBuffer_Release(&view);
    Py_DECREF(r);
    return rc;
}

/* w->buf[depth] holds *have bytes of the page at `at`: read on to `want` */
static int more(Walk *w, int depth, size_t *have, uint64_t want, uint64_t at) {
    if (want <= *have) return 0;
    if (want > w->cap[depth]) {
        uint8_t *grown = realloc(w->buf[depth], (size_t)want);
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        w->buf[depth] = grown;
        w->cap[depth] = (size_t)want;
    }
    if (read_at(w, w->buf[depth] + *have, want - *have, at + *have) < 0) return -1;
    *have = (size_t)want;
    return 0;
}

/* Page pgid with its overflow pages, checked and marked seen, in w->buf[depth] as far as its
 * elements reach; *len the length of its span. NULL with an exception set on error. Read in
 * up to three steps, as _PyWalk._page: HEAD bytes (a whole page if `whole`), the rest of the
 * element array, the rest of the keys and values. */
static const uint8_t *fetch(Walk *w, uint64_t pgid, int whole, int depth, size_t *len) {
    if (pgid < 2 || pgid >= w->hwm) {
        PyErr_Format(Corrupt, "pgid %llu outside 2..%llu", (unsigned long long)pgid,
                     (unsigned long long)(w->hwm - 1));
        return NULL;
    }
    if (w->seen[pgid]) {
        PyErr_Format(Corrupt, "page %llu reached twice", (unsigned long long)pgid);
        return NULL;
    }
    uint64_t at = pgid * w->ps;
    size_t have = 0;
    if (more(w, depth, &have, whole ? w->ps : HEAD, at) < 0) return NULL;
    const uint8_t *buf = w->buf[depth];
    uint64_t pid = rd64(buf);
    uint16_t flags = rd16(buf + 8), count = rd16(buf + 10);
    uint32_t overflow = rd32(buf + 12);
    uint64_t n = 1 + (uint64_t)overflow;
    if (pid != pgid || pgid + n > w->hwm) {
        PyErr_Format(Corrupt, "page %llu: header says id %llu, overflow %lu", (unsigned long long)pgid,
                     (unsigned long long)pid, (unsigned long)overflow);
        return NULL;
    }
    if (memchr(w->seen + pgid, 1, (size_t)n) != NULL) {
        PyErr_Format(Corrupt, "page %llu reached twice", (unsigned long long)pgid);
        return NULL;
    }
    memset(w->seen + pgid, 1, (size_t)n);
    uint64_t span = n * w->ps;
    if (flags == BRANCH || flags == LEAF) { /* else leaves() refuses it from the header alone */
        uint64_t array = PAGE_HEADER + (uint64_t)count * ELEMENT;
        if (more(w, depth, &have, array < span ? array : span, at) < 0) return NULL;
        buf = w->buf[depth];
        if (flags == LEAF && array <= span) {
            uint64_t reach = 0;
            for (uint64_t e = PAGE_HEADER; e < array; e += ELEMENT) {
                uint64_t end = e + rd32(buf + e + 4) + rd32(buf + e + 8) + rd32(buf + e + 12);
                if (end > reach) reach = end;
            }
            /* past the span: leaves() refuses it */
            if (more(w, depth, &have, reach < span ? reach : span, at) < 0) return NULL;
        }
    }
    *len = (size_t)span;
    return w->buf[depth];
}

/* One bucket being filled. */
typedef struct {
    const Node *node;
    PyObject *out;    /* dict (text keys; _FULL: the nested buckets, bytes keys), or KEYS' frozenset */
    PyObject *values; /* _FULL: the plain values */
    uint8_t *last;    /* the previous key, for the order check */
    size_t last_len, last_cap;
} Bk;

static PyObject *bucket(Walk *w, const Node *node, uint64_t root, uint64_t seq, const uint8_t *inl,
                        size_t inl_len, int depth);

static PyObject *text(const uint8_t *p, size_t n) {
    return PyUnicode_DecodeUTF8((const char *)p, (Py_ssize_t)n, "surrogateescape");
}

/* Go's binary.Uvarint of p[0:n]: 1 and *x, or 0 when empty, cut short or overflowing. */
static int uvarint(const uint8_t *p, size_t n, uint64_t *x) {
    uint64_t v = 0;
    unsigned shift = 0;
    for (size_t i = 0; i < n && i < 10; i++) {
        uint8_t b = p[i];
        if (i == 9 && b > 1) return 0;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (b < 0x80) {
            *x = v;
            return 1;
        }
        shift += 7;
    }
    return 0;
}

static PyObject *decode(int kind, const uint8_t *p, size_t n) {
    uint64_t x;
    switch (kind) {
    case K_TEXT:
        return text(p, n);
    case K_BYTES:
        return PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)n);
    case K_UVARINT:
        if (uvarint(p, n, &x)) return PyLong_FromUnsignedLongLong(x);
        Py_RETURN_NONE;
    default: /* K_VARINT: zigzag */
        if (uvarint(p, n, &x)) {
            int64_t v = (int64_t)(x >> 1);
            if (x & 1) v = ~v;
            return PyLong_FromLongLong(v);
        }
        Py_RETURN_NONE;
    }
}

static int spend(Walk *w, size_t n) {
    w->copied -= (long long)n;
    if (w->copied < 0) {
        PyErr_SetString(Corrupt, "keys and values larger than the file");
        return -1;
    }
    return 0;
}

/* steals value; 0, or -1 with an exception set */
static int put(PyObject *dict, PyObject *key, PyObject *value) {
    if (key == NULL || value == NULL) {
        Py_XDECREF(key);
        Py_XDECREF(value);
        return -1;
    }
    int rc = PyDict_SetItem(dict, key, value);
    Py_DECREF(key);
    Py_DECREF(value);
    return rc;
}

static int element(Walk *w, Bk *b, uint32_t flags, const uint8_t *k, size_t ks, const uint8_t *v, size_t vs,
                   int depth) {
    if (spend(w, ks) < 0) return -1;
    size_t m = ks < b->last_len ? ks : b->last_len;
    int cmp = m ? memcmp(k, b->last, m) : 0;
    if (cmp < 0 || (cmp == 0 && ks <= b->last_len)) { /* bbolt keys are non-empty, unique, sorted */
        PyObject *kh = bytes_head(k, ks), *lh = bytes_head(b->last, b->last_len);
        if (kh != NULL && lh != NULL) PyErr_Format(Corrupt, "key %R out of order after %R", kh, lh);
        Py_XDECREF(kh);
        Py_XDECREF(lh);
        return -1;
    }
    if (ks > b->last_cap) {
        size_t cap = ks > 2 * b->last_cap ? ks : 2 * b->last_cap;
        uint8_t *more = realloc(b->last, cap);
        if (more == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        b->last = more;
        b->last_cap = cap;
    }
    memcpy(b->last, k, ks);
    b->last_len = ks;
    if (flags != 0 && flags != BUCKET_LEAF) {
        PyErr_Format(Corrupt, "leaf element flags 0x%x", (unsigned)flags);
        return -1;
    }
    int kind = b->node->kind;
    if (kind == K_KEYS) {
        PyObject *key = text(k, ks);
        if (key == NULL) return -1;
        int rc = PySet_Add(b->out, key);
        Py_DECREF(key);
        return rc;
    }
    const Node *sub;
    Py_ssize_t at = -1;
    if (kind == K_FULL) {
        sub = &FULL_NODE;
    } else if ((at = node_find(b->node, k, ks)) >= 0) {
        sub = b->node->kid[at];
    } else if ((sub = b->node->other) == NULL) {
        return 0;
    }
    PyObject *got;
    if (flags == BUCKET_LEAF) { /* bucket.go openBucket */
        if (!is_bucket_kind(sub->kind)) return 0;
        if (vs < INBUCKET) {
            PyObject *kh = bytes_head(k, ks);
            if (kh != NULL) PyErr_Format(Corrupt, "bucket %R: value of %zu bytes", kh, vs);
            Py_XDECREF(kh);
            return -1;
        }
        uint64_t sub_root = rd64(v), sub_seq = rd64(v + 8);
        if (sub->kind == K_BUCKET && sub->n == 0 && sub->other == NULL)
            got = PyDict_New(); /* its name is all the shape asks: its pages are not read */
        else /* root 0: an inline bucket, whose leaf page follows the header in the value */
            got = bucket(w, sub, sub_root, sub_seq, sub_root == 0 ? v + INBUCKET : NULL, vs - INBUCKET,
                         depth + 1);
        if (got == NULL) return -1;
        if (kind == K_FULL)
            return put(b->out, PyBytes_FromStringAndSize((const char *)k, (Py_ssize_t)ks), got);
    } else {
        if (kind != K_FULL && !is_value_kind(sub->kind)) return 0;
        if (spend(w, vs) < 0) return -1;
        if (kind == K_FULL)
            return put(b->values, PyBytes_FromStringAndSize((const char *)k, (Py_ssize_t)ks),
                       PyBytes_FromStringAndSize((const char *)v, (Py_ssize_t)vs));
        if ((got = decode(sub->kind, v, vs)) == NULL) return -1;
    }
    if (kind == K_ROW) { /* keys are unique: each slot is filled once */
        Py_ssize_t i = b->node->index[at];
        PyObject *old = PyTuple_GET_ITEM(b->out, i);
        PyTuple_SET_ITEM(b->out, i, got);
        Py_DECREF(old);
        return 0;
    }
    if (at >= 0) {
        Py_INCREF(b->node->slot[at]);
        return put(b->out, b->node->slot[at], got);
    }
    return put(b->out, text(k, ks), got);
}

/* The leaf elements under page pgid (or the inline page inl), in key order, into b. A branch's
 * children are read a whole page at once: they are a big bucket's nodes, which bbolt fills to
 * half a page at least (node.go split); a bucket's root page is often a small bucket's only
 * page. */
static int leaves(Walk *w, Bk *b, uint64_t pgid, int whole, const uint8_t *inl, size_t inl_len, int depth) {
    if (depth > MAX_DEPTH) {
        PyErr_Format(Corrupt, "deeper than %d", MAX_DEPTH);
        return -1;
    }
    const uint8_t *p;
    size_t len = 0;
    if (inl != NULL) {
        p = inl;
        len = inl_len;
    } else if ((p = fetch(w, pgid, whole, depth, &len)) == NULL) {
        return -1;
    }
    int rc = -1;
    if (len < PAGE_HEADER) {
        PyErr_Format(Corrupt, "page of %zu bytes", len);
        goto done;
    }
    uint16_t flags = rd16(p + 8), count = rd16(p + 10);
    if (inl != NULL ? flags != LEAF : (flags != BRANCH && flags != LEAF)) {
        PyErr_Format(Corrupt, "page %llu: flags 0x%x", (unsigned long long)pgid, (unsigned)flags);
        goto done;
    }
    w->elements -= count;
    if (w->elements < 0 || PAGE_HEADER + (size_t)count * ELEMENT > len) {
        PyErr_Format(Corrupt, "page %llu: %u elements do not fit", (unsigned long long)pgid, (unsigned)count);
        goto done;
    }
    for (unsigned i = 0; i < count; i++) {
        size_t e = PAGE_HEADER + (size_t)i * ELEMENT; /* positions count from the element */
        const uint8_t *el = p + e;
        if (flags == BRANCH) {
            uint64_t pos = rd32(el), ksize = rd32(el + 4), child = rd64(el + 8);
            if (e + pos + ksize > len) {
                PyErr_Format(Corrupt, "page %llu: branch key out of the page", (unsigned long long)pgid);
                goto done;
            }
            if (leaves(w, b, child, 1, NULL, 0, depth + 1) < 0) goto done;
        } else {
            uint64_t pos = rd32(el + 4), ksize = rd32(el + 8), vsize = rd32(el + 12);
            uint64_t k0 = e + pos;
            if (k0 + ksize + vsize > len) {
                PyErr_Format(Corrupt, "page %llu: leaf element out of the page", (unsigned long long)pgid);
                goto done;
            }
            if (element(w, b, rd32(el), p + k0, (size_t)ksize, p + k0 + ksize, (size_t)vsize, depth) < 0)
                goto done;
        }
    }
    rc = 0;
done:
    return rc;
}

static PyObject *bucket(Walk *w, const Node *node, uint64_t root, uint64_t seq, const uint8_t *inl,
                        size_t inl_len, int depth) {
    Bk b = {node, NULL, NULL, NULL, 0, 0};
    if (node->kind == K_ROW) {
        if ((b.out = PyTuple_New(node->n)) == NULL) return NULL;
        for (Py_ssize_t i = 0; i < node->n; i++) {
            Py_INCREF(Py_None);
            PyTuple_SET_ITEM(b.out, i, Py_None);
        }
    } else {
        b.out = node->kind == K_KEYS ? PyFrozenSet_New(NULL) : PyDict_New();
    }
    if (b.out == NULL) return NULL;
    if (node->kind == K_FULL && (b.values = PyDict_New()) == NULL) goto fail;
    if (leaves(w, &b, root, 0, inl, inl_len, depth) < 0) goto fail;
    free(b.last);
    if (node->kind == K_FULL) {
        PyObject *t = Py_BuildValue("(KKNN)", (unsigned long long)seq, (unsigned long long)root, b.values, b.out);
        return t;
    }
    return b.out;
fail:
    free(b.last);
    Py_XDECREF(b.values);
    Py_DECREF(b.out);
    return NULL;
}

static PyObject *py_walk(PyObject *self, PyObject *args) {
    (void)self;
    int fd;
    PyObject *pread, *shape;
    unsigned long long ps, hwm, root, seq;
    if (!PyArg_ParseTuple(args, "iOKKKKO", &fd, &pread, &ps, &hwm, &root, &seq, &shape)) return NULL;
    if (Corrupt == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_bolt.init() was not called");
        return NULL;
    }
    if (ps < 1024 || hwm < 2 || hwm > ((uint64_t)1 << 40) / ps) {
        PyErr_SetString(PyExc_ValueError, "page size or high water mark out of range");
        return NULL;
    }
    Node *node = node_new(shape, 0);
    if (node == NULL) return NULL;
    Walk w;
    memset(&w, 0, sizeof(w));
    w.fd = fd;
    w.pread = pread == Py_None ? NULL : pread;
    w.ps = ps;
    w.hwm = hwm;
    if ((w.seen = calloc((size_t)hwm, 1)) == NULL) {
        node_free(node);
        return PyErr_NoMemory();
    }
    w.elements = (long long)(hwm * ps / ELEMENT); /* each real element has 16 bytes of its own */
    w.copied = (long long)(hwm * ps);             /* and each real key and value its own bytes */
    PyObject *out = bucket(&w, node, root, seq, NULL, 0, 0);
    for (int d = 0; d <= MAX_DEPTH; d++) free(w.buf[d]);
    free(w.seen);
    node_free(node);
    return out;
}

/* --- records: instances of a frozen slots dataclass without its __init__ ------------------ */

/* A frozen dataclass's __init__ sets each field through object.__setattr__: ~0.2 us a field,
 * more than the rest of reading a record. A Maker fills the slots the way a slot's own
 * descriptor does (Python/structmember.c PyMember_SetOne, T_OBJECT_EX). bolt.maker() checks
 * that the class is one whose __init__ does nothing else. */
typedef struct {
    PyObject_HEAD
    PyTypeObject *cls;
    Py_ssize_t n;
    Py_ssize_t *offset;
    vectorcallfunc vectorcall;
} Maker;

static PyObject *maker_call(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    Maker *m = (Maker *)self;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != m->n || (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0)) {
        PyErr_Format(PyExc_TypeError, "%s: %zd positional arguments, not %zd", m->cls->tp_name, m->n, nargs);
        return NULL;
    }
    PyObject *obj = m->cls->tp_alloc(m->cls, 0);
    if (obj == NULL) return NULL;
    for (Py_ssize_t i = 0; i < nargs; i++) {
        Py_INCREF(args[i]);
        *(PyObject **)((char *)obj + m->offset[i]) = args[i];
    }
    return obj;
}

static void maker_dealloc(PyObject *self) {
    Maker *m = (Maker *)self;
    Py_XDECREF(m->cls);
    PyMem_Free(m->offset);
    PyObject_Free(self);
}

static PyTypeObject MakerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "exporter.sources._bolt.Maker",
    .tp_basicsize = sizeof(Maker),
    .tp_dealloc = maker_dealloc,
    .tp_vectorcall_offset = offsetof(Maker, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "Maker(cls, fields)(*values): a cls with its slots set to values, in fields' order",
};

static PyObject *py_maker(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *cls, *fields;
    if (!PyArg_ParseTuple(args, "O!O!", &PyType_Type, &cls, &PyTuple_Type, &fields)) return NULL;
    PyTypeObject *type = (PyTypeObject *)cls;
    Py_ssize_t n = PyTuple_GET_SIZE(fields);
    Maker *m = PyObject_New(Maker, &MakerType);
    if (m == NULL) return NULL;
    m->cls = NULL;
    m->n = n;
    m->vectorcall = maker_call;
    if ((m->offset = PyMem_Calloc(n + 1, sizeof(Py_ssize_t))) == NULL) {
        Py_DECREF(m);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *name = PyTuple_GET_ITEM(fields, i);
        PyObject *d = PyUnicode_Check(name) ? PyDict_GetItemWithError(type->tp_dict, name) : NULL;
        if (d == NULL || !Py_IS_TYPE(d, &PyMemberDescr_Type) ||
            ((PyMemberDescrObject *)d)->d_member->type != T_OBJECT_EX ||
            ((PyMemberDescrObject *)d)->d_member->flags & READONLY) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_TypeError, "%s.%S is not an object slot of its own", type->tp_name, name);
            Py_DECREF(m);
            return NULL;
        }
        m->offset[i] = ((PyMemberDescrObject *)d)->d_member->offset;
    }
    Py_INCREF(cls);
    m->cls = type;
    return (PyObject *)m;
}

static PyObject *py_init(PyObject *self, PyObject *corrupt) {
    (void)self;
    if (!PyExceptionClass_Check(corrupt)) {
        PyErr_SetString(PyExc_TypeError, "an exception class");
        return NULL;
    }
    Py_INCREF(corrupt);
    Py_XSETREF(Corrupt, corrupt);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"init", py_init, METH_O, "init(corrupt): the exception raised for a broken file"},
    {"maker", py_maker, METH_VARARGS, "maker(cls, fields) -> Maker: see bolt.maker"},
    {"walk", py_walk, METH_VARARGS,
     "walk(fd, pread, page_size, hwm, root, sequence, node) -> the root bucket as node says"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_bolt", "bbolt tree walk in C", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__bolt(void) {
    if (PyType_Ready(&MakerType) < 0) return NULL;
    return PyModule_Create(&module);
}
