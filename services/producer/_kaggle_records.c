/* The replay's fast path for a Kaggle-layout block: check every row and build its record.

   `fraudstream produce` spent most of its CPU a record in numpy passes over the block and in
   Python objects per row (the split, the key, the timestamp, the format of the value); on a
   machine with no free core for the reader thread that CPU is the gap to the bare produce
   loop. This does the same work in two passes over the block's bytes: the first, without the
   GIL (the produce loop runs meanwhile), checks every row and parses its `Time`; the second
   writes each key and value straight into its bytes object.

   It answers only "every row is plain" (then the records) or "no" (None): any other block,
   and any block of a tree built without a compiler, takes the numpy path (numpy_rows.py),
   which stays the authority with `rows.check_line` (tests/test_producer_bulk.py: this answers
   exactly when every row is plain as stated below, and then that path returns the same keys,
   values and Times, with no line refused). Without numpy here, `produce` of a plain Kaggle
   file never loads it: the rows' users come from `layout.USER_STEPS`.

   A row is plain when it has 31 fields: `Time` an integer of at most 9 digits with an optional
   `-`; V1..V28 and `Amount` plain numbers `-?D+(.D+)?`, with an optional two-digit exponent,
   of at most 40 bytes; `Class` empty, 0 or 1, bare or in double quotes; and the row at most
   `max_line_bytes` long. Nothing else (no `\r`, no NUL, no space, no quoted number). Such a
   row is one `check_line` accepts, and its `Time` is the float `check_line` reads. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define FIELDS 31
#define MAX_NUMBER 40
#define MAX_TIME_DIGITS 9
#define STAMP_BYTES 19 /* 2013-09-01T00:00:00 */
#define KEY_BYTES 21   /* an int64 in decimal, with its sign */
#define MAX_USERS 256
#define USER_SHARES (UINT32_C(1) << 20)

/* Past the digits from p on (at most up to end). */
static const unsigned char *skip_digits(const unsigned char *p, const unsigned char *end) {
    while (p < end && (unsigned)(*p - '0') < 10) p++;
    return p;
}

/* The end of the plain number `-?D+(.D+)?([eE][-+]?D{1,2})?` that starts at p, or NULL when
   none does. The exponent is there because the real data set writes a few tiny values that
   way (`-2.68638196892377e-05`: one row in 200, so nearly every block holds one); two digits
   keep every such number finite. */
static const unsigned char *number_end(const unsigned char *p, const unsigned char *end) {
    p += p < end && *p == '-';
    const unsigned char *q = skip_digits(p, end);
    if (q == p) return NULL;
    if (q < end && *q == '.') {
        p = q + 1;
        q = skip_digits(p, end);
        if (q == p) return NULL;
    }
    if (q == end || (*q != 'e' && *q != 'E')) return q;
    p = q + 1;
    p += p < end && (*p == '-' || *p == '+');
    q = skip_digits(p, end);
    return q > p && q - p <= 2 ? q : NULL;
}

/* Is [p, end) one of the six plain `Class` spellings? */
static int plain_class(const unsigned char *p, const unsigned char *end) {
    switch (end - p) {
        case 0: return 1;
        case 1: return *p == '0' || *p == '1';
        case 2: return p[0] == '"' && p[1] == '"';
        case 3: return p[0] == '"' && (p[1] == '0' || p[1] == '1') && p[2] == '"';
        default: return 0;
    }
}

/* Check the row [p, end) (no newline in it), one field after the other; its `Time` in *time.
   `Time` is `-?D{1,9}`, read here as check_line's float() would ("-0" is -0.0). */
static int plain_row(const unsigned char *p, const unsigned char *end, double *time) {
    int negative = p < end && *p == '-';
    const unsigned char *digits = p + negative, *q = skip_digits(digits, end);
    if (q == digits || q - digits > MAX_TIME_DIGITS || q == end || *q != ',') return 0;
    int64_t value = 0;
    for (; digits < q; digits++) value = value * 10 + (*digits - '0');
    *time = negative ? -(double)value : (double)value;
    for (int field = 1; field < FIELDS - 1; field++) {
        p = q + 1;
        q = number_end(p, end);
        if (q == NULL || q - p > MAX_NUMBER || q == end || *q != ',') return 0;
    }
    return plain_class(q + 1, end);
}

/* Check every row of `data` (rows ended by '\n'), filling their ends and Times; 0 unless all
   `rows` rows are plain. Runs without the GIL: it touches no Python object. */
static int check_rows(const unsigned char *data, Py_ssize_t size, Py_ssize_t rows,
                      Py_ssize_t max_line, Py_ssize_t *ends, double *times) {
    const unsigned char *p = data, *stop = data + size;
    for (Py_ssize_t row = 0; row < rows; row++) {
        const unsigned char *end = memchr(p, '\n', (size_t)(stop - p));
        if (end == NULL || end - p > max_line || !plain_row(p, end, &times[row])) return 0;
        ends[row] = end - data;
        p = end + 1;
    }
    return p == stop;
}

