/* The compiled fast path of LossWriter.add() (see lossfmt/_compiled.py).
 *
 * WriterBase is the C base class of LossWriter. It holds the three attributes add() reads on every call
 * (_pending, _wake_at, _ok) as C members, and its `add` applies exactly the rules of the Python add()'s
 * fast path (lossfmt/_writer.py): an exact int step, a float value (or one that lossfmt._values'
 * CONVERTERS or an exact CPU torch.Tensor's item() turns into a float), an interned tag, an int count >= 1,
 * an int epoch or None, "mean" or "sum". It packs the row of lossfmt/_rows.py (ROW "<qddqqiB", or PLAIN when
 * every option is at its default) and appends it to _pending. Anything else, and any error, is handed to the
 * Python add (`_add_py`), which checks, converts and raises as it always did: the two can only differ in
 * speed. The row layout is checked against _rows.ROW's format when the module is configured.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <stdint.h>
#include <string.h>
#include <time.h>

#if PY_BIG_ENDIAN
#error "the packed row layout is little-endian: big-endian machines use the pure-Python add()"
#endif

#define ROW_SIZE 45
#define EPOCH_FLAG 1
#define SUM_FLAG 2
#define MAX_ARGS 6 /* step, value, tag, count, epoch, reduction */

typedef struct {
    PyObject_HEAD
    PyObject *pending;  /* _pending: the list the flusher drains */
    Py_ssize_t wake_at; /* _wake_at: wake the flusher once this many rows are pending */
    char ok;            /* _ok: False once close() began or the flusher failed */
} WriterBase;

/* Set by configure(); until then every call takes the Python add. */
static PyObject *tag_ids;    /* lossfmt._rows._ids: interned tag -> id */
static PyObject *converters; /* lossfmt._values.CONVERTERS: exact type -> converter */
static PyObject *values_ns;  /* lossfmt._values.__dict__, for TENSOR (rebound when torch is first seen) */
static PyObject *default_tag, *mean_str, *sum_str, *one;
static PyObject *s_tensor, *s_is_cpu, *s_item, *s_add_py, *s_add_many_py, *s_wake, *s_added_while_closing;
static PyObject *keywords[MAX_ARGS];

/* The keyword's argument position, or -1. */
static int
keyword_slot(PyObject *name)
{
    for (int i = 0; i < MAX_ARGS; i++) {
        if (name == keywords[i]) {
            return i;
        }
    }
    for (int i = 0; i < MAX_ARGS; i++) {
        if (PyUnicode_Compare(name, keywords[i]) == 0) {
            return i;
        }
    }
    return -1;
}

/* An exact int as int64: 1, or 0 if it is not one (or out of range). */
static int
exact_int64(PyObject *obj, long long *out)
{
    int overflow;
    if (!PyLong_CheckExact(obj)) {
        return 0;
    }
    *out = PyLong_AsLongLongAndOverflow(obj, &overflow);
    return !overflow;
}

/* After a failed call into Python: 1 to let the Python add redo the call (an Exception: it raises what it
 * should, or takes its own path), 0 to propagate (KeyboardInterrupt, SystemExit). */
static int
retry_in_python(void)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception)) {
        return 0;
    }
    PyErr_Clear();
    return 1;
}

/* value.is_cpu, as getattr reads it, without its lookup: a type with the generic getattr and a data
 * descriptor (torch's getset) for the name reads that descriptor, which the instance dict cannot shadow. */
static PyObject *
tensor_is_cpu(PyObject *value)
{
    PyTypeObject *type = Py_TYPE(value);
    if (type->tp_getattro == PyObject_GenericGetAttr) {
        PyObject *descr = _PyType_Lookup(type, s_is_cpu);
        if (descr != NULL && Py_TYPE(descr)->tp_descr_get != NULL && Py_TYPE(descr)->tp_descr_set != NULL) {
            Py_INCREF(descr);
            PyObject *cpu = Py_TYPE(descr)->tp_descr_get(descr, value, (PyObject *)type);
            Py_DECREF(descr);
            return cpu;
        }
    }
    return PyObject_GetAttr(value, s_is_cpu);
}

