"""The access log: one line per request (app, static files, errors, refused requests), in nginx's
`combined` format plus the request time and the app's time, or as JSON; to stdout or a file
with size-based rotation (uWSGI log-maxsize / log-backupname) and reopening on SIGHUP
(logrotate). Errors and messages stay on stderr, never in the access log."""

import json
import re
import signal

import httpx
import pytest
import requests

from fhtest import HTTP_TIMEOUT, eventually, send_raw, status_codes

COMBINED_RE = re.compile(
    r'^(?P<remote>\S+) - - \[(?P<time>\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000)\] '
    r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<bytes>\d+) "(?P<referer>[^"]*)" '
    r'"(?P<agent>[^"]*)" (?P<total>\d+\.\d{3}) (?P<app>\d+\.\d{3}|-)$')


def lines_of(path):
    return path.read_text().splitlines() if path.exists() else []


def wait_lines(path, needle, count=1):
    """Polls until ``count`` lines of the log contain ``needle``; returns them."""
    def found():
        matching = [line for line in lines_of(path) if needle in line]
        return matching[:count] if len(matching) >= count else None
    return eventually(found, timeout=10, message=f"{count} access log line(s) with {needle!r}")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("logsite")
    static = root / "static"
    static.mkdir()
    (static / "a.css").write_text("a {}\n")
    (static / "quiet.txt").write_text("q\n")
    config = root / "flaskhost.toml"
    config.write_text(f"""
static = [
  {{ url = "/static", path = "{static}" }},
  {{ url = "/quiet.txt", path = "{static / 'quiet.txt'}", access-log = false }},
]
""")
    return {"root": root, "config": config}


@pytest.fixture(scope="module")
def combined(module_serve, site):
    log = site["root"] / "access.log"
    server = module_serve("failures:application", "--access-log", log, "--max-body-size", "100",
                          "--forwarded-allow-ips", "10.9.9.9", config=site["config"])
    return server, log


def test_combined_line_for_an_app_request(combined):
    server, log = combined
    r = requests.get(server.url + "/pid?q=1&tag=%22x%22", timeout=HTTP_TIMEOUT,
                     headers={"User-Agent": 'agent "quoted"', "Referer": "https://ref.example/"})
    assert r.status_code == 200
    [line] = wait_lines(log, "GET /pid?q=1")
    m = COMBINED_RE.match(line)
    assert m, line
    assert m["remote"] == "127.0.0.1"
    assert m["request"] == "GET /pid?q=1&tag=%22x%22 HTTP/1.1"
    assert m["status"] == "200"
    assert int(m["bytes"]) == len(r.content)
    assert m["referer"] == "https://ref.example/"
    assert m["agent"] == "agent \\x22quoted\\x22"
    assert m["app"] != "-"
    assert float(m["total"]) >= float(m["app"])


def test_static_and_errors_are_logged(combined):
    server, log = combined
    assert server.get("/static/a.css").status_code == 200
    assert server.get("/static/missing.css").status_code == 404
    assert server.get("/raise").status_code == 500
    assert server.post("/big", data=b"x" * 101).status_code == 413
    data, _ = send_raw(server, b"GET /no-host HTTP/1.1\r\n\r\n")
    assert status_codes(data) == [400]
    expect = {
        '"GET /static/a.css HTTP/1.1" 200 5 ': "-",
        '"GET /static/missing.css HTTP/1.1" 404 ': "-",
        '"GET /raise HTTP/1.1" 500 ': "app",
        '"POST /big HTTP/1.1" 413 ': None,
        '"GET /no-host HTTP/1.1" 400 ': "-",
    }
    for needle, app_time in expect.items():
        [line] = wait_lines(log, needle)
        m = COMBINED_RE.match(line)
        assert m, line
        if app_time == "-":
            assert m["app"] == "-", line
        elif app_time == "app":
            assert m["app"] != "-", line


def test_access_log_off_for_a_mount(combined):
    server, log = combined
    assert server.get("/quiet.txt").status_code == 200
    assert server.get("/pid?after-quiet").status_code == 200
    wait_lines(log, "/pid?after-quiet")
    assert not any("/quiet.txt" in l for l in lines_of(log))


