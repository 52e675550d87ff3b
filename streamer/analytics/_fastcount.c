/*
 * streamer.analytics._fastcount: the analytics' per-record step in C (an optional speed-up).
 *
 * Every record the worker consumes is tallied for the windowed statistics. In Python that step
 * (look up the provider, tenant, category and event second in the analyzer's caches, build the
 * window key, count it) costs more than the rest of the worker's analytics together, and the
 * issue's budget is 10% of the worker. FastCounter.observe() does the common case here,
 * reading the very dicts the Python code fills; whenever anything is unusual (a cache miss, an
 * odd field) it changes nothing and hands the record to the Python path (Analyzer.observe),
 * which fills the caches for the next record. So the Python code stays the reference: tests
 * check that both paths count every record alike, and the package works unchanged where this
 * is not built.
 *
 * observe(record, rtype, label, rule, line) -> (category, provider, suppression writes)
 *   Analyzer.observe's contract. The tally key is (window_start, provider, egress_pool,
 *   egress_source, tenant, rtype, label, category), exactly as BatchAggregator.add builds it.
 *   One it cannot count goes to ``fallback`` (Analyzer.observe) untouched.
 *
 * The suppression events (SuppressionEvents.update) of a counted record: a Delivery to one
 * plain address (ASCII, nothing to strip) with an RFC 3339 UTC time gets its event here (the
 * common case: most records are deliveries); every other one (a hard bounce, an unusual
 * address or time) is made by ``suppress`` (the Python path).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#define CATEGORY_MEMO 16

/* A tuple does not keep its hash: the tally computes it once for its lookup and its store
 * where CPython exports the known-hash calls (3.11, 3.12). */
#if PY_VERSION_HEX < 0x030D0000
#define GET_KNOWN_HASH(d, k, h) _PyDict_GetItem_KnownHash(d, k, h)
#define SET_KNOWN_HASH(d, k, v, h) _PyDict_SetItem_KnownHash(d, k, v, h)
#else
#define GET_KNOWN_HASH(d, k, h) ((void)(h), PyDict_GetItemWithError(d, k))
#define SET_KNOWN_HASH(d, k, v, h) ((void)(h), PyDict_SetItem(d, k, v))
#endif

typedef struct {
    PyObject_HEAD
    long long window_ms;
    PyObject *slots;           /* dict: key tuple -> index into ``counts`` (this counter's) */
    long long *counts;         /* the records per key since the last drain_into() */
    Py_ssize_t used, allocated;
    PyObject *start;           /* the last window start (an int), reused while it holds */
    PyObject *gaps;            /* list of (key, line) (BatchAggregator._gaps) */
    PyObject *complaints;      /* list of (key, feedback type) (BatchAggregator._complaints) */
    PyObject *complaint_types; /* dict: canonical Feedback-Type -> its complaint type */
    PyObject *seconds;         /* dict: "YYYY-MM-DDTHH:MM:SS" -> epoch ms */
    PyObject *tenants;         /* dict: queue name -> tenant */
    PyObject *site_provider;   /* dict: site -> provider */
    PyObject *domain_provider; /* dict: recipient domain -> provider */
    PyObject *peer_provider;   /* dict: peer (MX) name -> provider */
    PyObject *category_of;     /* dict: (label, reply class) -> category */
    PyObject *owner;           /* has the ``watermark`` attribute (largest event time, ms) */
    PyObject *other;           /* "other": the provider of an unknown site */
    PyObject *hard;            /* "hard": a category whose records write suppressions */
    PyObject *uncategorized;   /* "Uncategorized": a label whose lines are rule gaps */
    PyObject *fallback;        /* Analyzer.observe: the Python path, for what is not common */
    PyObject *suppress;        /* (record, label, category, rule, line, provider) -> events */
    long long watermark_set;   /* the largest event time this counter gave ``owner`` */
    int has_watermark_set;
    PyObject *last_second;     /* the last second found in ``seconds`` (its hash is known) */
    /* (label, reply class) -> category, remembered by the label object (labels are the rule
     * set's own strings, so the same few objects come back); strong references */
    struct {
        PyObject *label;
        long long klass;
        PyObject *category;
    } categories[CATEGORY_MEMO];
} FastCounter;

/* Interned field names, created once at import. */
static PyObject *s_feedback_report, *s_feedback_type, *s_supplemental_trace,
    *s_original_rcpto_to, *s_event_time, *s_site, *s_peer_address, *s_name, *s_recipient, *s_meta,
    *s_tenant, *s_queue, *s_response, *s_code, *s_egress_pool, *s_egress_source, *s_watermark,
    *s_empty, *s_no_writes, *s_reception_protocol;

