/* The du engine's inner walk in C: exporter.sources.du.walk() with the same rules, minus the
 * interpreter's cost per inode (a DirEntry, an os.stat_result and a dozen int objects each).
 *
 * Optional: setup.py builds it where a C compiler and Python's headers exist; without it,
 * du.py walks in Python and gets the same figures (tests/unit/test_du.py runs both on every
 * fixture tree, and compares them on random ones). It holds no Python object while walking,
 * so the GIL is released for the whole walk.
 *
 * walk(path: bytes, exclude: tuple[bytes, ...], deadline: float, checks: int = -1) ->
 *     (disk_bytes, apparent_bytes, files, errors, partial)
 * walk_children(path: bytes, names: tuple[bytes, ...], exclude, deadline) -> bytes: walk() of
 *     each path/name, relative to one descriptor of `path`; 5 native int64s per name.
 * deadline < 0 means none; otherwise a time.monotonic() value (CLOCK_MONOTONIC on Linux).
 * checks >= 0, for the tests: the deadline counts as passed at that many checks (one every
 * CHECK_EVERY entries), so a walk can be stopped mid-way at a known point.
 * The algorithm is du.py's, step for step: see the comments there for the why.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define DIR_FLAGS (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
#define CHECK_EVERY 256
#ifdef O_PATH /* a parent to look children up in: search permission is all a path lookup needs */
#define PARENT_FLAGS (O_PATH | O_DIRECTORY | O_CLOEXEC)
#else
#define PARENT_FLAGS (O_RDONLY | O_DIRECTORY | O_NONBLOCK | O_CLOEXEC)
#endif
#define VANISHED(e) ((e) == ENOENT || (e) == ENOTDIR)

/* --- a set of inode numbers (open addressing; 0 is the empty slot, inode 0 kept aside) --- */

typedef struct {
    uint64_t *slots;
    size_t cap, len; /* cap: a power of two */
    int has_zero;
} InoSet;

static size_t ino_hash(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)x;
}

/* 1 if added, 0 if present, -1 out of memory */
static int inoset_add(InoSet *s, uint64_t ino) {
    if (ino == 0) {
        if (s->has_zero) return 0;
        s->has_zero = 1;
        return 1;
    }
    if ((s->len + 1) * 4 > s->cap * 3) { /* keep the load under 3/4 */
        size_t ncap = s->cap ? s->cap * 2 : 1024;
        uint64_t *ns = calloc(ncap, sizeof(uint64_t));
        if (ns == NULL) return -1;
        for (size_t i = 0; i < s->cap; i++) {
            uint64_t v = s->slots[i];
            if (v == 0) continue;
            size_t j = ino_hash(v) & (ncap - 1);
            while (ns[j] != 0) j = (j + 1) & (ncap - 1);
            ns[j] = v;
        }
        free(s->slots);
        s->slots = ns;
        s->cap = ncap;
    }
    size_t j = ino_hash(ino) & (s->cap - 1);
    while (s->slots[j] != 0) {
        if (s->slots[j] == ino) return 0;
        j = (j + 1) & (s->cap - 1);
    }
    s->slots[j] = ino;
    s->len++;
    return 1;
}

/* --- a directory's entries ---
 * On Linux straight from getdents64 on the dir's own descriptor: its children's openat does not
 * care where its offset is, so there is no duplicate to make (fcntl), no fdopendir (two more
 * fcntl and an fstat) and no duplicate to close: 5 of the 9 system calls of a small dir (strace
 * of the snapshot dirs' walk). Elsewhere readdir of a duplicate, closed with it. */

#define DIRENT_BUF 32768 /* glibc's readdir reads 32 KiB at a time too */

#if defined(__linux__) && defined(SYS_getdents64) && !defined(DSE_READDIR) /* -DDSE_READDIR: the other path */
struct raw_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

typedef struct {
    int fd;
    char *buf; /* DIRENT_BUF bytes, the walk's */
    long len, off;
} Reader;

static int reader_open(Reader *r, int fd, char *buf) {
    r->fd = fd, r->buf = buf, r->len = 0, r->off = 0;
    return 0;
}

/* the next name; NULL at the end (*err 0) or on an error (*err its errno). Entries with inode
 * 0 are skipped, as glibc's readdir (and so os.scandir) skips them. */
