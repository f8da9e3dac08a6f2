"""A small Flask app served by flaskhost: templates, a form that posts and redirects, JSON, a
redirect, a streamed response and static files.

    flaskhost serve --chdir examples/app --app wsgi:application
    flaskhost serve --chdir examples/app --app 'wsgi:create_app()'
"""

import os
import sys
import threading
import time
from datetime import datetime, timezone

from flask import (Flask, Response, abort, jsonify, redirect, render_template, request,
                   send_from_directory, stream_with_context, url_for)

MAX_ENTRIES = 100


def create_app(title="flaskhost example"):
    """Builds the app. The guestbook lives in this process's memory: with several workers each
    one has its own (use a database for anything real)."""
    app = Flask(__name__)
    app.config["TITLE"] = title
    entries = []
    lock = threading.Lock()
    started = time.time()

    @app.context_processor
    def globals_for_templates():
        return {"title": app.config["TITLE"]}

    @app.get("/")
    def index():
        return render_template("index.html", entry_count=len(entries))

    @app.route("/guestbook", methods=["GET", "POST"])
    def guestbook():
        if request.method == "POST":
            name = request.form.get("name", "").strip() or "anonymous"
            message = request.form.get("message", "").strip()
            if not message:
                return render_template("guestbook.html", entries=entries,
                                       error="Please write a message.", name=name), 400
            with lock:
                entries.append({"name": name[:80], "message": message[:1000],
                                "at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")})
                del entries[:-MAX_ENTRIES]
            # Post/Redirect/Get: 303 makes the browser GET the page, so a reload does not post
            # the form again.
            return redirect(url_for("guestbook"), code=303)
        return render_template("guestbook.html", entries=entries, error=None, name="")

    @app.get("/api/status")
    def status():
        return jsonify(
            status="ok",
            entries=len(entries),
            pid=os.getpid(),
            uptime_seconds=round(time.time() - started, 3),
            python=sys.version.split()[0],
            script_name=request.script_root,
            multithread=request.environ.get("wsgi.multithread"),
            multiprocess=request.environ.get("wsgi.multiprocess"),
        )

    @app.get("/home")
    def old_home():
        return redirect(url_for("index"), code=301)

    @app.get("/stream")
    def stream():
        count = request.args.get("lines", 10, type=int)
        if not 0 <= count <= 10_000:
            abort(400)

        @stream_with_context
        def generate():
            for i in range(1, count + 1):
                yield f"line {i} of {count} ({request.path})\n"

        return Response(generate(), mimetype="text/plain")

    @app.get("/favicon.ico")
    def favicon():
        return send_from_directory(app.static_folder, "favicon.ico",
                                   mimetype="image/vnd.microsoft.icon")

    @app.get("/robots.txt")
    def robots():
        return send_from_directory(app.static_folder, "robots.txt", mimetype="text/plain")

    @app.errorhandler(404)
    def not_found(error):
        return render_template("404.html"), 404

    return app


application = create_app()

if __name__ == "__main__":
    application.run(debug=True)
