"""Serves a real file through environ['wsgi.file_wrapper'].

``?path=`` is the file; ``?kind=bytesio`` serves its bytes from an io.BytesIO instead (the
wrapper must accept any object with read()); ``?marker=`` is a file written when the served
file-like object is closed (the server must close it, via the wrapper's close()).
``application`` is validated (the validator hides the wrapper object from the server);
``raw_application`` is not, so the server sees its own wrapper and may take a fast path.
"""

import io

from _wsgitest import query, validated, write_marker


class MarkedFile(io.FileIO):
    marker = None

    def close(self):
        if not self.closed:
            write_marker(self.marker)
        super().close()


class MarkedBytesIO(io.BytesIO):
    marker = None

    def close(self):
        if not self.closed:
            write_marker(self.marker)
        super().close()


def file_wrapper(environ, start_response):
    q = query(environ)
    path = q["path"]
    if q.get("kind") == "bytesio":
        with open(path, "rb") as f:
            filelike = MarkedBytesIO(f.read())
    else:
        filelike = MarkedFile(path, "rb")
    filelike.marker = q.get("marker")
    headers = [("Content-Type", "application/octet-stream")]
    if q.get("cl") == "1":
        import os
        headers.append(("Content-Length", str(os.path.getsize(path))))
    start_response("200 OK", headers)
    return environ["wsgi.file_wrapper"](filelike, 32768)


application = validated(file_wrapper)
raw_application = file_wrapper