static const char *reader_next(Reader *r, int *err) {
    *err = 0;
    for (;;) {
        if (r->off >= r->len) {
            long n;
            do n = syscall(SYS_getdents64, r->fd, r->buf, DIRENT_BUF);
            while (n < 0 && errno == EINTR);
            if (n <= 0) {
                if (n < 0) *err = errno;
                return NULL;
            }
            r->len = n, r->off = 0;
        }
        struct raw_dirent64 *e = (struct raw_dirent64 *)(r->buf + r->off);
        r->off += e->d_reclen;
        if (e->d_ino != 0) return e->d_name;
    }
}

static void reader_close(Reader *r) { (void)r; }
#else
typedef struct {
    DIR *dp;
} Reader;

static int reader_open(Reader *r, int fd, char *buf) {
    (void)buf;
    /* made close-on-exec at once (as os.scandir does): a thread may fork and exec meanwhile */
    int rfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    r->dp = rfd >= 0 ? fdopendir(rfd) : NULL;
    if (r->dp != NULL) return 0;
    int e = errno;
    if (rfd >= 0) close(rfd);
    errno = e;
    return -1;
}

static const char *reader_next(Reader *r, int *err) {
    errno = 0;
    struct dirent *ent = readdir(r->dp);
    *err = ent == NULL ? errno : 0;
    return ent == NULL ? NULL : ent->d_name;
}

static void reader_close(Reader *r) { closedir(r->dp); }
#endif

/* --- the walk --- */

typedef struct Dir {
    int fd;
    long pending; /* subdirectories on the stack that will be opened from fd */
    char *rel;    /* path relative to the root ("" for the root); only kept with excludes */
} Dir;

typedef struct {
    Dir *parent;
    char *name;
} Item;

typedef struct {
    Item *items;
    size_t len, cap;
} Stack;

typedef struct {
    int dirfd; /* `path` is relative to it (AT_FDCWD: as given) */
    char *buf; /* DIRENT_BUF bytes to read entries into; NULL: run_walk allocates its own */
    const char *path;
    char **excl;
    Py_ssize_t n_excl;
    double deadline;
    long checks;
    /* out */
    unsigned long long disk, apparent, files, errors;
    int partial, nomem;
} Walk;

