//! The binary links libpython (through flaskhost-python). Put libpython's directory in
//! RUNPATH so the binary starts without LD_LIBRARY_PATH. The directory comes from the same
//! interpreter pyo3 builds against (PYO3_PYTHON, else python3), asked directly, so this
//! crate needs no pyo3 dependency of its own (only flaskhost-python has one).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    let python = std::env::var("PYO3_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_config_var('LIBDIR') or '')",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let dir = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if !dir.is_empty() {
                println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
            }
        }
        _ => println!(
            "cargo:warning=could not ask {python} for its LIBDIR; set LD_LIBRARY_PATH at run time"
        ),
    }
}