/* The value as a float: 1, 0 for the Python add, -1 for an error to propagate. */
static int
value_float(PyObject *value, double *out)
{
    PyObject *number;
    if (PyFloat_CheckExact(value)) {
        *out = PyFloat_AS_DOUBLE(value);
        return 1;
    }
    PyObject *tensor = PyDict_GetItemWithError(values_ns, s_tensor);
    if (tensor == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    if ((PyObject *)Py_TYPE(value) == tensor) {
        PyObject *cpu = tensor_is_cpu(value);
        if (cpu == NULL) {
            return retry_in_python() ? 0 : -1;
        }
        int is_cpu = cpu == Py_True;
        Py_DECREF(cpu);
        if (!is_cpu) {
            return 0; /* a device tensor: deferred, by the Python add */
        }
        number = PyObject_CallMethodNoArgs(value, s_item);
    }
    else {
        PyObject *convert = PyDict_GetItemWithError(converters, (PyObject *)Py_TYPE(value));
        if (convert == NULL) {
            return PyErr_Occurred() ? -1 : 0;
        }
        Py_INCREF(convert); /* borrowed from a dict another thread may change during the call */
        number = PyObject_CallOneArg(convert, value);
        Py_DECREF(convert);
    }
    if (number == NULL) {
        return retry_in_python() ? 0 : -1;
    }
    int is_float = PyFloat_CheckExact(number);
    if (is_float) {
        *out = PyFloat_AS_DOUBLE(number);
    }
    Py_DECREF(number);
    return is_float;
}

/* time.time(): the system clock's nanoseconds as seconds. */
static double
now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    return (double)ns / 1e9;
}

/* The id of an interned tag: 1, or 0 for the Python path (a new tag, not an exact str). */
static int
tag_code(PyObject *tag, int32_t *code)
{
    if (tag == NULL || tag == default_tag) {
        *code = 0;
        return 1;
    }
    if (!PyUnicode_CheckExact(tag)) {
        return 0;
    }
    PyObject *id = PyDict_GetItemWithError(tag_ids, tag); /* a str's hash cannot fail */
    if (id == NULL || !PyLong_CheckExact(id)) {
        return 0;
    }
    long number = PyLong_AsLong(id);
    if (number < 0 || number > INT32_MAX) {
        PyErr_Clear();
        return 0;
    }
    *code = (int32_t)number;
    return 1;
}

/* count (>= 1), epoch (or None) and reduction ("mean" or "sum") as fields and flags: 1, or 0. */
static int
options(PyObject *count_obj, PyObject *epoch_obj, PyObject *reduction, long long *count, long long *epoch,
        unsigned char *flags)
{
    *count = 1;
    *epoch = 0;
    *flags = 0;
    if (count_obj != NULL && (!exact_int64(count_obj, count) || *count < 1)) {
        return 0;
    }
    if (reduction != NULL && reduction != mean_str) {
        if (!PyUnicode_CheckExact(reduction)) {
            return 0;
        }
        if (PyUnicode_Compare(reduction, sum_str) == 0) {
            *flags |= SUM_FLAG;
        }
        else if (PyUnicode_Compare(reduction, mean_str) != 0) {
            return 0;
        }
    }
    if (epoch_obj != NULL && epoch_obj != Py_None) {
        if (!exact_int64(epoch_obj, epoch)) {
            return 0;
        }
        *flags |= EPOCH_FLAG;
    }
    return 1;
}

/* One packed row: ROW, or PLAIN (count 1, no epoch, the default tag, mean: all zero bytes). */
static PyObject *
pack(long long step, double value, double now, long long count, long long epoch, int32_t code,
     unsigned char flags, int plain)
{
    PyObject *row = PyBytes_FromStringAndSize(NULL, ROW_SIZE);
    if (row == NULL) {
        return NULL;
    }
    char *p = PyBytes_AS_STRING(row);
    memcpy(p, &step, 8);
    memcpy(p + 8, &value, 8);
    memcpy(p + 16, &now, 8);
    if (plain) {
        memset(p + 24, 0, ROW_SIZE - 24);
    }
    else {
        memcpy(p + 24, &count, 8);
        memcpy(p + 32, &epoch, 8);
        memcpy(p + 40, &code, 4);
        p[44] = (char)flags;
    }
    return row;
}