/* Days since 1970-01-01 to a civil date (proleptic Gregorian), exact for every int64 day
   count this sees (H. Hinnant's public-domain algorithm). */
static void civil_from_days(int64_t days, int64_t *year, int *month, int *day) {
    days += 719468;
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    int64_t doe = days - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *day = (int)(doy - (153 * mp + 2) / 5 + 1);
    *month = (int)(mp < 10 ? mp + 3 : mp - 9);
    *year = yoe + era * 400 + (*month <= 2);
}

/* Write `value` (0 <= value < 10**width) as `width` digits, zero-padded. */
static void put_digits(char *out, int64_t value, int width) {
    for (int i = width - 1; i >= 0; i--, value /= 10) out[i] = (char)('0' + value % 10);
}

/* `YYYY-MM-DDTHH:MM:SS` of the epoch second `seconds` into out (STAMP_BYTES). Years here are
   1945-2081 (|Time| < 10**9 s around 2013), always four digits. Written digit by digit:
   snprintf took a third of this module's time. */
static void format_stamp(int64_t seconds, char *out) {
    int64_t days = seconds >= 0 ? seconds / 86400 : -((-seconds + 86399) / 86400);
    int64_t rest = seconds - days * 86400;
    int64_t year;
    int month, day;
    civil_from_days(days, &year, &month, &day);
    memcpy(out, "0000-00-00T00:00:00", STAMP_BYTES);
    put_digits(out, year, 4);
    put_digits(out + 5, month, 2);
    put_digits(out + 8, day, 2);
    put_digits(out + 11, rest / 3600, 2);
    put_digits(out + 14, rest / 60 % 60, 2);
    put_digits(out + 17, rest % 60, 2);
}

/* `id` in decimal into out (KEY_BYTES); returns its length. */
static int format_key(long long id, char *out) {
    char digits[KEY_BYTES];
    unsigned long long magnitude = id < 0 ? 0ULL - (unsigned long long)id : (unsigned long long)id;
    int n = 0;
    do digits[n++] = (char)('0' + magnitude % 10); while ((magnitude /= 10) > 0);
    int size = 0;
    if (id < 0) out[size++] = '-';
    while (n > 0) out[size++] = digits[--n];
    return size;
}

/* The value `Id,"Timestamp","User",<row>`, as numpy_rows' `_KAGGLE_VALUE` writes it. */
static PyObject *build_value(const char *key, Py_ssize_t key_size, const char *stamp,
                             PyObject *user, const unsigned char *row, Py_ssize_t row_size) {
    Py_ssize_t user_size = PyBytes_GET_SIZE(user);
    Py_ssize_t size = key_size + 2 + STAMP_BYTES + 4 + user_size + 2 + row_size;
    PyObject *value = PyBytes_FromStringAndSize(NULL, size);
    if (value == NULL) return NULL;
    char *out = PyBytes_AS_STRING(value);
    memcpy(out, key, (size_t)key_size), out += key_size;
    memcpy(out, ",\"", 2), out += 2;
    memcpy(out, stamp, STAMP_BYTES), out += STAMP_BYTES;
    memcpy(out, "Z\",\"", 4), out += 4;
    memcpy(out, PyBytes_AS_STRING(user), (size_t)user_size), out += user_size;
    memcpy(out, "\",", 2), out += 2;
    memcpy(out, row, (size_t)row_size);
    return value;
}

/* The users of the rows: `services.producer.layout.user_indices` as steps over its hash shares
   (`USER_STEPS`): a row's user is how many steps its share reaches. */
typedef struct {
    uint32_t steps[MAX_USERS];
    int count; /* of steps: one fewer than the users */
} UserSteps;

