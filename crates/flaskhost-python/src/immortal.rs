//! Making the objects the app's import left alive *immortal* before the fork server forks
//! workers (CPython 3.12 and 3.13, PEP 683).
//!
//! After a fork, a worker shares the fork server's pages until it writes to them. `gc.freeze()`
//! stops the collector from writing to the shared objects, but every `Py_INCREF`/`Py_DECREF`
//! on a shared object still writes its reference count, so each worker soon owns private copies
//! of the pages that hold the objects every request touches (the app's functions, modules,
//! classes, their dicts). An immortal object's count is never written (PEP 683 made that the
//! interpreter's own rule for `None`, small ints and interned strings), so those pages stay shared.
//!
//! What changes for the app: an object alive at the fork is never deallocated in a worker,
//! even when the app drops its last reference (its memory is shared with the fork server
//! anyway, so this costs nothing); its finalizer (`__del__`, a weakref callback) does not run
//! then; `sys.getrefcount` of it shows a huge number. Objects made after the fork are ordinary.
//! The `preload-immortal` option turns this off.

use pyo3::prelude::*;

/// Whether this build's CPython has immortal objects in the representation written here.
pub const SUPPORTED: bool = cfg!(immortal_objects);

/// What [`immortalize`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Immortalized {
    /// Objects made immortal.
    pub objects: usize,
    /// Objects the collector tracks, the roots of the walk.
    pub tracked: usize,
}

/// Makes every object the collector tracks immortal, and every object they reference that was
/// not already: strings, numbers and the untracked tuples and dicts the collector never lists,
/// and through code objects their constants and names. Call it in the single-threaded fork
/// server, after the app's import and a collection, before `gc.freeze()` and the first fork.
///
/// On a CPython without immortal objects (3.11) it does nothing.
pub fn immortalize(py: Python<'_>) -> PyResult<Immortalized> {
    #[cfg(immortal_objects)]
    return imp::immortalize(py);
    #[cfg(not(immortal_objects))]
    {
        let _ = py;
        Ok(Immortalized::default())
    }
}

#[cfg(immortal_objects)]
mod imp {
    use std::ffi::{CStr, c_int, c_void};

    use pyo3::ffi;
    use pyo3::prelude::*;
    use pyo3::types::PyList;

    use super::Immortalized;

    pub(super) fn immortalize(py: Python<'_>) -> PyResult<Immortalized> {
        let roots = py.import("gc")?.call_method0("get_objects")?;
        let roots = roots.cast::<PyList>()?;
        let mut walk = Walk {
            pending: Vec::new(),
            objects: 0,
        };
        for root in roots.iter() {
            let o = root.as_ptr();
            drop(root);
            // SAFETY: `o` is kept alive by `roots`; the GIL is held and no other thread runs.
            unsafe {
                walk.mark(o);
                walk.traverse(o);
            }
        }
        while let Some(o) = walk.pending.pop() {
            // SAFETY: as above; every pending object is immortal, so it cannot go away.
            unsafe { walk.traverse(o) };
        }
        Ok(Immortalized {
            objects: walk.objects,
            tracked: roots.len(),
        })
    }

    struct Walk {
        /// Marked objects whose references are still to be visited: the containers the collector
        /// does not track (those it tracks are all roots) and code objects.
        pending: Vec<*mut ffi::PyObject>,
        objects: usize,
    }

    /// The code object fields that hold objects; those not listed are built anew on every access
    /// (`co_varnames`, `co_code`) or hold only bytes the interpreter reads without counting.
    const CODE_FIELDS: [&CStr; 5] = [
        c"co_consts",
        c"co_names",
        c"co_filename",
        c"co_name",
        c"co_qualname",
    ];

    impl Walk {
        /// # Safety
        /// `o` is a live object; the GIL is held.
        unsafe fn is_immortal(o: *mut ffi::PyObject) -> bool {
            // SAFETY: per the caller. In 3.12 and 3.13 an object is immortal when the low 32 bits
            // of its count, read as a signed number, are negative (`_Py_IsImmortal`).
            unsafe { ((*o).ob_refcnt.ob_refcnt as i32) < 0 }
        }

        /// Makes `o` immortal; true if it was not already.
        ///
        /// # Safety
        /// As [`Walk::is_immortal`].
        unsafe fn mark(&mut self, o: *mut ffi::PyObject) -> bool {
            // SAFETY: per the caller.
            unsafe {
                if Self::is_immortal(o) {
                    return false;
                }
                // `_Py_SetImmortal`: the count becomes `_Py_IMMORTAL_REFCNT` (UINT_MAX), which
                // `Py_INCREF` and `Py_DECREF` leave alone. Counts here are far below 2^32.
                (*o).ob_refcnt.ob_refcnt = u32::MAX as ffi::Py_ssize_t;
            }
            self.objects += 1;
            true
        }

        /// Visits the objects `o` references.
        ///
        /// # Safety
        /// `o` is a live object; the GIL is held.
        unsafe fn traverse(&mut self, o: *mut ffi::PyObject) {
            // SAFETY: per the caller. `tp_traverse` is what `gc.get_referents` calls: it only calls
            // `visit` on each referenced object. The attributes read from a code object are stored
            // fields, returned with a new reference that is dropped right after.
            unsafe {
                let tp = ffi::Py_TYPE(o);
                if ffi::PyType_IS_GC(tp) != 0 {
                    if let Some(traverse) = (*tp).tp_traverse {
                        traverse(o, visit, (self as *mut Walk).cast::<c_void>());
                    }
                } else if ffi::PyCode_Check(o) != 0 {
                    for name in CODE_FIELDS {
                        let v = ffi::PyObject_GetAttrString(o, name.as_ptr());
                        if v.is_null() {
                            ffi::PyErr_Clear();
                            continue;
                        }
                        self.reached(v);
                        ffi::Py_DECREF(v);
                    }
                }
            }
        }

        /// A referenced object: marked, and queued if its own references would otherwise be missed.
        ///
        /// # Safety
        /// As [`Walk::traverse`].
        unsafe fn reached(&mut self, o: *mut ffi::PyObject) {
            // SAFETY: per the caller.
            unsafe {
                if !self.mark(o) {
                    return;
                }
                let untracked_container =
                    ffi::PyObject_IS_GC(o) != 0 && ffi::PyObject_GC_IsTracked(o) == 0;
                if untracked_container || ffi::PyCode_Check(o) != 0 {
                    self.pending.push(o);
                }
            }
        }
    }

    unsafe extern "C" fn visit(o: *mut ffi::PyObject, arg: *mut c_void) -> c_int {
        // SAFETY: `arg` is the `Walk` that `traverse` passed, borrowed for the call; `o` is a live
        // object the traversed one references.
        unsafe {
            let walk = &mut *arg.cast::<Walk>();
            if !o.is_null() {
                walk.reached(o);
            }
        }
        0
    }
}