/* The packed row of add()'s arguments, or NULL with no error set for the Python add (NULL with an
 * error set: propagate it). */
static PyObject *
fast_row(PyObject *const *a)
{
    long long step, count, epoch;
    int32_t code = 0;
    unsigned char flags = 0;
    double value;
    PyObject *tag = a[2], *count_obj = a[3], *epoch_obj = a[4], *reduction = a[5];

    if (!exact_int64(a[0], &step)) {
        return NULL;
    }
    /* The Python add's test for PLAIN, by identity: `count is _ONE`, `reduction is _MEAN`. */
    int plain = (tag == NULL || tag == default_tag) && (count_obj == NULL || count_obj == one) &&
                (epoch_obj == NULL || epoch_obj == Py_None) && (reduction == NULL || reduction == mean_str);
    if (!plain) {
        /* The Python add takes a reduction other than the `_MEAN` object only if it equals "sum". */
        if (reduction != NULL && reduction != mean_str &&
            (!PyUnicode_CheckExact(reduction) || PyUnicode_Compare(reduction, sum_str) != 0)) {
            return NULL;
        }
        if (!tag_code(tag, &code) || !options(count_obj, epoch_obj, reduction, &count, &epoch, &flags)) {
            return NULL;
        }
    }
    else {
        count = 1;
        epoch = 0;
    }
    int got = value_float(a[1], &value);
    if (got <= 0) {
        return NULL;
    }
    return pack(step, value, now_seconds(), count, epoch, code, flags, plain);
}

/* After rows were appended (the pending list now holds `size`): wake the flusher at the threshold, and if
 * close() began meanwhile make sure the rows were written, or raise. `rows`: a list of them, or NULL for
 * the one `row`. 0, or -1 with an error. */
static int
after_append(WriterBase *self, Py_ssize_t size, PyObject *row, PyObject *rows)
{
    if (size >= self->wake_at) {
        PyObject *r = PyObject_CallMethodNoArgs((PyObject *)self, s_wake);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
    }
    if (!self->ok) {
        PyObject *given = rows != NULL ? Py_NewRef(rows) : PyTuple_Pack(1, row);
        PyObject *r = given == NULL ? NULL : PyObject_CallMethodOneArg((PyObject *)self, s_added_while_closing, given);
        Py_XDECREF(given);
        if (r == NULL) {
            return -1;
        }
        Py_DECREF(r);
    }
    return 0;
}

/* The Python method `name` (_add_py or _add_many_py) with the same arguments: every call the C path does
 * not take. */
static PyObject *
call_python(PyObject *name, PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    Py_ssize_t total = nargs + (kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames));
    PyObject *small[1 + MAX_ARGS + 2];
    PyObject **stack = small;
    if (total + 1 > (Py_ssize_t)(sizeof(small) / sizeof(small[0]))) {
        stack = PyMem_Malloc((size_t)(total + 1) * sizeof(PyObject *));
        if (stack == NULL) {
            return PyErr_NoMemory();
        }
    }
    stack[0] = self;
    memcpy(stack + 1, args, (size_t)total * sizeof(PyObject *));
    PyObject *result = PyObject_VectorcallMethod(name, stack, (size_t)(nargs + 1), kwnames);
    if (stack != small) {
        PyMem_Free(stack);
    }
    return result;
}

#define python_add(self, args, nargs, kwnames) call_python(s_add_py, self, args, nargs, kwnames)
#define python_add_many(self, args, nargs, kwnames) call_python(s_add_many_py, self, args, nargs, kwnames)

PyDoc_STRVAR(add_doc, "add(self, step, value, tag='loss', count=1, epoch=None, reduction='mean')\n--\n\n"
                      "Record one event (no I/O).");