static int
is_ascii_str(PyObject *s, const char *text)
{
    return PyUnicode_CompareWithASCIIString(s, text) == 0;
}

/* record.get(name), borrowed; NULL with no exception when absent. */
static PyObject *
field(PyObject *dict, PyObject *name)
{
    return PyDict_GetItemWithError(dict, name);
}

/* Python's floor division and modulo for a positive divisor. */
static long long
floor_mod(long long a, long long b)
{
    long long r = a % b;
    return r < 0 ? r + b : r;
}

static long long
floor_div(long long a, long long b)
{
    long long q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

/* Whether ``et`` starts with the 19 characters of the last event second found in the seconds
 * cache (a record stream mostly stays within one second for many records). */
static int
same_second(FastCounter *self, PyObject *et)
{
    PyObject *last = self->last_second;
    if (last == NULL || !PyUnicode_IS_ASCII(et) || PyUnicode_GET_LENGTH(et) < 19)
        return 0;
    return memcmp(PyUnicode_1BYTE_DATA(et), PyUnicode_1BYTE_DATA(last), 19) == 0;
}

/* The event second's epoch ms from the seconds cache; 0 with *found = 0 on a miss. */
static int
event_second(FastCounter *self, PyObject *record, long long *ms, int *found)
{
    *found = 0;
    PyObject *et = field(record, s_event_time);
    if (et == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (!PyUnicode_CheckExact(et))
        return 0;
    Py_ssize_t n = PyUnicode_GET_LENGTH(et);
    if (n == 0 || PyUnicode_READ_CHAR(et, n - 1) != 'Z')
        return 0;
    if (same_second(self, et)) {
        /* the dict still holding that second (it may have been emptied since) is a lookup of
         * a string whose hash is known: no slice, no hashing */
        PyObject *cached = PyDict_GetItemWithError(self->seconds, self->last_second);
        if (cached != NULL && PyLong_CheckExact(cached)) {
            *ms = PyLong_AsLongLong(cached);
            if (*ms == -1 && PyErr_Occurred()) {
                PyErr_Clear();
                return 0;
            }
            *found = 1;
            return 0;
        }
        if (PyErr_Occurred())
            return -1;
    }
    PyObject *second = PyUnicode_Substring(et, 0, n < 19 ? n : 19);
    if (second == NULL)
        return -1;
    PyObject *cached = PyDict_GetItemWithError(self->seconds, second);
    if (cached == NULL || !PyLong_CheckExact(cached)) {
        Py_DECREF(second);
        return PyErr_Occurred() ? -1 : 0;
    }
    int overflow = 0;
    *ms = PyLong_AsLongLongAndOverflow(cached, &overflow);
    if (overflow || (*ms == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        Py_DECREF(second);
        return 0;
    }
    *found = 1;
    if (PyUnicode_GET_LENGTH(second) == 19 && PyUnicode_IS_ASCII(second)) {
        /* a key's value never changes (it is computed from the key) */
        Py_XSETREF(self->last_second, second);
    }
    else {
        Py_DECREF(second);
    }
    return 0;
}

/* The provider ``cache`` (site, peer name) gives ``key``, a non-empty string: 1 with it in
 * *provider (borrowed); 0 when there is no such key or the cache says "other" (the next clue
 * decides); -1 with *provider NULL on a cache miss (the Python path) or an error (set). */
static int
cached_provider(FastCounter *self, PyObject *cache, PyObject *key, PyObject **provider)
{
    *provider = NULL;
    if (key == NULL)
        return PyErr_Occurred() ? -1 : 0;
    if (!PyUnicode_CheckExact(key) || PyUnicode_GET_LENGTH(key) == 0)
        return 0;
    PyObject *p = PyDict_GetItemWithError(cache, key);
    if (p == NULL)
        return -1;
    int is_other = PyUnicode_Compare(p, self->other);
    if (is_other == -1 && PyErr_Occurred())
        return -1;
    if (is_other == 0)
        return 0;
    *provider = p;
    return 1;
}

/* The provider of an address's domain (borrowed) or NULL (a miss, or an error). */
static PyObject *
domain_provider_of(FastCounter *self, PyObject *recipient)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(recipient);
    Py_ssize_t at = PyUnicode_FindChar(recipient, '@', 0, n, -1);
    if (at == -2)
        return NULL;
    PyObject *domain = PyUnicode_Substring(recipient, at + 1, n); /* at = -1: all of it */
    if (domain == NULL)
        return NULL;
    PyObject *p = PyDict_GetItemWithError(self->domain_provider, domain);
    Py_DECREF(domain);
    return p;
}

/* The provider (borrowed) or NULL: a miss (no exception) or an error (exception set). */
static PyObject *
provider_of(FastCounter *self, PyObject *record, PyObject *rtype)
{
    PyObject *p = NULL;
    int known = cached_provider(self, self->site_provider, field(record, s_site), &p);
    if (known != 0)
        return p; /* the site's provider, or NULL: a miss or an error */
    /* No site, or a site of no known provider: an outbound record's peer is the receiving MX
     * (an inbound one's is the injecting client). */
    PyObject *peer = NULL;
    if (!is_ascii_str(rtype, "Reception") && !is_ascii_str(rtype, "Rejection")) {
        peer = field(record, s_peer_address);
        if (peer == NULL && PyErr_Occurred())
            return NULL;
    }
    if (peer != NULL && PyDict_CheckExact(peer)) {
        PyObject *name = field(peer, s_name);
        if (cached_provider(self, self->peer_provider, name, &p) != 0)
            return p;
    }
    PyObject *recipient = field(record, s_recipient);
    if (recipient == NULL && PyErr_Occurred())
        return NULL;
    if (recipient != NULL && PyList_CheckExact(recipient) && PyList_GET_SIZE(recipient) > 0)
        recipient = PyList_GET_ITEM(recipient, 0);
    if (recipient == NULL || !PyUnicode_CheckExact(recipient))
        return self->other;
    return domain_provider_of(self, recipient);
}

/* The tenant (borrowed) or NULL: a miss (no exception) or an error (exception set). */
static PyObject *
tenant_of(FastCounter *self, PyObject *record)
{
    PyObject *meta = field(record, s_meta);
    if (meta == NULL && PyErr_Occurred())
        return NULL;
    if (meta != NULL && PyDict_CheckExact(meta)) {
        PyObject *t = field(meta, s_tenant);
        if (t != NULL) {
            if (PyUnicode_CheckExact(t) && PyUnicode_GET_LENGTH(t) > 0)
                return t;
            return NULL; /* a tenant that is no name: the queue decides (Python) */
        }
        if (PyErr_Occurred())
            return NULL;
    }
    PyObject *queue = field(record, s_queue);
    if (queue == NULL && PyErr_Occurred())
        return NULL;
    if (queue == NULL || !PyUnicode_CheckExact(queue))
        return s_empty;
    return PyDict_GetItemWithError(self->tenants, queue);
}

/* The category (borrowed; None for an unclassified record) or NULL (miss or error). */
static PyObject *
category_of(FastCounter *self, PyObject *record, PyObject *label)
{
    if (label == Py_None)
        return Py_None;
    long long klass = 0;
    PyObject *response = field(record, s_response);
    if (response == NULL && PyErr_Occurred())
        return NULL;
    if (response != NULL && PyDict_CheckExact(response)) {
        PyObject *code = field(response, s_code);
        if (code == NULL && PyErr_Occurred())
            return NULL;
        if (code != NULL && PyLong_CheckExact(code)) {
            int overflow = 0;
            long long c = PyLong_AsLongLongAndOverflow(code, &overflow);
            if (overflow || (c == -1 && PyErr_Occurred())) {
                PyErr_Clear();
                return NULL;
            }
            klass = floor_div(c, 100);
        }
    }
    size_t slot = (((size_t)label >> 4) ^ (size_t)klass) % CATEGORY_MEMO;
    if (self->categories[slot].label == label && self->categories[slot].klass == klass)
        return self->categories[slot].category; /* a table's category never changes */
    PyObject *k = PyLong_FromLongLong(klass);
    if (k == NULL)
        return NULL;
    PyObject *key = PyTuple_Pack(2, label, k);
    Py_DECREF(k);
    if (key == NULL)
        return NULL;
    PyObject *category = PyDict_GetItemWithError(self->category_of, key);
    Py_DECREF(key);
    if (category != NULL) {
        Py_INCREF(label);
        Py_INCREF(category);
        Py_XSETREF(self->categories[slot].label, label);
        Py_XSETREF(self->categories[slot].category, category);
        self->categories[slot].klass = klass;
    }
    return category;
}

/* The suppression key of the record's recipient (a new string) when it is a plain ASCII
 * address that recipient_keys' normalising would only lower-case; NULL otherwise (the
 * Python path decides) or on an error (set). */
static PyObject *
plain_key(PyObject *record)
{
    PyObject *r = field(record, s_recipient);
    if (r == NULL || !PyUnicode_CheckExact(r) || !PyUnicode_IS_ASCII(r))
        return NULL;
    Py_ssize_t n = PyUnicode_GET_LENGTH(r);
    if (n == 0)
        return NULL;
    const Py_UCS1 *in = PyUnicode_1BYTE_DATA(r);
    /* ends that strip() or strip("<>") would change: the Python path normalises those */
    if (in[0] <= ' ' || in[0] == '<' || in[0] == '>' || in[n - 1] <= ' ' || in[n - 1] == '<'
        || in[n - 1] == '>')
        return NULL;
    PyObject *key = PyUnicode_New(n, 127);
    if (key == NULL)
        return NULL;
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(key);
    for (Py_ssize_t i = 0; i < n; i++)
        out[i] = (in[i] >= 'A' && in[i] <= 'Z') ? in[i] + 32 : in[i];
    return key;
}

/* [(key as bytes, value)]: the writes of one recipient. */
static PyObject *
one_write(PyObject *key, PyObject *value)
{
    PyObject *k = PyBytes_FromStringAndSize((const char *)PyUnicode_1BYTE_DATA(key),
                                            PyUnicode_GET_LENGTH(key));
    if (k == NULL)
        return NULL;
    PyObject *write = PyTuple_Pack(2, k, value);
    Py_DECREF(k);
    if (write == NULL)
        return NULL;
    PyObject *writes = PyList_New(1);
    if (writes == NULL) {
        Py_DECREF(write);
        return NULL;
    }
    PyList_SET_ITEM(writes, 0, write);
    return writes;
}

/* The exact event time (ms) of a record whose event second is ``second`` (ms): 1, or 0 when
 * the form is one the Python parse must judge (no fraction digits, a leap second...). */
static int
exact_ms(PyObject *record, long long second, long long *ms)
{
    PyObject *et = field(record, s_event_time);
    if (et == NULL || !PyUnicode_CheckExact(et) || !PyUnicode_IS_ASCII(et))
        return 0;
    Py_ssize_t n = PyUnicode_GET_LENGTH(et);
    const Py_UCS1 *c = PyUnicode_1BYTE_DATA(et);
    if (n < 20 || c[n - 1] != 'Z' || (c[17] == '6' && c[18] == '0'))
        return 0;
    if (n == 20) {
        *ms = second;
        return 1;
    }
    if (c[19] != '.' || n < 22)
        return 0;
    long long fraction = 0;
    int digits = 0;
    for (Py_ssize_t i = 20; i < n - 1; i++) {
        if (c[i] < '0' || c[i] > '9')
            return 0;
        if (digits < 3) {
            fraction = fraction * 10 + (c[i] - '0');
            digits++;
        }
    }
    for (; digits < 3; digits++)
        fraction *= 10;
    *ms = second + fraction;
    return 1;
}

/* A Delivery's suppression event (SuppressionEvents.update): 1 with *writes set, 0 for the
 * Python path (an unusual address or time), -1 on an error. */
static int
delivery_event(PyObject *record, long long second, PyObject **writes)
{
    *writes = NULL;
    long long t;
    if (!exact_ms(record, second, &t))
        return 0;
    PyObject *key = plain_key(record);
    if (key == NULL)
        return PyErr_Occurred() ? -1 : 0;
    char text[32];
    int len = snprintf(text, sizeof text, "{\"t\":%lld}", t);
    PyObject *value = PyBytes_FromStringAndSize(text, len);
    if (value == NULL) {
        Py_DECREF(key);
        return -1;
    }
    *writes = one_write(key, value);
    Py_DECREF(key);
    Py_DECREF(value);
    return *writes == NULL ? -1 : 1;
}

static PyObject *
str_or_empty(PyObject *record, PyObject *name)
{
    PyObject *v = field(record, name);
    if (v == NULL)
        return PyErr_Occurred() ? NULL : s_empty;
    return PyUnicode_CheckExact(v) ? v : s_empty;
}

static int
raise_watermark(FastCounter *self, long long t)
{
    if (self->has_watermark_set && t <= self->watermark_set)
        return 0;
    PyObject *current = PyObject_GetAttr(self->owner, s_watermark);
    if (current == NULL)
        return -1;
    int raise = 1;
    if (current != Py_None) {
        long long wm = PyLong_AsLongLong(current);
        if (wm == -1 && PyErr_Occurred()) {
            Py_DECREF(current);
            return -1;
        }
        raise = t > wm;
    }
    Py_DECREF(current);
    if (raise) {
        PyObject *value = PyLong_FromLongLong(t);
        if (value == NULL)
            return -1;
        int rc = PyObject_SetAttr(self->owner, s_watermark, value);
        Py_DECREF(value);
        if (rc < 0)
            return -1;
    }
    self->watermark_set = t;
    self->has_watermark_set = 1;
    return 0;
}

/* Count one record under its key (and a Feedback report as a complaint, or an Uncategorized
 * line as a gap). */
static int
count(FastCounter *self, long long t, PyObject *provider, PyObject *pool, PyObject *source,
      PyObject *tenant, PyObject *rtype, PyObject *label, PyObject *category, PyObject *line,
      PyObject *complaint)
{
    if (raise_watermark(self, t) < 0)
        return -1;
    long long start = t - floor_mod(t, self->window_ms);
    if (self->start == NULL || PyLong_AsLongLong(self->start) != start) {
        PyObject *value = PyLong_FromLongLong(start);
        if (value == NULL)
            return -1;
        Py_XSETREF(self->start, value);
    }
    PyObject *key = PyTuple_Pack(8, self->start, provider, pool, source, tenant, rtype, label,
                                 category);
    if (key == NULL)
        return -1;
    int rc = -1;
    Py_hash_t hash = PyObject_Hash(key);
    if (hash == -1)
        goto done;
    /* one lookup per record: the count lives in a C array, the dict only maps to its index */
    PyObject *slot = GET_KNOWN_HASH(self->slots, key, hash);
    if (slot != NULL) {
        self->counts[PyLong_AsSsize_t(slot)]++;
    }
    else {
        if (PyErr_Occurred())
            goto done;
        if (self->used == self->allocated) {
            Py_ssize_t allocated = self->allocated ? 2 * self->allocated : 1024;
            long long *counts = PyMem_Realloc(self->counts, allocated * sizeof(long long));
            if (counts == NULL) {
                PyErr_NoMemory();
                goto done;
            }
            self->counts = counts;
            self->allocated = allocated;
        }
        PyObject *index = PyLong_FromSsize_t(self->used);
        if (index == NULL)
            goto done;
        int stored = SET_KNOWN_HASH(self->slots, key, index, hash);
        Py_DECREF(index);
        if (stored < 0)
            goto done;
        self->counts[self->used++] = 1;
    }
    if (complaint != NULL) {
        PyObject *entry = PyTuple_Pack(2, key, complaint);
        if (entry == NULL)
            goto done;
        int appended = PyList_Append(self->complaints, entry);
        Py_DECREF(entry);
        if (appended < 0)
            goto done;
    }
    else if (label != Py_None && line != Py_None && PyUnicode_Check(line)
             && PyUnicode_GET_LENGTH(line) > 0) {
        int gap = PyUnicode_Compare(label, self->uncategorized);
        if (gap == -1 && PyErr_Occurred())
            goto done;
        if (gap == 0) {
            PyObject *entry = PyTuple_Pack(2, key, line);
            if (entry == NULL)
                goto done;
            int appended = PyList_Append(self->gaps, entry);
            Py_DECREF(entry);
            if (appended < 0)
                goto done;
        }
    }
    rc = 0;
done:
    Py_DECREF(key);
    return rc;
}

static PyObject *
FastCounter_drain_into(FastCounter *self, PyObject *tally)
{
    if (!PyDict_Check(tally)) {
        PyErr_SetString(PyExc_TypeError, "drain_into(tally: dict)");
        return NULL;
    }
    Py_ssize_t pos = 0;
    PyObject *key, *slot;
    while (PyDict_Next(self->slots, &pos, &key, &slot)) {
        long long n = self->counts[PyLong_AsSsize_t(slot)];
        PyObject *before = PyDict_GetItemWithError(tally, key);
        if (before == NULL && PyErr_Occurred())
            return NULL;
        long long b = 0;
        if (before != NULL) {
            b = PyLong_AsLongLong(before);
            if (b == -1 && PyErr_Occurred())
                return NULL;
        }
        PyObject *total = PyLong_FromLongLong(b + n);
        if (total == NULL)
            return NULL;
        int stored = PyDict_SetItem(tally, key, total);
        Py_DECREF(total);
        if (stored < 0)
            return NULL;
    }
    PyDict_Clear(self->slots);
    self->used = 0;
    Py_RETURN_NONE;
}

static PyObject *
FastCounter_pending(FastCounter *self, void *closure)
{
    return PyLong_FromSsize_t(self->used);
}

/* A Feedback report's complaint type, and the complainer's address and the sending tenant
 * (feedback.complained_about). 1 found, 0 not the common case (the Python path), -1 error.
 * The type must be one of the canonical ones, which is then also the pipeline's label. */
static int
feedback_of(FastCounter *self, PyObject *record, PyObject **complaint, PyObject **recipient,
            PyObject **tenant)
{
    PyObject *report = field(record, s_feedback_report);
    if (report == NULL || !PyDict_CheckExact(report))
        return PyErr_Occurred() ? -1 : 0;
    PyObject *kind = field(report, s_feedback_type);
    if (kind == NULL || !PyUnicode_CheckExact(kind))
        return PyErr_Occurred() ? -1 : 0;
    *complaint = PyDict_GetItemWithError(self->complaint_types, kind);
    if (*complaint == NULL)
        return PyErr_Occurred() ? -1 : 0;
    PyObject *trace = field(report, s_supplemental_trace);
    if (trace == NULL && PyErr_Occurred())
        return -1;
    if (trace == Py_None)
        trace = NULL;
    if (trace != NULL && !PyDict_CheckExact(trace))
        return 0; /* another Mapping, or a value the reference ignores: Python decides */
    PyObject *r = NULL, *t = NULL;
    if (trace != NULL) {
        r = field(trace, s_recipient);
        if (r == NULL && PyErr_Occurred())
            return -1;
        t = field(trace, s_tenant);
        if (t == NULL && PyErr_Occurred())
            return -1;
    }
    if (r != NULL && !PyUnicode_Check(r))
        r = NULL;
    if (r == NULL) {
        PyObject *listed = field(report, s_original_rcpto_to);
        if (listed == NULL && PyErr_Occurred())
            return -1;
        if (listed != NULL && PyList_CheckExact(listed) && PyList_GET_SIZE(listed) > 0)
            r = PyList_GET_ITEM(listed, 0);
        else if (listed != NULL && PyList_Check(listed))
            return 0;
    }
    if (r != NULL && !PyUnicode_CheckExact(r))
        return 0;
    *recipient = (r != NULL && PyUnicode_GET_LENGTH(r) > 0) ? r : NULL;
    *tenant = (t != NULL && PyUnicode_CheckExact(t) && PyUnicode_GET_LENGTH(t) > 0) ? t : s_empty;
    if (t != NULL && !PyUnicode_CheckExact(t) && PyUnicode_Check(t))
        return 0;
    return 1;
}

/* The provider of the complainer (borrowed) or NULL (miss or error): the site's, else the
 * complainer's domain's. */
static PyObject *
feedback_provider(FastCounter *self, PyObject *record, PyObject *recipient)
{
    PyObject *p = NULL;
    int known = cached_provider(self, self->site_provider, field(record, s_site), &p);
    if (known != 0)
        return p; /* the site's provider, or NULL: a miss or an error */
    if (recipient == NULL)
        return self->other;
    return domain_provider_of(self, recipient);
}

static PyObject *
FastCounter_observe(FastCounter *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "observe(record, rtype, label, rule, line)");
        return NULL;
    }
    PyObject *record = args[0], *rtype = args[1], *label = args[2], *rule = args[3],
             *line = args[4];
    if (!PyDict_CheckExact(record) || !PyUnicode_CheckExact(rtype)
        || (label != Py_None && !PyUnicode_CheckExact(label)))
        goto python;
    /* A Rejection's recipient may be another address than the one refused (records.recipients)
     * and a log hook's bookkeeping record is no mail (records.is_log_hook_record): Python. */
    if (is_ascii_str(rtype, "Rejection"))
        goto python;
    /* An OOB's tenant is a configured meta key, never its (the DSN's) queue: Python. */
    if (is_ascii_str(rtype, "OOB"))
        goto python;
    PyObject *protocol = field(record, s_reception_protocol);
    if (protocol == NULL && PyErr_Occurred())
        return NULL;
    if (protocol != NULL && PyUnicode_CheckExact(protocol) && is_ascii_str(protocol, "LogRecord"))
        goto python;
    long long t = 0;
    int found = 0;
    if (event_second(self, record, &t, &found) < 0)
        return NULL;
    if (!found)
        goto python;
    PyObject *provider, *tenant, *complaint = NULL;
    if (is_ascii_str(rtype, "Feedback")) {
        /* the complainer's provider and the sender's tenant, from the report */
        PyObject *complainer = NULL;
        int known = feedback_of(self, record, &complaint, &complainer, &tenant);
        if (known <= 0)
            goto miss;
        provider = feedback_provider(self, record, complainer);
    }
    else {
        provider = provider_of(self, record, rtype);
        if (provider == NULL)
            goto miss;
        tenant = tenant_of(self, record);
    }
    if (provider == NULL || tenant == NULL)
        goto miss;
    PyObject *category = category_of(self, record, label);
    if (category == NULL)
        goto miss;
    int hard = 0, delivery = 0; /* the records that may write suppressions */
    if (category != Py_None) {
        int cmp = PyUnicode_Compare(category, self->hard);
        if (cmp == -1 && PyErr_Occurred())
            return NULL;
        hard = cmp == 0;
    }
    else {
        delivery = is_ascii_str(rtype, "Delivery");
    }
    PyObject *pool = str_or_empty(record, s_egress_pool);
    if (pool == NULL)
        return NULL;
    PyObject *source = str_or_empty(record, s_egress_source);
    if (source == NULL)
        return NULL;
    if (count(self, t, provider, pool, source, tenant, rtype, label, category, line, complaint) < 0)
        return NULL;
    if (!hard && !delivery)
        return PyTuple_Pack(3, category, provider, s_no_writes);
    /* The suppressions run Python code: keep what the result needs. */
    Py_INCREF(category);
    Py_INCREF(provider);
    PyObject *writes = NULL;
    int done = 1; /* a hard category of another type suppresses nobody */
    if (delivery)
        done = delivery_event(record, t, &writes);
    else if (is_ascii_str(rtype, "Bounce") || is_ascii_str(rtype, "OOB"))
        done = 0; /* a hard bounce: its details are built in Python */
    if (done == 0) { /* SuppressionEvents.update decides */
        PyObject *call[6] = {record, label, category, rule, line, provider};
        writes = PyObject_Vectorcall(self->suppress, call, 6, NULL);
    }
    else if (done == 1 && writes == NULL) {
        writes = Py_NewRef(s_no_writes);
    }
    PyObject *result = writes == NULL ? NULL : PyTuple_Pack(3, category, provider, writes);
    Py_XDECREF(writes);
    Py_DECREF(category);
    Py_DECREF(provider);
    return result;

miss:
    if (PyErr_Occurred())
        return NULL;
python:
    return PyObject_Vectorcall(self->fallback, args, 5, NULL);
}

