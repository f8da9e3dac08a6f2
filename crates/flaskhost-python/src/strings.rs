//! WSGI "native strings": bytes carried as latin-1 `str`, in both directions.

use pyo3::prelude::*;
use pyo3::types::PyString;
use pyo3::{exceptions::PyValueError, ffi};

/// Bytes → `str`, one code point per byte (PEP 3333's bytes-as-latin-1).
pub(crate) fn latin1<'py>(py: Python<'py>, b: &[u8]) -> Bound<'py, PyString> {
    // SAFETY: the pointer and length describe a valid byte slice; latin-1 decoding cannot
    // fail, so a NULL result means out of memory, which `from_owned_ptr` would turn into a
    // panic — we check for it instead and fall back to an empty string.
    unsafe {
        let ptr = ffi::PyUnicode_DecodeLatin1(
            b.as_ptr().cast(),
            b.len() as ffi::Py_ssize_t,
            std::ptr::null(),
        );
        if ptr.is_null() {
            ffi::PyErr_Clear();
            return PyString::new(py, "");
        }
        Bound::from_owned_ptr(py, ptr).cast_into_unchecked()
    }
}

/// Appends the latin-1 encoding of `s` to `out`; an error names `what` when `s` has a code
/// point above U+00FF (the app sent a header that HTTP cannot carry).
pub(crate) fn push_latin1(s: &Bound<'_, PyString>, out: &mut Vec<u8>, what: &str) -> PyResult<()> {
    // `to_str` borrows CPython's cached UTF-8, which for ASCII (nearly every header) is the
    // string's own storage: no allocation.
    let utf8 = s.to_str()?;
    if utf8.is_ascii() {
        out.extend_from_slice(utf8.as_bytes());
        return Ok(());
    }
    for c in utf8.chars() {
        let c = c as u32;
        if c > 0xff {
            return Err(PyValueError::new_err(format!(
                "{what} {utf8:?} is not latin-1: WSGI header strings must hold bytes as code points 0-255"
            )));
        }
        out.push(c as u8);
    }
    Ok(())
}