static int user_of(const UserSteps *users, long long id) {
    uint64_t mixed = ((uint64_t)id * UINT64_C(2654435761)) >> 7; /* wraps as numpy's uint64 */
    uint32_t share = (uint32_t)(mixed % USER_SHARES);
    int lo = 0, hi = users->count; /* the first step above share, by bisection */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (users->steps[mid] <= share) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* Keys and values of the checked rows, into two new lists. */
static int build_records(const unsigned char *data, Py_ssize_t rows, const Py_ssize_t *ends,
                         const double *times, const UserSteps *steps, PyObject *users,
                         long long first_id, long long base_seconds, PyObject *keys,
                         PyObject *values) {
    char key[KEY_BYTES], stamp[STAMP_BYTES];
    Py_ssize_t start = 0;
    for (Py_ssize_t row = 0; row < rows; row++) {
        long long id = first_id + (long long)row;
        int key_size = format_key(id, key);
        /* |Time| < 10**9: its floor fits an int64, and so does the sum */
        format_stamp((int64_t)floor(times[row]) + base_seconds, stamp);
        PyObject *user = PyTuple_GET_ITEM(users, user_of(steps, id));
        PyObject *k = PyBytes_FromStringAndSize(key, key_size);
        PyObject *v = k ? build_value(key, key_size, stamp, user, data + start,
                                      ends[row] - start)
                        : NULL;
        if (v == NULL) {
            Py_XDECREF(k);
            return 0;
        }
        PyList_SET_ITEM(keys, row, k);
        PyList_SET_ITEM(values, row, v);
        start = ends[row] + 1;
    }
    return 1;
}

/* Users (a tuple of bytes) and their steps (a tuple of one fewer rising ints below
   USER_SHARES) into `out`; sets a Python error when they are not that. */
static int read_users(PyObject *users, PyObject *steps, UserSteps *out) {
    Py_ssize_t count = PyTuple_GET_SIZE(steps);
    if (count + 1 != PyTuple_GET_SIZE(users) || count + 1 > MAX_USERS) {
        PyErr_SetString(PyExc_ValueError, "users must be one more than user_steps, at most 256");
        return 0;
    }
    for (Py_ssize_t i = 0; i <= count; i++) {
        if (!PyBytes_Check(PyTuple_GET_ITEM(users, i))) {
            PyErr_SetString(PyExc_TypeError, "users must be a tuple of bytes");
            return 0;
        }
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        long step = PyLong_AsLong(PyTuple_GET_ITEM(steps, i));
        if (step == -1 && PyErr_Occurred()) return 0;
        if (step < 0 || step >= (long)USER_SHARES || (i > 0 && step < (long)out->steps[i - 1])) {
            PyErr_SetString(PyExc_ValueError, "user_steps must rise, within the shares");
            return 0;
        }
        out->steps[i] = (uint32_t)step;
    }
    out->count = (int)count;
    return 1;
}

/* The rows of `data`: its newlines (memchr: a few times bytes.count's speed). */
static Py_ssize_t count_rows(const char *p, Py_ssize_t size) {
    const char *stop = p + size;
    Py_ssize_t rows = 0;
    while ((p = memchr(p, '\n', (size_t)(stop - p))) != NULL) rows++, p++;
    return rows;
}

/* Checks every row without the GIL; then (keys, values, times as float64 bytes) or None. */
static PyObject *checked_records(const Py_buffer *data, PyObject *users, const UserSteps *steps,
                                 long long first_id, long long base_seconds,
                                 Py_ssize_t max_line) {
    Py_ssize_t rows;
    Py_BEGIN_ALLOW_THREADS
    rows = count_rows(data->buf, data->len);
    Py_END_ALLOW_THREADS
    if (rows == 0) Py_RETURN_NONE;
    Py_ssize_t *ends = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)rows);
    double *times = PyMem_Malloc(sizeof(double) * (size_t)rows);
    PyObject *result = NULL, *keys = NULL, *values = NULL, *times_bytes = NULL;
    if (ends == NULL || times == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    int plain;
    Py_BEGIN_ALLOW_THREADS
    plain = check_rows(data->buf, data->len, rows, max_line, ends, times);
    Py_END_ALLOW_THREADS
    if (!plain) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    keys = PyList_New(rows);
    values = PyList_New(rows);
    times_bytes = PyBytes_FromStringAndSize((const char *)times, rows * (Py_ssize_t)sizeof(double));
    if (keys && values && times_bytes &&
        build_records(data->buf, rows, ends, times, steps, users, first_id, base_seconds, keys,
                      values))
        result = PyTuple_Pack(3, keys, values, times_bytes);
done:
    Py_XDECREF(keys);
    Py_XDECREF(values);
    Py_XDECREF(times_bytes);
    PyMem_Free(ends);
    PyMem_Free(times);
    return result;
}

static PyObject *records(PyObject *Py_UNUSED(module), PyObject *args) {
    Py_buffer data;
    PyObject *users, *steps, *result = NULL;
    Py_ssize_t max_line;
    long long first_id, base_seconds;
    if (!PyArg_ParseTuple(args, "y*O!O!LLn:records", &data, &PyTuple_Type, &users, &PyTuple_Type,
                          &steps, &first_id, &base_seconds, &max_line))
        return NULL;
    UserSteps user_steps;
    if (read_users(users, steps, &user_steps))
        result = checked_records(&data, users, &user_steps, first_id, base_seconds, max_line);
    PyBuffer_Release(&data);
    return result;
}

static PyMethodDef methods[] = {
    {"records", records, METH_VARARGS,
     "records(data, users, user_steps, first_id, base_seconds, max_line_bytes)\n"
     "--\n\n"
     "(keys, values, times) of a Kaggle-layout block whose rows (each ended by a newline) are\n"
     "all plain; None when any row is not. Keys are the Ids first_id, first_id + 1, ...;\n"
     "values `Id,\"Timestamp\",\"User\",row` with Timestamp = base_seconds + floor(Time) and\n"
     "User from users by user_steps (services.producer.layout.USER_STEPS); times the rows'\n"
     "Time as float64 bytes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "_kaggle_records",
    .m_doc = "The replay's compiled fast path for Kaggle-layout blocks (see csv_source.py).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__kaggle_records(void) { return PyModule_Create(&module); }