static int
FastCounter_init(FastCounter *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"window_ms", "gaps", "complaints", "complaint_types", "seconds", "tenants", "site_provider",
                             "domain_provider", "peer_provider", "category_of", "owner", "other",
                             "hard", "uncategorized", "fallback", "suppress", NULL};
    long long window_ms;
    PyObject *gaps, *complaints, *complaint_types, *seconds, *tenants, *site_provider, *domain_provider, *peer_provider,
        *category_of, *owner, *other, *hard, *uncategorized, *fallback, *suppress;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "LO!O!O!O!O!O!O!O!O!OUUUOO", kwlist,
                                     &window_ms, &PyList_Type, &gaps, &PyList_Type, &complaints,
                                     &PyDict_Type, &complaint_types, &PyDict_Type,
                                     &seconds, &PyDict_Type, &tenants, &PyDict_Type,
                                     &site_provider, &PyDict_Type, &domain_provider, &PyDict_Type,
                                     &peer_provider, &PyDict_Type, &category_of, &owner, &other,
                                     &hard, &uncategorized, &fallback, &suppress))
        return -1;
    if (window_ms <= 0) {
        PyErr_SetString(PyExc_ValueError, "window_ms must be positive");
        return -1;
    }
    if (!PyCallable_Check(fallback) || !PyCallable_Check(suppress)) {
        PyErr_SetString(PyExc_TypeError, "fallback and suppress must be callable");
        return -1;
    }
    self->window_ms = window_ms;
