"""Configuration: flags, FLASKHOST_* variables and a TOML file (--config), merged with the
precedence defaults < file < env < flags and validated before anything binds: a bad option
exits 64 (EX_USAGE) naming the option, and nothing listens or starts."""

import re

import pytest

from fhtest import APPS, EX_USAGE, LISTENING_RE, WORKER_STARTED_RE

BASE = ["serve", "--chdir", str(APPS), "--bind", "127.0.0.1:0"]


def assert_usage_error(server, *names):
    out = server.output()
    assert server.returncode == EX_USAGE, (
        f"exit code {server.returncode}, expected {EX_USAGE}; output:\n{out}")
    for name in names:
        variants = {name, name.replace("-", "_"), name.replace("-", " ")}
        assert any(v.lower() in out.lower() for v in variants), (
            f"the error does not name {name!r}:\n{out}")
    assert not any(LISTENING_RE.search(line) for line in server.lines())
    assert not any(WORKER_STARTED_RE.search(line) for line in server.lines()), (
        "workers were started before the configuration was validated")


def test_serve_help_lists_every_option(run_flaskhost):
    server = run_flaskhost("serve", "--help")
    assert server.returncode == 0, server.output()
    text = server.output()
    for flag in ["--app", "--chdir", "--bind", "--workers", "--threads", "--lazy-apps", "--venv",
                 "--queue-size", "--queue-timeout", "--timeout", "--graceful-timeout",
                 "--post-buffering", "--max-body-size", "--script-name", "--socket-mode",
                 "--log-level", "--config"]:
        assert flag in text, f"{flag} missing from serve --help"


def test_unknown_key_in_config_file(run_flaskhost, tmp_path):
    config = tmp_path / "flaskhost.toml"
    config.write_text("wrokers = 2\n")
    server = run_flaskhost(*BASE, "--app", "hello:application", "--config", config)
    assert_usage_error(server, "wrokers")


def test_unknown_environment_variable(run_flaskhost):
    server = run_flaskhost(*BASE, "--app", "hello:application",
                           env={"FLASKHOST_WROKERS": "2"})
    assert_usage_error(server, "FLASKHOST_WROKERS")


@pytest.mark.parametrize("source,setting,name", [
    ("env", ("FLASKHOST_WORKERS", "abc"), "workers"),
    ("env", ("FLASKHOST_QUEUE_SIZE", "-1"), "queue"),
    ("env", ("FLASKHOST_TIMEOUT", "soon"), "timeout"),
    ("file", 'workers = "abc"', "workers"),
    ("file", "threads = 0", "threads"),
    ("file", 'queue-timeout = "forever"', "queue-timeout"),
    ("flag", ("--workers", "abc"), "workers"),
    ("flag", ("--workers", "0"), "workers"),
    ("flag", ("--timeout", "banana"), "timeout"),
    ("flag", ("--bind", "not-an-address"), "bind"),
    ("flag", ("--socket-mode", "999"), "socket-mode"),
    ("flag", ("--max-body-size", "lots"), "max-body-size"),
], ids=lambda v: re.sub(r"[^A-Za-z0-9]+", "-", v if isinstance(v, str) else "=".join(v))
    .strip("-").lower())
def test_bad_value_is_usage_error(run_flaskhost, tmp_path, source, setting, name):
    args = [*BASE, "--app", "hello:application"]
    env = {}
    if source == "env":
        env[setting[0]] = setting[1]
    elif source == "file":
        config = tmp_path / "flaskhost.toml"
        config.write_text(setting + "\n")
        args += ["--config", config]
    else:
        args += list(setting)
    server = run_flaskhost(*args, env=env)
    assert_usage_error(server, name)


def test_missing_app_is_usage_error(run_flaskhost):
    server = run_flaskhost(*BASE)
    assert_usage_error(server, "app")


def test_missing_config_file(run_flaskhost, tmp_path):
    missing = tmp_path / "nope.toml"
    server = run_flaskhost(*BASE, "--app", "hello:application", "--config", missing)
    assert server.returncode not in (0, None)
    assert "nope.toml" in server.output()
    assert not any(LISTENING_RE.search(line) for line in server.lines())


# ---- precedence: defaults < file < env < flags --------------------------------------------------
@pytest.mark.parametrize("file_workers,env_workers,flag_workers,expected", [
    (3, None, None, 3),
    (3, 2, None, 2),
    (3, 2, 1, 1),
    (None, 2, None, 2),
], ids=["file", "env-over-file", "flag-over-env", "env-only"])
def test_workers_precedence(serve, tmp_path, file_workers, env_workers, flag_workers, expected):
    config = tmp_path / "flaskhost.toml"
    config.write_text(f"workers = {file_workers}\n" if file_workers else "")
    env = {"FLASKHOST_WORKERS": str(env_workers)} if env_workers else {}
    server = serve("environ_echo:application", workers=flag_workers, config=config, env=env)
    workers = server.wait_for_workers(expected)
    assert len(workers) == expected
    pids = set()
    # Every request goes to one of exactly `expected` processes.
    for _ in range(4 * expected):
        pids.add(server.get("/").json()["_pid"])
    assert pids <= {w["pid"] for w in workers}
    assert len(server.workers()) == expected, "more workers than configured"


@pytest.mark.parametrize("file_threads,env_threads,flag_threads,multithread", [
    (4, None, None, True),
    (4, 1, None, False),
    (1, 4, None, True),
    (4, 4, 1, False),
    (None, 1, 4, True),
], ids=["file", "env-over-file", "env-over-file-2", "flag-over-env", "flag-over-env-2"])
def test_threads_precedence(serve, tmp_path, file_threads, env_threads, flag_threads,
                            multithread):
    config = tmp_path / "flaskhost.toml"
    config.write_text(f"threads = {file_threads}\n" if file_threads else "")
    env = {"FLASKHOST_THREADS": str(env_threads)} if env_threads else {}
    server = serve("environ_echo:application", threads=flag_threads, config=config, env=env)
    assert server.get("/").json()["wsgi.multithread"] is multithread


def test_app_and_chdir_from_config_file(serve, tmp_path):
    config = tmp_path / "flaskhost.toml"
    config.write_text(f'app = "hello:application"\nchdir = "{APPS}"\nworkers = 1\n')
    server = serve(None, chdir=None, workers=None, config=config)
    assert server.get("/").content == b"Hello, World!\n"


def test_app_from_environment(serve):
    server = serve(None, env={"FLASKHOST_APP": "hello:application"})
    assert server.get("/").content == b"Hello, World!\n"


def test_duration_and_size_forms_accepted(serve, tmp_path):
    config = tmp_path / "flaskhost.toml"
    config.write_text('timeout = "5s"\ngraceful-timeout = 3\nqueue-timeout = "500ms"\n'
                      "queue-size = 8\npost-buffering = 65536\nmax-body-size = 1048576\n")
    server = serve("hello:application", "--timeout", "2500ms", "--queue-timeout", "2",
                   config=config, env={"FLASKHOST_GRACEFUL_TIMEOUT": "4s"})
    assert server.get("/").status_code == 200


def test_log_level_flag_accepted(serve):
    server = serve("hello:application", "--log-level", "debug")
    assert server.get("/").status_code == 200
