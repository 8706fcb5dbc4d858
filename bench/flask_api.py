#!/usr/bin/env python3
"""The seeds' stack for bench/api_bench: a Flask app serving GET /models and GET /health with the
JSON of docs/api.md, for a registry of N fake models (all stopped).

The seeds' inference service is a Flask app run by Flask's own server (`app.run(...,
threaded=True)`); this is that stack doing the same work as mlkeeper's model API without the
`systemctl` calls the seeds make per request (so it is faster than the seeds' service, never
slower): each GET /models takes the registry lock and builds every model's object, as a service
whose models change state must.

  python3 bench/flask_api.py --port 5002 --models 16            # Flask's server, threaded
  gunicorn --chdir bench -b 127.0.0.1:5002 'flask_api:create_app()'  # FLASK_API_MODELS=16

Needs Flask (Debian: python3-flask); gunicorn is optional (Debian: gunicorn).
"""

import argparse
import datetime
import logging
import os
import platform
import threading
import time

from flask import Flask, jsonify

try:
    from importlib.metadata import version as _dist_version
except ImportError:  # Python < 3.8
    _dist_version = None


def _version(dist):
    try:
        return _dist_version(dist) if _dist_version else "?"
    except Exception:  # not installed as a distribution
        return "?"


def _rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Model:
    """One registry entry: the fields of the API's model object."""

    def __init__(self, name, since):
        self.name = name
        self.backend = "process"
        self.state = "stopped"
        self.pinned = False
        self.port = None
        self.pid = None
        self.since = since
        self.restarts = 0
        self.last_error = None
        self.health_url = None

    def to_json(self):
        return {
            "name": self.name,
            "backend": self.backend,
            "state": self.state,
            "pinned": self.pinned,
            "port": self.port,
            "pid": self.pid,
            "since": _rfc3339(self.since),
            "restarts": self.restarts,
            "last_error": self.last_error,
            "health_url": self.health_url,
        }


def create_app(models=None, quiet=False):
    """The app with `models` fake models m01, m02, ... (default $FLASK_API_MODELS or 16)."""
    n = int(os.environ.get("FLASK_API_MODELS", "16")) if models is None else models
    started = time.time()
    registry = {f"m{i:02d}": Model(f"m{i:02d}", started) for i in range(1, n + 1)}
    lock = threading.Lock()
    # Looked up once: importlib.metadata scans the installed distributions on every call.
    versions = {"flask": _version("flask"), "werkzeug": _version("werkzeug"), "python": platform.python_version()}
    app = Flask("flask_api")
    if quiet:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)

    @app.get("/models")
    def list_models():
        with lock:
            body = [registry[k].to_json() for k in sorted(registry)]
        return jsonify({"models": body})

    @app.get("/health")
    def health():
        return jsonify({
            "status": "ok",
            "version": versions["flask"],
            "uptime_seconds": round(time.time() - started, 1),
            "listener": "models",
            "parts": versions,
        })

    return app


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5002)
    ap.add_argument("--models", type=int, default=16, help="fake models m01..mNN (default 16)")
    ap.add_argument("--quiet", action="store_true",
                    help="no request log line on stderr (Flask's server logs every request by default)")
    args = ap.parse_args()
    if args.models < 0 or args.models > 99:
        ap.error("--models must be 0..99")
    create_app(args.models, args.quiet).run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()