#define KEEP(field_)             \
    Py_INCREF(field_);           \
    Py_XSETREF(self->field_, field_);
    KEEP(gaps) KEEP(complaints) KEEP(complaint_types) KEEP(seconds) KEEP(tenants) KEEP(site_provider) KEEP(domain_provider)
    KEEP(peer_provider) KEEP(category_of) KEEP(owner) KEEP(other) KEEP(hard)
    KEEP(uncategorized) KEEP(fallback) KEEP(suppress)
#undef KEEP
    self->has_watermark_set = 0;
    PyObject *slots = PyDict_New();
    if (slots == NULL)
        return -1;
    Py_XSETREF(self->slots, slots);
    self->used = 0;
    return 0;
}

static int
FastCounter_traverse(FastCounter *self, visitproc visit, void *arg)
{
    Py_VISIT(self->slots);
    Py_VISIT(self->gaps);
    Py_VISIT(self->complaints);
    Py_VISIT(self->seconds);
    Py_VISIT(self->tenants);
    Py_VISIT(self->site_provider);
    Py_VISIT(self->domain_provider);
    Py_VISIT(self->peer_provider);
    Py_VISIT(self->category_of);
    Py_VISIT(self->owner);
    Py_VISIT(self->fallback); /* a bound method of the analyzer that holds this counter */
    Py_VISIT(self->suppress);
    return 0;
}