static PyObject *
WriterBase_add(WriterBase *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *a[MAX_ARGS] = {NULL};
    PyObject *pending = self->pending;
    if (!self->ok || tag_ids == NULL || pending == NULL || !PyList_CheckExact(pending) || nargs < 2 ||
        nargs > MAX_ARGS) {
        return python_add((PyObject *)self, args, nargs, kwnames);
    }
    memcpy(a, args, (size_t)nargs * sizeof(PyObject *));
    if (kwnames != NULL) {
        Py_ssize_t n = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t k = 0; k < n; k++) {
            int slot = keyword_slot(PyTuple_GET_ITEM(kwnames, k));
            if (slot < 0 || a[slot] != NULL) {
                return python_add((PyObject *)self, args, nargs, kwnames); /* its TypeError */
            }
            a[slot] = args[nargs + k];
        }
    }
    Py_INCREF(pending); /* fast_row may call into Python (item(), a converter) */
    PyObject *row = fast_row(a);
    if (row == NULL) {
        Py_DECREF(pending);
        if (PyErr_Occurred()) {
            return NULL;
        }
        return python_add((PyObject *)self, args, nargs, kwnames);
    }
    int appended = PyList_Append(pending, row);
    Py_ssize_t size = PyList_GET_SIZE(pending);
    Py_DECREF(pending);
    int done = appended < 0 ? -1 : after_append(self, size, row, NULL);
    Py_DECREF(row);
    if (done < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* add_many's rows (a list), one per tag, stamped with one time; NULL with no error set for the Python
 * add_many (a new tag, a value it must convert or defer), NULL with an error set to propagate it. */
static PyObject *
many_rows(PyObject *step_obj, PyObject *values, PyObject *const *options_given)
{
    long long step, count, epoch;
    unsigned char flags;
    if (!exact_int64(step_obj, &step) || !PyDict_CheckExact(values) ||
        !options(options_given[0], options_given[1], options_given[2], &count, &epoch, &flags)) {
        return NULL;
    }
    Py_ssize_t n = PyDict_GET_SIZE(values), pos = 0, i = 0;
    PyObject *rows = PyList_New(n), *tag, *value;
    if (rows == NULL) {
        return NULL;
    }
    double now = now_seconds();
    Py_INCREF(values); /* a converter runs Python code: keep the dict alive, and stop if it changes */
    while (PyDict_Next(values, &pos, &tag, &value)) {
        int32_t code;
        double number;
        if (i >= n || !tag_code(tag, &code)) {
            goto python;
        }
        Py_INCREF(tag);
        Py_INCREF(value);
        int got = value_float(value, &number);
        Py_DECREF(tag);
        Py_DECREF(value);
        if (got <= 0 || PyDict_GET_SIZE(values) != n) {
            goto python;
        }
        PyObject *row = pack(step, number, now, count, epoch, code, flags, 0);
        if (row == NULL) {
            goto python;
        }
        PyList_SET_ITEM(rows, i++, row);
    }
    Py_DECREF(values);
    if (i != n) {
        Py_DECREF(rows);
        return NULL;
    }
    return rows;
python:
    Py_DECREF(values);
    Py_DECREF(rows);
    return NULL;
}

PyDoc_STRVAR(add_many_doc, "add_many(self, step, values, *, count=1, epoch=None, reduction='mean')\n--\n\n"
                           "Record one event per tag for the same step.");

static PyObject *
WriterBase_add_many(WriterBase *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *given[3] = {NULL, NULL, NULL}; /* count, epoch, reduction: keyword-only */
    PyObject *pending = self->pending;
    if (!self->ok || tag_ids == NULL || pending == NULL || !PyList_CheckExact(pending) || nargs != 2) {
        return python_add_many((PyObject *)self, args, nargs, kwnames);
    }
    if (kwnames != NULL) {
        Py_ssize_t n = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t k = 0; k < n; k++) {
            int slot = keyword_slot(PyTuple_GET_ITEM(kwnames, k)) - 3; /* tag is not add_many's */
            if (slot < 0 || given[slot] != NULL) {
                return python_add_many((PyObject *)self, args, nargs, kwnames);
            }
            given[slot] = args[nargs + k];
        }
    }
    Py_INCREF(pending);
    PyObject *rows = many_rows(args[0], args[1], given);
    if (rows == NULL) {
        Py_DECREF(pending);
        if (PyErr_Occurred() && !retry_in_python()) {
            return NULL;
        }
        return python_add_many((PyObject *)self, args, nargs, kwnames);
    }
    Py_ssize_t size = PyList_GET_SIZE(pending);
    int extended = PyList_SetSlice(pending, size, size, rows);
    size = PyList_GET_SIZE(pending);
    Py_DECREF(pending);
    int done = extended < 0 ? -1 : after_append(self, size, NULL, rows);
    Py_DECREF(rows);
    if (done < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static int
WriterBase_traverse(WriterBase *self, visitproc visit, void *arg)
{
    Py_VISIT(self->pending);
    return 0;
}

static int
WriterBase_clear(WriterBase *self)
{
    Py_CLEAR(self->pending);
    return 0;
}

static void
WriterBase_dealloc(WriterBase *self)
{
    PyObject_GC_UnTrack(self);
    WriterBase_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef WriterBase_methods[] = {
    {"add", (PyCFunction)(void (*)(void))WriterBase_add, METH_FASTCALL | METH_KEYWORDS, add_doc},
    {"add_many", (PyCFunction)(void (*)(void))WriterBase_add_many, METH_FASTCALL | METH_KEYWORDS, add_many_doc},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef WriterBase_members[] = {
    {"_pending", T_OBJECT_EX, offsetof(WriterBase, pending), 0, "rows not yet handed to the flusher"},
    {"_wake_at", T_PYSSIZET, offsetof(WriterBase, wake_at), 0, "wake the flusher at this many rows"},
    {"_ok", T_BOOL, offsetof(WriterBase, ok), 0, "the fast path accepts rows"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject WriterBaseType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "lossfmt._fastadd.WriterBase",
    .tp_basicsize = sizeof(WriterBase),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The C base of LossWriter: its add() fast path and the attributes that path reads.",
    .tp_traverse = (traverseproc)WriterBase_traverse,
    .tp_clear = (inquiry)WriterBase_clear,
    .tp_dealloc = (destructor)WriterBase_dealloc,
    .tp_methods = WriterBase_methods,
    .tp_members = WriterBase_members,
    .tp_new = PyType_GenericNew,
};

/* Method `index`'s docstring: the Python method's under the C signature (help() reads the definition). */
static int
set_doc(int index, PyObject *doc)
{
    static char *docs[2];
    static const char *heads[2] = {
        "add(self, step, value, tag='loss', count=1, epoch=None, reduction='mean')\n--\n\n",
        "add_many(self, step, values, *, count=1, epoch=None, reduction='mean')\n--\n\n",
    };
    const char *text = PyUnicode_AsUTF8(doc);
    if (text == NULL) {
        return -1;
    }
    char *full = PyMem_RawMalloc(strlen(heads[index]) + strlen(text) + 1);
    if (full == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    strcpy(full, heads[index]);
    strcat(full, text);
    WriterBase_methods[index].ml_doc = full;
    PyMem_RawFree(docs[index]);
    docs[index] = full;
    return 0;
}

/* configure(ids, converters, values_ns, default_tag, mean, sum, one, row_format, add_doc, add_many_doc) */
static PyObject *
configure(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 10) {
        PyErr_SetString(PyExc_TypeError, "configure() takes 10 arguments");
        return NULL;
    }
    if (!PyDict_Check(args[0]) || !PyDict_Check(args[1]) || !PyDict_Check(args[2]) ||
        !PyUnicode_Check(args[3]) || !PyUnicode_Check(args[4]) || !PyUnicode_Check(args[5]) ||
        !PyUnicode_Check(args[7]) || !PyUnicode_Check(args[8]) || !PyUnicode_Check(args[9])) {
        PyErr_SetString(PyExc_TypeError, "configure(): wrong argument types");
        return NULL;
    }
    if (PyUnicode_CompareWithASCIIString(args[7], "<qddqqiB") != 0) {
        PyErr_Format(PyExc_ImportError, "lossfmt._fastadd packs rows as <qddqqiB, not %U", args[7]);
        return NULL;
    }
    if (set_doc(0, args[8]) < 0 || set_doc(1, args[9]) < 0) {
        return NULL;
    }
    PyObject **slots[] = {&tag_ids, &converters, &values_ns, &default_tag, &mean_str, &sum_str, &one};
    for (int i = 0; i < 7; i++) {
        Py_INCREF(args[i]);
        Py_XSETREF(*slots[i], args[i]);
    }
    Py_RETURN_NONE;
}

/* transpose_rows(rows, n): the first n rows of the list, column by column: n steps, values, times, counts,
 * epochs (8 bytes each), n tag ids (4 bytes), n flags (1 byte), in the order of the row's fields. TypeError
 * if one is not a packed row (a deferred value's tuple: the caller splits those out). The GIL is held
 * throughout, so rows appended meanwhile by other threads cannot interfere. */
static PyObject *
transpose_rows(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    static const int offsets[] = {0, 8, 16, 24, 32, 40, 44, ROW_SIZE};
    if (nargs != 2 || !PyList_CheckExact(args[0]) || !PyLong_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "transpose_rows(rows: list, n: int)");
        return NULL;
    }
    PyObject *rows = args[0];
    Py_ssize_t n = PyLong_AsSsize_t(args[1]);
    if (n == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (n < 0 || n > PyList_GET_SIZE(rows) || n > PY_SSIZE_T_MAX / ROW_SIZE) {
        PyErr_SetString(PyExc_ValueError, "transpose_rows: n out of range");
        return NULL;
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, n * ROW_SIZE);
    if (out == NULL) {
        return NULL;
    }
    char *base = PyBytes_AS_STRING(out);
    char *columns[7];
    for (int f = 0; f < 7; f++) {
        columns[f] = base + n * offsets[f]; /* a column of n fields starts where n rows' earlier fields end */
    }
    for (Py_ssize_t i = 0; i < n; i++) { /* one pass over the rows (scattered in memory), seven outputs */
        PyObject *row = PyList_GET_ITEM(rows, i);
        if (!PyBytes_CheckExact(row) || PyBytes_GET_SIZE(row) != ROW_SIZE) {
            Py_DECREF(out);
            PyErr_SetString(PyExc_TypeError, "transpose_rows: not a packed row");
            return NULL;
        }
        const char *p = PyBytes_AS_STRING(row);
        memcpy(columns[0] + 8 * i, p, 8);
        memcpy(columns[1] + 8 * i, p + 8, 8);
        memcpy(columns[2] + 8 * i, p + 16, 8);
        memcpy(columns[3] + 8 * i, p + 24, 8);
        memcpy(columns[4] + 8 * i, p + 32, 8);
        memcpy(columns[5] + 4 * i, p + 40, 4);
        columns[6][i] = p[44];
    }
    return out;
}

static PyMethodDef module_methods[] = {
    {"transpose_rows", (PyCFunction)(void (*)(void))transpose_rows, METH_FASTCALL,
     "The first n packed rows of a list as one bytes object, column by column."},
    {"configure", (PyCFunction)(void (*)(void))configure, METH_FASTCALL,
     "Hand the extension the objects of lossfmt._rows and lossfmt._values it reads; fast path on."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "lossfmt._fastadd",
    .m_doc = "The compiled fast path of LossWriter.add() (see lossfmt/_compiled.py).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__fastadd(void)
{
    static const char *names[MAX_ARGS] = {"step", "value", "tag", "count", "epoch", "reduction"};
    for (int i = 0; i < MAX_ARGS; i++) {
        keywords[i] = PyUnicode_InternFromString(names[i]);
        if (keywords[i] == NULL) {
            return NULL;
        }
    }
    if ((s_tensor = PyUnicode_InternFromString("TENSOR")) == NULL ||
        (s_is_cpu = PyUnicode_InternFromString("is_cpu")) == NULL ||
        (s_item = PyUnicode_InternFromString("item")) == NULL ||
        (s_add_py = PyUnicode_InternFromString("_add_py")) == NULL ||
        (s_add_many_py = PyUnicode_InternFromString("_add_many_py")) == NULL ||
        (s_wake = PyUnicode_InternFromString("_wake")) == NULL ||
        (s_added_while_closing = PyUnicode_InternFromString("_added_while_closing")) == NULL) {
        return NULL;
    }
    if (PyType_Ready(&WriterBaseType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&WriterBaseType);
    if (PyModule_AddObject(module, "WriterBase", (PyObject *)&WriterBaseType) < 0) {
        Py_DECREF(&WriterBaseType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