static double monotonic(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int past_deadline(Walk *w) {
    if (w->checks >= 0 && w->checks-- == 0) return 1;
    return w->deadline >= 0 && monotonic() >= w->deadline;
}

static int excluded(const Walk *w, const char *rel) {
    for (Py_ssize_t i = 0; i < w->n_excl; i++)
        if (strcmp(w->excl[i], rel) == 0) return 1;
    return 0;
}

/* "rel/name", or "name" at the root; NULL when out of memory */
static char *join(const char *rel, const char *name) {
    size_t a = strlen(rel), b = strlen(name);
    char *out = malloc(a + b + 2);
    if (out == NULL) return NULL;
    if (a) {
        memcpy(out, rel, a);
        out[a] = '/';
        memcpy(out + a + 1, name, b + 1);
    } else {
        memcpy(out, name, b + 1);
    }
    return out;
}

static void dir_release(Dir *d) {
    /* one stack item (or the reader) done with d: the last one closes it */
    if (--d->pending <= 0) {
        close(d->fd);
        free(d->rel);
        free(d);
    }
}

static Dir *dir_new(int fd, char *rel) {
    Dir *d = malloc(sizeof(Dir));
    if (d == NULL) return NULL;
    d->fd = fd;
    d->pending = 0;
    d->rel = rel;
    return d;
}

static void run_walk(Walk *w) {
    struct stat st;
    InoSet seen = {0};
    Stack stack = {0};
    Dir *cur = NULL;
    int countdown = CHECK_EVERY;
    unsigned long long blocks = 0;
    int use_rel = w->n_excl > 0;
    char *own_buf = NULL;

    if (fstatat(w->dirfd, w->path, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        /* a missing root is the caller's business */
        if (!VANISHED(errno)) w->errors = 1;
        return;
    }
    dev_t root_dev = st.st_dev;
    w->disk = (unsigned long long)st.st_blocks * 512ULL;
    w->files = 1;
    if (!S_ISDIR(st.st_mode)) {
        w->apparent = (unsigned long long)st.st_size;
        return;
    }
    if (past_deadline(w)) {
        w->partial = 1;
        return;
    }
    if (w->buf == NULL && (w->buf = own_buf = malloc(DIRENT_BUF)) == NULL) {
        w->nomem = 1;
        return;
    }
    int root_fd;
    do root_fd = openat(w->dirfd, w->path, DIR_FLAGS); /* os.open retries on EINTR (PEP 475): so do we */
    while (root_fd < 0 && errno == EINTR);
    if (root_fd < 0) {
        w->errors += !VANISHED(errno);
        free(own_buf);
        return;
    }
    if (inoset_add(&seen, (uint64_t)st.st_ino) < 0) goto nomem_root;
    char *root_rel = NULL;
    if (use_rel && (root_rel = strdup("")) == NULL) goto nomem_root;
    if ((cur = dir_new(root_fd, root_rel)) == NULL) {
        free(root_rel);
        goto nomem_root;
    }

    for (;;) {
        if (cur == NULL) {
            if (stack.len == 0) break;
            Item it = stack.items[--stack.len];
            int fd;
            do fd = openat(it.parent->fd, it.name, DIR_FLAGS);
            while (fd < 0 && errno == EINTR);
            if (fd < 0) w->errors += !VANISHED(errno);
            char *rel = NULL;
            if (fd >= 0 && use_rel && (rel = join(it.parent->rel, it.name)) == NULL) w->nomem = 1;
            dir_release(it.parent);
            free(it.name);
            if (w->nomem) {
                if (fd >= 0) close(fd);
                break;
            }
            if (fd < 0) continue;
            if ((cur = dir_new(fd, rel)) == NULL) {
                close(fd);
                free(rel);
                w->nomem = 1;
                break;
            }
        }
        Dir *d = cur;
        Reader rd;
        if (reader_open(&rd, d->fd, w->buf) != 0) {
            w->errors += !VANISHED(errno);
        } else {
            for (;;) {
                int err;
                const char *name = reader_next(&rd, &err);
                if (name == NULL) {
                    if (err != 0) w->errors += !VANISHED(err); /* a read failing midway */
                    break;
                }
                if (name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0))) continue;
                if (--countdown == 0) {
                    countdown = CHECK_EVERY;
                    if (past_deadline(w)) {
                        w->partial = 1;
                        break;
                    }
                }
                if (use_rel) {
                    char *rel = join(d->rel, name);
                    if (rel == NULL) {
                        w->nomem = 1;
                        break;
                    }
                    int skip = excluded(w, rel);
                    free(rel);
                    if (skip) continue;
                }
                if (fstatat(d->fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
                    w->errors += !VANISHED(errno);
                    continue;
                }
                if (st.st_dev != root_dev) continue; /* a mount point: not ours */
                if (S_ISDIR(st.st_mode)) {
                    int added = inoset_add(&seen, (uint64_t)st.st_ino);
                    if (added < 0) {
                        w->nomem = 1;
                        break;
                    }
                    if (!added) continue;
                    if (stack.len == stack.cap) {
                        size_t ncap = stack.cap ? stack.cap * 2 : 256;
                        Item *ni = realloc(stack.items, ncap * sizeof(Item));
                        if (ni == NULL) {
                            w->nomem = 1;
                            break;
                        }
                        stack.items = ni;
                        stack.cap = ncap;
                    }
                    char *copy = strdup(name);
                    if (copy == NULL) {
                        w->nomem = 1;
                        break;
                    }
                    d->pending++;
                    stack.items[stack.len].parent = d;
                    stack.items[stack.len].name = copy;
                    stack.len++;
                } else {
                    if (st.st_nlink > 1) {
                        int added = inoset_add(&seen, (uint64_t)st.st_ino);
                        if (added < 0) {
                            w->nomem = 1;
                            break;
                        }
                        if (!added) continue;
                    }
                    w->apparent += (unsigned long long)st.st_size;
                }
                blocks += (unsigned long long)st.st_blocks;
                w->files++;
            }
            reader_close(&rd);
        }
        /* the reader is done with d: pending + 1 -> pending (closes d if nothing is pending) */
        d->pending++;
        dir_release(d);
        cur = NULL;
        if (w->partial || w->nomem) break;
    }
    /* whatever stopped us, release every directory still held by the stack */
    for (size_t i = 0; i < stack.len; i++) {
        free(stack.items[i].name);
        dir_release(stack.items[i].parent);
    }
    free(stack.items);
    free(seen.slots);
    free(own_buf);
    w->disk += blocks * 512ULL;
    return;

nomem_root:
    close(root_fd);
    free(seen.slots);
    free(own_buf);
    w->nomem = 1;
}

/* The exclude tuple as C strings (borrowed from the tuple, which outlives the call); NULL with
 * an exception set on a bad item, or with *n == 0 for none. */
static char **excludes_of(PyObject *excl_obj, Py_ssize_t *n, int *failed) {
    *n = PyTuple_GET_SIZE(excl_obj);
    *failed = 0;
    if (*n == 0) return NULL;
    char **excl = PyMem_Calloc((size_t)*n, sizeof(char *));
    if (excl == NULL) {
        PyErr_NoMemory();
        *failed = 1;
        return NULL;
    }
    for (Py_ssize_t i = 0; i < *n; i++) {
        PyObject *item = PyTuple_GET_ITEM(excl_obj, i);
        /* a NUL would cut the strcmp short and match a shorter name */
        if (!PyBytes_Check(item) || strlen(PyBytes_AS_STRING(item)) != (size_t)PyBytes_GET_SIZE(item)) {
            PyMem_Free(excl);
            PyErr_SetString(PyExc_ValueError, "exclude must be a tuple of bytes without NUL");
            *failed = 1;
            return NULL;
        }
        excl[i] = PyBytes_AS_STRING(item);
    }
    return excl;
}

static PyObject *py_walk(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *path_obj, *excl_obj;
    double deadline;
    long checks = -1;
    if (!PyArg_ParseTuple(args, "O&O!d|l", PyUnicode_FSConverter, &path_obj, &PyTuple_Type, &excl_obj,
                          &deadline, &checks))
        return NULL;
    Walk w;
    memset(&w, 0, sizeof w);
    w.dirfd = AT_FDCWD;
    w.path = PyBytes_AS_STRING(path_obj);
    w.deadline = deadline;
    w.checks = checks;
    int failed;
    w.excl = excludes_of(excl_obj, &w.n_excl, &failed);
    if (failed) {
        Py_DECREF(path_obj);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    run_walk(&w);
    Py_END_ALLOW_THREADS
    PyMem_Free(w.excl);
    Py_DECREF(path_obj);
    if (w.nomem) return PyErr_NoMemory();
    return Py_BuildValue("(KKKKO)", w.disk, w.apparent, w.files, w.errors, w.partial ? Py_True : Py_False);
}

/* NULL when every item of the tuple is bytes without a NUL (a path C can take as it is),
 * else what is wrong, for a ValueError. */
static const char *bad_paths(PyObject *paths) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(paths); i++) {
        PyObject *item = PyTuple_GET_ITEM(paths, i);
        if (!PyBytes_Check(item) || strlen(PyBytes_AS_STRING(item)) != (size_t)PyBytes_GET_SIZE(item))
            return "paths must be a tuple of bytes without NUL";
    }
    return NULL;
}