static int
FastCounter_clear(FastCounter *self)
{
    Py_CLEAR(self->slots);
    Py_CLEAR(self->start);
    Py_CLEAR(self->gaps);
    Py_CLEAR(self->complaints);
    Py_CLEAR(self->complaint_types);
    Py_CLEAR(self->seconds);
    Py_CLEAR(self->tenants);
    Py_CLEAR(self->site_provider);
    Py_CLEAR(self->domain_provider);
    Py_CLEAR(self->peer_provider);
    Py_CLEAR(self->category_of);
    Py_CLEAR(self->owner);
    Py_CLEAR(self->other);
    Py_CLEAR(self->hard);
    Py_CLEAR(self->uncategorized);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->suppress);
    Py_CLEAR(self->last_second);
    for (int i = 0; i < CATEGORY_MEMO; i++) {
        Py_CLEAR(self->categories[i].label);
        Py_CLEAR(self->categories[i].category);
    }
    return 0;
}

static void
FastCounter_dealloc(FastCounter *self)
{
    PyObject_GC_UnTrack(self);
    FastCounter_clear(self);
    PyMem_Free(self->counts);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef FastCounter_methods[] = {
    {"observe", (PyCFunction)(void (*)(void))FastCounter_observe, METH_FASTCALL,
     "observe(record, rtype, label, rule, line) -> (category, provider, writes): Analyzer.observe, "
     "the common case counted here, anything else by the fallback."},
    {"drain_into", (PyCFunction)FastCounter_drain_into, METH_O,
     "drain_into(tally): add the counts since the last drain into ``tally`` (key -> int)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef FastCounter_getset[] = {
    {"pending", (getter)FastCounter_pending, NULL, "Distinct keys counted since the last drain.",
     NULL},
    {NULL},
};

static PyTypeObject FastCounterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "streamer.analytics._fastcount.FastCounter",
    .tp_basicsize = sizeof(FastCounter),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The analytics' per-record tally over the analyzer's caches (see the module).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)FastCounter_init,
    .tp_dealloc = (destructor)FastCounter_dealloc,
    .tp_traverse = (traverseproc)FastCounter_traverse,
    .tp_clear = (inquiry)FastCounter_clear,
    .tp_methods = FastCounter_methods,
    .tp_getset = FastCounter_getset,
};

