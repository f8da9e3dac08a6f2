//! The architecture invariants about dependencies, checked against `cargo metadata`:
//! only flaskhost-python links pyo3, and the crates of the front and the pool never depend on
//! the crates that run Python, directly or through another workspace crate.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

fn workspace_deps() -> BTreeMap<String, BTreeSet<String>> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let mut map = BTreeMap::new();
    for pkg in meta["packages"].as_array().expect("packages") {
        let name = pkg["name"].as_str().expect("name").to_string();
        let deps = pkg["dependencies"]
            .as_array()
            .expect("dependencies")
            .iter()
            // Build-time and test-only dependencies do not end up in what the crate runs.
            .filter(|d| d["kind"].is_null())
            .map(|d| d["name"].as_str().expect("dep name").to_string())
            .collect();
        map.insert(name, deps);
    }
    map
}

/// Every dependency of `krate`, following workspace crates transitively.
fn closure(map: &BTreeMap<String, BTreeSet<String>>, krate: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![krate.to_string()];
    while let Some(k) = todo.pop() {
        for d in map.get(&k).into_iter().flatten() {
            if seen.insert(d.clone()) && map.contains_key(d) {
                todo.push(d.clone());
            }
        }
    }
    seen
}

#[test]
fn only_flaskhost_python_depends_on_pyo3() {
    let map = workspace_deps();
    for (krate, deps) in &map {
        let direct: Vec<_> = deps.iter().filter(|d| d.starts_with("pyo3")).collect();
        if krate == "flaskhost-python" {
            assert!(
                !direct.is_empty(),
                "flaskhost-python should be the crate that uses pyo3"
            );
        } else {
            assert!(
                direct.is_empty(),
                "{krate} depends on {direct:?}; only flaskhost-python may"
            );
        }
    }
}

#[test]
fn front_pool_ipc_config_never_reach_python() {
    let map = workspace_deps();
    // The graph is really read: the binary does reach Python.
    assert!(
        closure(&map, "flaskhost").contains("pyo3"),
        "dependency graph looks empty"
    );
    for krate in [
        "flaskhost-front",
        "flaskhost-pool",
        "flaskhost-ipc",
        "flaskhost-config",
        "flaskhost-telemetry",
    ] {
        let all = closure(&map, krate);
        for forbidden in ["flaskhost-python", "flaskhost-worker", "pyo3", "pyo3-ffi"] {
            assert!(!all.contains(forbidden), "{krate} reaches {forbidden}");
        }
    }
}

#[test]
fn only_ipc_and_config_use_serde_or_define_the_wire() {
    let map = workspace_deps();
    for (krate, deps) in &map {
        if deps.contains("serde") {
            assert_eq!(
                krate, "flaskhost-config",
                "{krate} uses serde; wire and serialised types live in flaskhost-ipc and flaskhost-config"
            );
        }
    }
}