/* The dir the paths of one call are looked up from (PARENT_FLAGS), or -1 with errno. Called
 * with the GIL released. */
static int open_parent(const char *path) {
    int dfd;
    do dfd = open(path, PARENT_FLAGS);
    while (dfd < 0 && errno == EINTR);
    return dfd;
}

/* walk_children(path, names, exclude, deadline) -> bytes: each name under `path` walked as
 * walk(path/name) would, relative to one descriptor of `path` (no path looked up again per
 * child, no Python object per child); five native int64s per name (disk, apparent, files,
 * errors, partial), in order. `path` is opened as a path lookup would resolve it; if it
 * cannot be, each child is what walk() says of a child of a missing or unreadable dir. */
static PyObject *py_walk_children(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *path_obj, *names, *excl_obj;
    double deadline;
    if (!PyArg_ParseTuple(args, "O&O!O!d", PyUnicode_FSConverter, &path_obj, &PyTuple_Type, &names,
                          &PyTuple_Type, &excl_obj, &deadline))
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    const char **cnames = PyMem_Calloc((size_t)(n ? n : 1), sizeof(char *));
    if (cnames == NULL) {
        Py_DECREF(path_obj);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(names, i);
        if (!PyBytes_Check(item) || strlen(PyBytes_AS_STRING(item)) != (size_t)PyBytes_GET_SIZE(item)) {
            PyMem_Free(cnames);
            Py_DECREF(path_obj);
            PyErr_SetString(PyExc_ValueError, "names must be a tuple of bytes without NUL");
            return NULL;
        }
        cnames[i] = PyBytes_AS_STRING(item);
    }
    Py_ssize_t n_excl;
    int failed;
    char **excl = excludes_of(excl_obj, &n_excl, &failed);
    PyObject *out = failed ? NULL : PyBytes_FromStringAndSize(NULL, n * 5 * (Py_ssize_t)sizeof(int64_t));
    if (out == NULL) {
        PyMem_Free(excl);
        PyMem_Free(cnames);
        Py_DECREF(path_obj);
        return NULL;
    }
    int64_t *vals = (int64_t *)PyBytes_AS_STRING(out);
    int nomem = 0;
    char *buf = PyMem_RawMalloc(DIRENT_BUF); /* one for every child's walk */
    if (buf == NULL) {
        Py_DECREF(out);
        PyMem_Free(excl);
        PyMem_Free(cnames);
        Py_DECREF(path_obj);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
    int dfd = open_parent(PyBytes_AS_STRING(path_obj));
    int open_errno = dfd < 0 ? errno : 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Walk w;
        memset(&w, 0, sizeof w);
        if (dfd >= 0) {
            w.dirfd = dfd;
            w.buf = buf;
            w.path = cnames[i];
            w.deadline = deadline;
            w.checks = -1;
            w.excl = excl;
            w.n_excl = n_excl;
            run_walk(&w);
            nomem |= w.nomem;
        } else if (!VANISHED(open_errno)) {
            w.errors = 1; /* as an lstat of the child through an unreadable dir: EACCES */
        }
        int64_t *v = vals + 5 * i;
        v[0] = (int64_t)w.disk, v[1] = (int64_t)w.apparent, v[2] = (int64_t)w.files;
        v[3] = (int64_t)w.errors, v[4] = w.partial;
    }
    if (dfd >= 0) close(dfd);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(buf);
    PyMem_Free(excl);
    PyMem_Free(cnames);
    Py_DECREF(path_obj);
    if (nomem) {
        Py_DECREF(out);
        return PyErr_NoMemory();
    }
    return out;
}

