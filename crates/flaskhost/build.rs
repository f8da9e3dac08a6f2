//! The binary links libpython (through flaskhost-python). Put libpython's directory in
//! RUNPATH so the binary starts without LD_LIBRARY_PATH. The directory comes from the same
//! interpreter pyo3 builds against (PYO3_PYTHON, else python3), asked directly, so this
//! crate needs no pyo3 dependency of its own (only flaskhost-python has one).
//!
//! It also packs the binary's relative relocations (see `pack_relative_relocs`).

use std::process::Command;

fn main() {
    pack_relative_relocs();
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

/// Links with `-z pack-relative-relocs` (DT_RELR) when building for this machine and its glibc
/// runs such binaries (2.36 and later). The binary's ~19,000 relative relocations then take
/// ~5 KiB instead of the 450 KiB of `.rela.dyn` that the dynamic linker reads, and so keeps
/// mapped, in the main process and again in the fork server (bench/pss: ~0.4 MiB less for
/// the process tree). A binary linked so needs glibc 2.36 to start (the linker records it
/// as the version `GLIBC_ABI_DT_RELR`), which the machine building it has; the binary is tied
/// to this machine's libpython anyway (RUNPATH).
fn pack_relative_relocs() {
    let host = std::env::var("HOST").unwrap_or_default();
    let target = std::env::var("TARGET").unwrap_or_default();
    if host != target || !target.ends_with("-linux-gnu") {
        return;
    }
    let Ok(out) = Command::new("getconf").arg("GNU_LIBC_VERSION").output() else {
        return;
    };
    // "glibc 2.36"
    let text = String::from_utf8_lossy(&out.stdout);
    let version: Vec<u32> = text
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split('.')
        .map_while(|p| p.parse().ok())
        .collect();
    if out.status.success() && version.len() >= 2 && (version[0], version[1]) >= (2, 36) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