static struct PyModuleDef fastcount_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "streamer.analytics._fastcount",
    .m_doc = "The analytics' per-record tally in C; streamer.analytics.analyzer falls back to "
             "Python without it.",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__fastcount(void)
{
#define INTERN(var, text)                          \
    if ((var = PyUnicode_InternFromString(text)) == NULL) \
        return NULL;
    INTERN(s_feedback_report, "feedback_report")
    INTERN(s_feedback_type, "feedback_type")
    INTERN(s_supplemental_trace, "supplemental_trace")
    INTERN(s_original_rcpto_to, "original_rcpto_to")
    INTERN(s_event_time, "event_time")
    INTERN(s_site, "site")
    INTERN(s_peer_address, "peer_address")
    INTERN(s_name, "name")
    INTERN(s_recipient, "recipient")
    INTERN(s_reception_protocol, "reception_protocol")
    INTERN(s_meta, "meta")
    INTERN(s_tenant, "tenant")
    INTERN(s_queue, "queue")
    INTERN(s_response, "response")
    INTERN(s_code, "code")
    INTERN(s_egress_pool, "egress_pool")
    INTERN(s_egress_source, "egress_source")
    INTERN(s_watermark, "watermark")
    INTERN(s_empty, "")
#undef INTERN
    if ((s_no_writes = PyTuple_New(0)) == NULL)
        return NULL;
    if (PyType_Ready(&FastCounterType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&fastcount_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&FastCounterType);
    if (PyModule_AddObject(m, "FastCounter", (PyObject *)&FastCounterType) < 0) {
        Py_DECREF(&FastCounterType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