/* restat_trees(paths, base, entries, trees) -> bytes: livewalk's _restat of many trees in one
 * call: the trees' listed paths (relative to `base`) one after the
 * other; `entries`, 3 native int64s a path (what it was when listed: kind 0 dir, 1 other,
 * 2 another filesystem's; a dir's inode and ctime in ns, else 0); `trees`, 2 a tree (its count
 * of paths, its root's device). Out, 4 a tree: held (1, or 0 when a path says the listing no
 * longer holds: the rest of that tree is not looked at), disk blocks of 512, apparent bytes,
 * inodes, counted as du.walk counts them (a hard-linked inode once a tree). Trees with more
 * hard-linked inodes than SEEN_AT_MOST come back not held: listed again, which counts them.
 * `base` is opened once (PARENT_FLAGS) and each path looked up from there, not from / again
 * (half an lstat's cost is the lookup of a long path's components): a rescan of small live
 * dirs by their settled listings costs one system call an inode, and no Python object. */
#define SEEN_AT_MOST 1024
static PyObject *py_restat_trees(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *paths, *base_obj, *ent_obj, *tr_obj;
    /* bytes only (immutable, aligned): read again below with the GIL released */
    if (!PyArg_ParseTuple(args, "O!O&O!O!", &PyTuple_Type, &paths, PyUnicode_FSConverter, &base_obj, &PyBytes_Type,
                          &ent_obj, &PyBytes_Type, &tr_obj))
        return NULL;
    struct {
        const char *buf;
        Py_ssize_t len;
    } ent = {PyBytes_AS_STRING(ent_obj), PyBytes_GET_SIZE(ent_obj)},
      tr = {PyBytes_AS_STRING(tr_obj), PyBytes_GET_SIZE(tr_obj)};
    Py_ssize_t n = PyTuple_GET_SIZE(paths), ntrees = tr.len / (Py_ssize_t)(2 * sizeof(int64_t));
    const char *bad = NULL;
    if (ent.len != n * (Py_ssize_t)(3 * sizeof(int64_t)) || tr.len % (Py_ssize_t)(2 * sizeof(int64_t)))
        bad = "entries must hold 3 int64 a path and trees 2 a tree";
    Py_ssize_t sum = 0;
    for (Py_ssize_t t = 0; !bad && t < ntrees; t++) {
        int64_t c;
        memcpy(&c, tr.buf + t * 2 * sizeof(int64_t), sizeof c);
        if (c < 1 || c > n - sum) bad = "tree counts must be positive and sum to the paths";
        else sum += c;
    }
    if (!bad && sum != n) bad = "tree counts must be positive and sum to the paths";
    if (!bad) bad = bad_paths(paths);
    PyObject *out = NULL;
    uint64_t *seen = NULL;
    if (bad) PyErr_SetString(PyExc_ValueError, bad);
    else if ((seen = PyMem_Malloc(SEEN_AT_MOST * sizeof(uint64_t))) == NULL) PyErr_NoMemory();
    else out = PyBytes_FromStringAndSize(NULL, ntrees * 4 * (Py_ssize_t)sizeof(int64_t));
    if (out == NULL) {
        PyMem_Free(seen);
        Py_DECREF(base_obj);
        return NULL;
    }
    int64_t *res = (int64_t *)PyBytes_AS_STRING(out);
    const int64_t *e = (const int64_t *)ent.buf, *tv = (const int64_t *)tr.buf;
    Py_BEGIN_ALLOW_THREADS
    int dfd = open_parent(PyBytes_AS_STRING(base_obj));
    Py_ssize_t at = 0;
    for (Py_ssize_t t = 0; t < ntrees; t++) {
        int64_t count = tv[2 * t], dev = tv[2 * t + 1], blocks = 0, apparent = 0, files = 0;
        int held = dfd >= 0, nseen = 0;
        for (Py_ssize_t i = at; held && i < at + count; i++) {
            struct stat st;
            int rc;
            do rc = fstatat(dfd, PyBytes_AS_STRING(PyTuple_GET_ITEM(paths, i)), &st, AT_SYMLINK_NOFOLLOW);
            while (rc < 0 && errno == EINTR);
            int64_t kind = e[3 * i], s_dev = (int64_t)st.st_dev;
            if (rc < 0) held = 0; /* gone, or unreadable now: listed again */
            else if (kind == 2) {
                if (s_dev == dev) held = 0; /* unmounted: what is there now is ours */
                continue;
            } else if (s_dev != dev) held = 0; /* a mount come over it */
            else if (kind == 0) {
                int64_t ctime = (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
                if (!S_ISDIR(st.st_mode) || (uint64_t)e[3 * i + 1] != (uint64_t)st.st_ino || e[3 * i + 2] != ctime)
                    held = 0; /* its names may have changed */
            } else if (S_ISDIR(st.st_mode)) held = 0;
            else {
                if (st.st_nlink > 1) {
                    int dup = 0;
                    for (int k = 0; k < nseen && !dup; k++) dup = seen[k] == (uint64_t)st.st_ino;
                    if (dup) continue;
                    if (nseen == SEEN_AT_MOST) {
                        held = 0;
                        continue;
                    }
                    seen[nseen++] = (uint64_t)st.st_ino;
                }
                apparent += (int64_t)st.st_size;
            }
            if (!held) continue;
            blocks += (int64_t)st.st_blocks;
            files++;
        }
        res[4 * t] = held, res[4 * t + 1] = held ? blocks : 0;
        res[4 * t + 2] = held ? apparent : 0, res[4 * t + 3] = held ? files : 0;
        at += count;
    }
    if (dfd >= 0) close(dfd);
    Py_END_ALLOW_THREADS
    PyMem_Free(seen);
    Py_DECREF(base_obj);
    return out;
}

/* stat_inodes(paths, base) -> bytes: one lstat a path (relative to `base`, opened once as
 * restat_trees opens it, or absolute), 4 native int64s each: errno (0 when stat'ed), 1 for a
 * dir (else 0), disk blocks of 512, size. What du.one_inode needs of each of the single inodes
 * a scan stats, in one call; the same bytes while none of them changed. */
static PyObject *py_stat_inodes(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *paths, *base_obj;
    if (!PyArg_ParseTuple(args, "O!O&", &PyTuple_Type, &paths, PyUnicode_FSConverter, &base_obj)) return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(paths);
    const char *bad = bad_paths(paths);
    if (bad) {
        Py_DECREF(base_obj);
        PyErr_SetString(PyExc_ValueError, bad);
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, n * 4 * (Py_ssize_t)sizeof(int64_t));
    if (out == NULL) {
        Py_DECREF(base_obj);
        return NULL;
    }
    int64_t *res = (int64_t *)PyBytes_AS_STRING(out);
    Py_BEGIN_ALLOW_THREADS
    int dfd = open_parent(PyBytes_AS_STRING(base_obj));
    int open_errno = dfd < 0 ? errno : 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *p = PyBytes_AS_STRING(PyTuple_GET_ITEM(paths, i));
        struct stat st;
        int rc = -1, err = open_errno;
        if (dfd >= 0 || p[0] == '/') {
            do rc = fstatat(dfd >= 0 ? dfd : AT_FDCWD, p, &st, AT_SYMLINK_NOFOLLOW);
            while (rc < 0 && errno == EINTR);
            err = rc < 0 ? errno : 0;
        }
        res[4 * i] = rc < 0 ? (err ? err : EIO) : 0;
        res[4 * i + 1] = rc < 0 ? 0 : S_ISDIR(st.st_mode) != 0;
        res[4 * i + 2] = rc < 0 ? 0 : (int64_t)st.st_blocks;
        res[4 * i + 3] = rc < 0 ? 0 : (int64_t)st.st_size;
    }
    if (dfd >= 0) close(dfd);
    Py_END_ALLOW_THREADS
    Py_DECREF(base_obj);
    return out;
}

