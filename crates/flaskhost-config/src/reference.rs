//! The option reference in Markdown, generated from [`OPTIONS`] and checked in as
//! `OPTIONS.md` (a test fails when the two differ).

use std::fmt::Write as _;

use crate::load::{CONFIG_ENV_VAR, DEFAULT_CONFIG_FILE, IGNORED_ENV_VARS};
use crate::options::OPTIONS;

/// The reference of every option as a Markdown document: how sources combine, a table with
/// each option's key, flag, environment variable, default, meaning, example and
/// nginx/uWSGI/gunicorn equivalent, and the value syntaxes.
#[must_use]
pub fn reference_markdown() -> String {
    let mut out = String::new();
    out.push_str(
        "# flaskhost options\n\
         \n\
         <!-- Generated from crates/flaskhost-config/src/options.rs by \
         flaskhost_config::reference_markdown(); do not edit by hand. Regenerate with \
         `UPDATE_OPTIONS=1 cargo test -p flaskhost-config`. -->\n\
         \n\
         Every option has a built-in default and can be set in three places. Later sources override earlier ones:\n\
         \n\
         1. the built-in default;\n",
    );
    // Writing to a String cannot fail, so the results of `writeln!` are ignored below.
    let _ = writeln!(
        out,
        "2. the config file: `--config PATH`, else `${CONFIG_ENV_VAR}`, else \
         `./{DEFAULT_CONFIG_FILE}` if it exists (a file that is named but missing is an error);"
    );
    out.push_str(
        "3. environment variables `FLASKHOST_<KEY>` (the key upper-cased, `-` as `_`);\n\
         4. command-line flags `--<key>`.\n\
         \n\
         In the file, keys are kebab-case at the top level, as in the table. An unknown key \
         in the file, or an unknown `FLASKHOST_*` variable, is an error",
    );
    let ignored: Vec<String> = IGNORED_ENV_VARS
        .iter()
        .map(|var| format!("`{var}`"))
        .collect();
    let _ = writeln!(
        out,
        " (except {}, which are not options).",
        ignored.join(", ")
    );
    out.push_str(
        "\n\
         | Key | CLI flag | Environment variable | Default | Meaning | Example | nginx / uWSGI / gunicorn |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for info in OPTIONS {
        let equivalent = if info.equivalent.is_empty() {
            "—"
        } else {
            info.equivalent
        };
        let _ = writeln!(
            out,
            "| `{}` | `{}` | `{}` | {} | {} | `{}` | {} |",
            info.key,
            info.cli_flag(),
            info.env_var(),
            cell(info.default_doc),
            cell(&info.summary()),
            cell(info.example),
            cell(equivalent),
        );
    }
    out.push_str(
        "\n\
         ## Value syntax\n\
         \n\
         - **Durations**: a number of seconds (`30`, `0.5`), or numbers with units `ns`, `us`, \
         `ms`, `s`, `m`, `h`, `d`, combined: `500ms`, `30s`, `2m`, `1h`, `1m30s`, `30d`.\n\
         - **Sizes**: a number of bytes (`65536`), or with a unit `k`, `m`, `g` (also `KB`/`KiB`, \
         `MB`/`MiB`, `GB`/`GiB`, any case). Every unit is a power of 1024, as in nginx: \
         `10M` is 10485760 bytes.\n\
         - **Booleans** in the environment: `true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0`.\n\
         - **Lists** in the environment: comma-separated, e.g. \
         `FLASKHOST_BIND=127.0.0.1:8000,unix:/run/myapp.sock`, except `FLASKHOST_HEADER`, one \
         header per line (values may contain commas). In the file, a list or a single \
         string.\n\
         - **Static mounts**: `URL=PATH` (`/static=./static`), or in the file a table \
         `{ url = \"/static\", path = \"./static\", expires = \"30d\", cache-control = \
         \"public, immutable\" }`; on the command line `--static` is repeated.\n\
         - **Socket permissions**: octal; strings are read as octal (`\"660\"`), a TOML integer \
         is the mode itself (`0o660`).\n\
         - **Paths** are used as given; relative ones are relative to the directory flaskhost \
         was started in. `venv` defaults to `$VIRTUAL_ENV`.\n",
    );
    out
}

/// Makes text safe inside a table cell: a `|` would end the cell and a newline the row.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `OPTIONS.md` is what the README links to; it must be exactly the generated reference.
    /// Run with `UPDATE_OPTIONS=1` to rewrite it after changing an option.
    #[test]
    fn options_md_is_up_to_date() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("OPTIONS.md");
        let expected = reference_markdown();
        if std::env::var_os("UPDATE_OPTIONS").is_some_and(|value| value == "1") {
            std::fs::write(&path, &expected).expect("write OPTIONS.md");
            return;
        }
        let actual = std::fs::read_to_string(&path).unwrap_or_default();
        if actual != expected {
            // Show the first differing line so the failure says what changed.
            let first_difference = actual
                .lines()
                .zip(expected.lines())
                .enumerate()
                .find(|(_, (old, new))| old != new)
                .map_or_else(
                    || "the files differ in length".to_owned(),
                    |(index, (old, new))| {
                        format!(
                            "line {}:\n  checked in: {old}\n  generated:  {new}",
                            index + 1
                        )
                    },
                );
            panic!(
                "{} is out of date; regenerate it with `UPDATE_OPTIONS=1 cargo test -p \
                 flaskhost-config`\n{first_difference}",
                path.display()
            );
        }
    }

    #[test]
    fn every_option_is_a_table_row() {
        let markdown = reference_markdown();
        for info in OPTIONS {
            let row = format!(
                "| `{}` | `{}` | `{}` |",
                info.key,
                info.cli_flag(),
                info.env_var()
            );
            assert!(markdown.contains(&row), "no row for {}", info.key);
        }
        assert!(markdown.contains("| `queue-size` | `--queue-size` | `FLASKHOST_QUEUE_SIZE` |"));
        assert!(markdown.contains("nginx `client_max_body_size`"));
    }
}