def test_forwarded_client_is_logged(combined):
    server, log = combined
    # 127.0.0.1 is not trusted here: the header is ignored.
    server.get("/pid?untrusted", headers={"X-Forwarded-For": "203.0.113.50"})
    [line] = wait_lines(log, "/pid?untrusted")
    assert line.startswith("127.0.0.1 ")


def test_errors_stay_out_of_the_access_log(combined):
    server, log = combined
    assert server.get("/raise?errors-check").status_code == 500
    wait_lines(log, "/raise?errors-check")
    server.wait_for_line("Traceback")
    assert not any("Traceback" in l or "RuntimeError" in l for l in lines_of(log))


def test_json_lines_to_stdout(serve):
    server = serve("hello:application", "--access-log", "stdout", "--access-log-format", "json",
                   "--forwarded-allow-ips", "127.0.0.1")
    requests.get(server.url + "/j?x=1", headers={"X-Forwarded-For": "198.51.100.3"}, timeout=HTTP_TIMEOUT)
    with httpx.Client(http1=False, http2=True, timeout=30) as c:
        c.get(server.url + "/h2")
    line = server.wait_for_line(r'^\{.*"uri":"/j\?x=1"').string
    entry = json.loads(line)
    assert entry["remote_addr"] == "198.51.100.3"
    assert entry["method"] == "GET" and entry["status"] == 200 and entry["protocol"] == "HTTP/1.1"
    assert entry["bytes_sent"] == len(b"Hello, World!\n")
    assert entry["request_time"] >= entry["app_time"] >= 0
    assert re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$", entry["time"])
    assert entry["referer"] is None
    h2 = json.loads(server.wait_for_line(r'^\{.*"uri":"/h2"').string)
    assert h2["protocol"] == "HTTP/2.0"


def test_size_based_rotation(serve, tmp_path):
    log = tmp_path / "access.log"
    backup = tmp_path / "access.log.bak"
    server = serve("hello:application", "--access-log", log, "--access-log-max-size", "2k",
                   "--access-log-backup", backup)
    n = 0
    with requests.Session() as s:
        while not backup.exists() and n < 200:
            s.get(server.url + f"/rotate-{n:03d}", timeout=HTTP_TIMEOUT)
            n += 1
        assert backup.exists(), "no rotation after 200 requests"
        s.get(server.url + "/after-rotation", timeout=HTTP_TIMEOUT)
    wait_lines(log, "/after-rotation")
    assert backup.stat().st_size >= 2048
    assert log.stat().st_size < 2048
    assert "/rotate-000" in backup.read_text()


def test_default_backup_name(serve, tmp_path):
    log = tmp_path / "a.log"
    server = serve("hello:application", "--access-log", log, "--access-log-max-size", "1k")
    with requests.Session() as s:
        for n in range(20):
            s.get(server.url + f"/r{n}", timeout=HTTP_TIMEOUT)
    eventually(lambda: (tmp_path / "a.log.1").exists(), timeout=10, message="a.log.1")


def test_sighup_reopens_the_file_for_logrotate(serve, tmp_path):
    log = tmp_path / "access.log"
    server = serve("hello:application", "--access-log", log)
    server.get("/before-rotate")
    wait_lines(log, "/before-rotate")
    moved = tmp_path / "access.log.2024"
    log.rename(moved)
    start = len(server.lines())
    server.send_signal(signal.SIGHUP)
    server.wait_for_line("SIGHUP", start=start)
    # Lines keep going to the moved file until the writer has reopened; poll until a request
    # lands in the new file.
    eventually(lambda: server.get("/after-rotate").ok and "/after-rotate" in "".join(lines_of(log)),
               timeout=10, message="a line in the reopened file")
    assert "/before-rotate" in moved.read_text()
    assert "/before-rotate" not in log.read_text()


def test_unwritable_log_fails_startup(run_flaskhost, tmp_path):
    from fhtest import APPS
    proc = run_flaskhost("serve", "--app", "hello:application", "--chdir", APPS, "--bind",
                         "127.0.0.1:0", "--workers", "1", "--access-log", tmp_path / "no" / "dir" / "a.log")
    assert proc.returncode == 64, proc.output()
    assert "access log" in proc.output()