/* stat_stamps(paths) -> bytes: one stat a path, through links as os.stat goes (absolute, or
 * from the working dir), 4 native int64s each: errno (0 when stat'ed), 1 for a dir (else 0),
 * inode, mtime in ns. The dir stamps a read went by (exporter.sources.witness), in one call. */
static PyObject *py_stat_stamps(PyObject *Py_UNUSED(self), PyObject *args) {
    PyObject *paths;
    if (!PyArg_ParseTuple(args, "O!", &PyTuple_Type, &paths)) return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(paths);
    const char *bad = bad_paths(paths);
    if (bad) {
        PyErr_SetString(PyExc_ValueError, bad);
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, n * 4 * (Py_ssize_t)sizeof(int64_t));
    if (out == NULL) return NULL;
    int64_t *res = (int64_t *)PyBytes_AS_STRING(out);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        struct stat st;
        int rc;
        do rc = stat(PyBytes_AS_STRING(PyTuple_GET_ITEM(paths, i)), &st);
        while (rc < 0 && errno == EINTR);
        int err = rc < 0 ? (errno ? errno : EIO) : 0;
        res[4 * i] = err;
        res[4 * i + 1] = err ? 0 : S_ISDIR(st.st_mode) != 0;
        res[4 * i + 2] = err ? 0 : (int64_t)st.st_ino;
        res[4 * i + 3] = err ? 0 : (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    }
    Py_END_ALLOW_THREADS
    return out;
}

static PyMethodDef methods[] = {
    {"walk", py_walk, METH_VARARGS,
     "walk(path, exclude, deadline, checks=-1) -> (disk_bytes, apparent_bytes, files, errors, partial)"},
    {"walk_children", py_walk_children, METH_VARARGS,
     "walk_children(path, names, exclude, deadline) -> bytes: 5 native int64 per name"},
    {"restat_trees", py_restat_trees, METH_VARARGS,
     "restat_trees(paths, base, entries, trees) -> bytes: 4 native int64 per tree (held, blocks, apparent, "
     "files)"},
    {"stat_inodes", py_stat_inodes, METH_VARARGS,
     "stat_inodes(paths, base) -> bytes: 4 native int64 per path (errno, is a dir, blocks, size)"},
    {"stat_stamps", py_stat_stamps, METH_VARARGS,
     "stat_stamps(paths) -> bytes: 4 native int64 per path (errno, is a dir, inode, mtime in ns)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "_walk",
    .m_doc = "The du engine's walk in C (see du.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__walk(void) { return PyModule_Create(&module); }
