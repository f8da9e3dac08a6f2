"""The example Flask app (examples/app) served by flaskhost, route by route, as a browser would
use it. One worker, because the guestbook lives in the worker's memory."""

import re

import pytest
import requests

from fhtest import EXAMPLE_APP, HTTP_TIMEOUT, build_python


@pytest.fixture(scope="module", params=["wsgi:application", "wsgi:create_app()"],
                ids=["application", "factory"])
def site(module_serve, request):
    return module_serve(request.param, chdir=EXAMPLE_APP, workers=1, threads=2)


def static_links(html):
    return re.findall(r'(?:href|src)="(/static/[^"]+)"', html)


def test_index_renders_template_with_static_links(site):
    r = site.get("/")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/html")
    assert "<h1>flaskhost example</h1>" in r.text
    links = static_links(r.text)
    assert set(links) == {"/static/style.css", "/static/app.js", "/static/favicon.ico"}


@pytest.mark.parametrize("path,content_type,needle", [
    ("/static/style.css", "text/css", b"font-family"),
    ("/static/app.js", "javascript", b"DOMContentLoaded"),
    ("/static/robots.txt", "text/plain", b"User-agent"),
    ("/static/favicon.ico", "icon", b"\x00\x00\x01\x00"),
    ("/favicon.ico", "icon", b"\x00\x00\x01\x00"),
    ("/robots.txt", "text/plain", b"Disallow: /api/"),
])
def test_static_files(site, path, content_type, needle):
    r = site.get(path)
    assert r.status_code == 200
    assert content_type in r.headers["Content-Type"]
    assert needle in r.content
    assert int(r.headers["Content-Length"]) == len(r.content)


def test_static_conditional_get(site):
    r = site.get("/static/style.css")
    etag = r.headers.get("ETag")
    assert etag
    again = site.get("/static/style.css", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""


def test_guestbook_post_redirect_get(site):
    with requests.Session() as browser:
        form = browser.get(site.url + "/guestbook", timeout=HTTP_TIMEOUT)
        assert form.status_code == 200
        assert '<form method="post" action="/guestbook">' in form.text
        posted = browser.post(site.url + "/guestbook",
                              data={"name": "Ada", "message": "Hello <flaskhost> & co"},
                              allow_redirects=False, timeout=HTTP_TIMEOUT)
        assert posted.status_code == 303
        assert posted.headers["Location"] in ("/guestbook", site.url + "/guestbook")
        page = browser.get(site.url + "/guestbook", timeout=HTTP_TIMEOUT)
    assert page.status_code == 200
    assert "<strong>Ada</strong>" in page.text
    assert "Hello &lt;flaskhost&gt; &amp; co" in page.text  # Jinja autoescaping
    assert site.get("/api/status").json()["entries"] >= 1


def test_guestbook_follow_redirect_becomes_get(site):
    r = requests.post(site.url + "/guestbook", data={"name": "Bob", "message": "via redirect"},
                      timeout=HTTP_TIMEOUT)
    assert r.status_code == 200
    assert [h.status_code for h in r.history] == [303]
    assert r.request.method == "GET"
    assert "via redirect" in r.text


def test_guestbook_rejects_empty_message(site):
    r = site.post("/guestbook", data={"name": "Eve", "message": "   "}, allow_redirects=False)
    assert r.status_code == 400
    assert "Please write a message." in r.text


def test_api_status_json(site):
    r = site.get("/api/status")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    data = r.json()
    assert data["status"] == "ok"
    assert tuple(map(int, data["python"].split(".")[:2])) == build_python()
    assert data["multithread"] is True
    assert data["script_name"] == ""


def test_redirect(site):
    r = site.get("/home", allow_redirects=False)
    assert r.status_code == 301
    assert r.headers["Location"] in ("/", site.url + "/")
    assert site.get("/home").url == site.url + "/"


def test_stream(site):
    r = requests.get(site.url + "/stream", params={"lines": 50}, stream=True,
                     timeout=HTTP_TIMEOUT)
    assert r.status_code == 200
    assert r.headers.get("Transfer-Encoding") == "chunked"
    lines = list(r.iter_lines())
    assert len(lines) == 50
    assert lines[0] == b"line 1 of 50 (/stream)"
    assert lines[-1] == b"line 50 of 50 (/stream)"


def test_not_found_page(site):
    r = site.get("/no/such/page")
    assert r.status_code == 404
    assert "Not found" in r.text


def test_mounted_under_script_name(serve):
    server = serve("wsgi:application", "--script-name", "/app", chdir=EXAMPLE_APP)
    r = server.get("/app/")
    assert r.status_code == 200
    assert "/app/static/style.css" in r.text
    assert server.get("/app/static/style.css").status_code == 200
    assert server.get("/app/api/status").json()["script_name"] == "/app"
    posted = server.post("/app/guestbook", data={"message": "mounted"}, allow_redirects=False)
    assert posted.status_code == 303
    assert posted.headers["Location"].endswith("/app/guestbook")
