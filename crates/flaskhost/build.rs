//! The binary links libpython (through flaskhost-python), statically when it can.
//!
//! **Static** (the default when the interpreter pyo3 builds against, PYO3_PYTHON else python3,
//! ships `libpythonX.Y.a` in its `LIBPL` directory, as pyenv's and python.org's builds do):
//! the archive is linked whole into the binary and its `Py*`/`_Py*` symbols are exported, so
//! extension modules loaded at run time find them, as they do in a statically linked
//! `python3` (Debian's is one). The reason is speed: a shared libpython built without
//! `-fno-semantic-interposition` (pyenv's default) calls its own functions through the PLT,
//! reads its globals through the GOT and its thread state through `__tls_get_addr`; linked
//! into an executable all of that is resolved at link time. A worker then spends ~12% less CPU
//! per Flask request (bench/RESULTS.md). pyo3's own `-lpythonX.Y` stays on the link line but
//! resolves nothing, so `--as-needed` drops it: the binary does not load libpython.so at all.
//!
//! **Shared** (`FLASKHOST_LIBPYTHON=shared`, or no archive): pyo3's link line, with libpython's
//! directory in RUNPATH so the binary starts without LD_LIBRARY_PATH.
//!
//! The interpreter is asked directly, so this crate needs no pyo3 dependency of its own (only
//! flaskhost-python has one). It also packs the binary's relative relocations (see
//! `pack_relative_relocs`).

use std::process::Command;

fn main() {
    pack_relative_relocs();
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    println!("cargo:rerun-if-env-changed=FLASKHOST_LIBPYTHON");
    let python = std::env::var("PYO3_PYTHON").unwrap_or_else(|_| "python3".into());
    let want = std::env::var("FLASKHOST_LIBPYTHON").unwrap_or_default();
    if !matches!(want.as_str(), "" | "static" | "shared") {
        panic!("FLASKHOST_LIBPYTHON must be `static` or `shared`, not {want:?}");
    }
    let Some(vars) = ask(&python) else {
        println!(
            "cargo:warning=could not ask {python} for its sysconfig; set LD_LIBRARY_PATH at run time"
        );
        return;
    };
    let archive = std::path::Path::new(&vars.libpl).join(&vars.library);
    let have_archive = vars.library.ends_with(".a") && archive.is_file();
    if want == "static" && !have_archive {
        panic!(
            "FLASKHOST_LIBPYTHON=static, but {python} has no static libpython ({} not found)",
            archive.display()
        );
    }
    if want != "shared" && have_archive {
        println!("cargo:rerun-if-changed={}", archive.display());
        println!("cargo:rustc-link-arg-bins=-Wl,--whole-archive");
        println!("cargo:rustc-link-arg-bins={}", archive.display());
        println!("cargo:rustc-link-arg-bins=-Wl,--no-whole-archive");
        println!("cargo:rustc-link-arg-bins=-Wl,--export-dynamic-symbol=Py*");
        println!("cargo:rustc-link-arg-bins=-Wl,--export-dynamic-symbol=_Py*");
        // What libpython itself links (-ldl -lm -lutil, and the libraries of any module built
        // into it).
        for flag in vars.libs.split_whitespace() {
            if flag.starts_with("-l") {
                println!("cargo:rustc-link-arg-bins={flag}");
            }
        }
    }
    // Always: the bins' test targets and a shared build load libpython.so from here.
    if !vars.libdir.is_empty() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", vars.libdir);
    }
}

/// What the build needs to know about the interpreter.
struct Vars {
    libdir: String,
    libpl: String,
    library: String,
    libs: String,
}

fn ask(python: &str) -> Option<Vars> {
    let out = Command::new(python)
        .args([
            "-c",
            "import sysconfig as s\n\
             for k in ('LIBDIR', 'LIBPL', 'LIBRARY'): print(s.get_config_var(k) or '')\n\
             print(' '.join(filter(None, (s.get_config_var(k) for k in ('LIBS', 'SYSLIBS', 'MODLIBS')))))",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines().map(|l| l.trim().to_string());
    Some(Vars {
        libdir: lines.next()?,
        libpl: lines.next()?,
        library: lines.next()?,
        libs: lines.next().unwrap_or_default(),
    })
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
