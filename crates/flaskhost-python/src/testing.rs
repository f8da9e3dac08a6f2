//! Hooks for this crate's tests (not part of the API): build an environ from a request frame
//! without a worker around it.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::serve::{EnvironBuilder, SlotOptions};

/// Builds the environ for the `Request` payload `frame`, runs the standard library's
/// `wsgiref.validate.check_environ` on it with warnings turned into errors, and returns the
/// `str`-valued items. Needs a started interpreter.
pub fn checked_environ(frame: &[u8], opts: SlotOptions) -> Result<Vec<(String, String)>, String> {
    Python::attach(|py| {
        let run = || -> PyResult<Vec<(String, String)>> {
            let head = flaskhost_ipc::request::decode(frame)
                .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
            let mut b = EnvironBuilder::new(py, opts)?;
            let io = py.import("io")?.call_method1(
                "BytesIO",
                (pyo3::types::PyBytes::new(py, head.inline_body),),
            )?;
            let env: Bound<'_, PyDict> = b.build(py, &head, io)?;
            let warnings = py.import("warnings")?;
            let ctx = warnings.call_method0("catch_warnings")?;
            ctx.call_method0("__enter__")?;
            warnings.call_method1("simplefilter", ("error",))?;
            let checked = py
                .import("wsgiref.validate")?
                .call_method1("check_environ", (&env,));
            ctx.call_method1("__exit__", (py.None(), py.None(), py.None()))?;
            checked?;
            let mut out = Vec::new();
            for (k, v) in env.iter() {
                if let (Ok(k), Ok(v)) = (k.extract::<String>(), v.extract::<String>()) {
                    out.push((k, v));
                } else if let Ok(k) = k.extract::<String>() {
                    out.push((k, v.repr()?.to_string()));
                }
            }
            out.sort();
            Ok(out)
        };
        run().map_err(|e| e.to_string())
    })
}
