fn main() {
    // Tests of this crate link libpython: put its directory in RUNPATH so they run without
    // LD_LIBRARY_PATH (the binary's own build.rs does the same for the binary).
    pyo3_build_config::add_libpython_rpath_link_args();
    // The interpreter this build is tied to. With no virtualenv, the worker initialises Python
    // as if it were this executable, so the standard library is found where it was built.
    let cfg = pyo3_build_config::get();
    if let Some(exe) = cfg.executable() {
        println!("cargo:rustc-env=FLASKHOST_BUILD_PYTHON={exe}");
    } else {
        println!("cargo:rustc-env=FLASKHOST_BUILD_PYTHON=");
    }
    println!(
        "cargo:rustc-env=FLASKHOST_BUILD_PYTHON_VERSION={}.{}",
        cfg.version().major,
        cfg.version().minor
    );
    println!("cargo:rerun-if-changed=../../python/flaskhost_boot.py");
}
