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
    // Immortal objects as src/immortal.rs writes them: CPython 3.12 and 3.13 (PEP 683), with
    // the GIL, 64-bit. 3.14 changed the representation; 3.11 has none.
    println!("cargo::rustc-check-cfg=cfg(immortal_objects)");
    let minor = cfg.version().minor;
    if cfg.version().major == 3
        && (12..14).contains(&minor)
        && !cfg.is_free_threaded()
        && std::env::var("CARGO_CFG_TARGET_POINTER_WIDTH").as_deref() == Ok("64")
    {
        println!("cargo:rustc-cfg=immortal_objects");
    }
    println!("cargo:rerun-if-changed=../../python/flaskhost_boot.py");
}
