"""A loopback stand-in for API-key providers (OpenAI, Anthropic, Stripe, GitHub, Slack...).

The sandbox runs it next to OpenBao and moto, because a paid provider's API cannot run here:
it answers the same kind of request a real provider's key check answers, behind the same
verify hook a real provider is declared with, so keyshift's provider-key rotation (mint, paste,
deliver, verify, revoke, check refused) runs end to end against something real.

- ``<any method> /<provider>/<any path>`` with the key in ``Authorization`` (``Bearer``,
  ``token``) or ``x-api-key``: 200 when the key is live, 401 when it is unknown or revoked;
  Slack-style paths (``.../auth.test``) answer 200 with ``{"ok": true|false}``.
- The provider's "console", what a person does on the provider's website:
  ``POST /<provider>/console/keys`` mints a key and shows it once (like a real console);
  ``POST /<provider>/console/revoke`` with ``{"key": ...}`` or ``{"id": ...}`` revokes one;
  ``POST /<provider>/console/register`` with ``{"key": ...}`` adopts an existing value (the
  sandbox seed registers the keys it plants); ``GET /<provider>/console`` lists keys by id
  (``GET /<provider>/console/keys`` as JSON).

Keys are kept as SHA-256 digests in a 0600 state file, as a provider stores them: a restart
keeps them, and no key is ever written in the clear.

Run as ``python -m console.sandbox.provider --port N --state FILE``.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import os
import secrets
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_lock = threading.Lock()


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Keys:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, dict[str, dict[str, Any]]] = {}
        if path.is_file():
            self.data = json.loads(path.read_text() or "{}")

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(self.data, fh)
        os.replace(tmp, self.path)

    def add(self, provider: str, key: str, name: str) -> dict[str, Any]:
        with _lock:
            keys = self.data.setdefault(provider, {})
            digest = _digest(key)
            if digest not in keys:
                keys[digest] = {
                    "id": f"key_{secrets.token_hex(6)}",
                    "name": name,
                    "created": datetime.now(UTC).isoformat(timespec="seconds"),
                    "revoked": None,
                }
                self._save()
            return keys[digest]

    def live(self, provider: str, key: str) -> bool:
        with _lock:
            entry = self.data.get(provider, {}).get(_digest(key))
            return bool(entry) and not entry["revoked"]

    def revoke(self, provider: str, *, key: str | None = None, key_id: str | None = None) -> bool:
        with _lock:
            keys = self.data.get(provider, {})
            for digest, entry in keys.items():
                if (key is not None and digest == _digest(key)) or entry["id"] == key_id:
                    # microseconds: a drill verified later orders it against a delivery
                    entry["revoked"] = entry["revoked"] or datetime.now(UTC).isoformat(
                        timespec="microseconds"
                    )
                    self._save()
                    return True
            return False

    def listing(self, provider: str) -> list[dict[str, Any]]:
        with _lock:
            return [dict(e) for e in self.data.get(provider, {}).values()]


def _state(entry: dict[str, Any]) -> str:
    return f"revoked {entry['revoked']}" if entry["revoked"] else "live"


def _key_from(headers: Any) -> str | None:
    for name in ("Authorization", "x-api-key", "DD-API-KEY"):
        raw = headers.get(name)
        if raw:
            for prefix in ("Bearer ", "bearer ", "token ", "Token "):
                if raw.startswith(prefix):
                    return raw[len(prefix) :].strip()
            return raw.strip()
    return None


class Handler(BaseHTTPRequestHandler):
    keys: Keys
    server_version = "keyshift-provider-standin"

    def log_message(self, format: str, *args: Any) -> None:
        return None  # requests carry keys in headers; the stand-in logs nothing

    def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return {}
        try:
            data = json.loads(self.rfile.read(min(length, 65536)) or b"{}")
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    def _route(self) -> None:
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        if parts == ["health"]:
            self._send(200, {"ok": True})
            return
        if not parts:
            self._send(404, {"error": "name a provider: /<provider>/..."})
            return
        provider, rest = parts[0], parts[1:]
        if rest[:1] == ["console"]:
            self._console(provider, rest[1:])
            return
        key = _key_from(self.headers)
        live = bool(key) and self.keys.live(provider, key or "")
        if rest and rest[-1] == "auth.test":
            self._send(200, {"ok": live} if live else {"ok": False, "error": "invalid_auth"})
        elif live:
            self._send(200, {"object": "list", "data": []})
        else:
            self._send(401, {"error": {"message": "Incorrect API key provided."}})

    def _console(self, provider: str, rest: list[str]) -> None:
        if self.command == "GET" and not rest:
            rows = "".join(
                f"<tr><td>{html.escape(k['id'])}</td><td>{html.escape(k['name'])}</td>"
                f"<td>{k['created']}</td><td>{_state(k)}</td></tr>"
                for k in self.keys.listing(provider)
            )
            page = (
                f"<html><body><h1>{html.escape(provider)} API keys (sandbox stand-in)</h1>"
                "<p>Mint: <code>POST console/keys</code>; revoke: <code>POST console/revoke"
                "</code> with {\"id\": ...}.</p><table border=1><tr><th>id</th><th>name</th>"
                f"<th>created</th><th>state</th></tr>{rows}</table></body></html>"
            )
            self._send(200, page.encode(), "text/html; charset=utf-8")
        elif self.command == "GET" and rest == ["keys"]:
            self._send(200, self.keys.listing(provider))
        elif self.command == "POST" and rest == ["keys"]:
            body = self._body()
            key = f"sk-{provider[:6]}-{secrets.token_urlsafe(32)}"
            entry = self.keys.add(provider, key, str(body.get("name") or "minted"))
            self._send(201, {"id": entry["id"], "key": key})
        elif self.command == "POST" and rest == ["register"]:
            body = self._body()
            if not isinstance(body.get("key"), str) or not body["key"]:
                self._send(400, {"error": "give {\"key\": ...}"})
                return
            entry = self.keys.add(provider, body["key"], str(body.get("name") or "registered"))
            self._send(201, {"id": entry["id"]})
        elif self.command == "POST" and rest == ["revoke"]:
            body = self._body()
            done = self.keys.revoke(provider, key=body.get("key"), key_id=body.get("id"))
            self._send(200 if done else 404, {"revoked": done})
        else:
            self._send(404, {"error": "unknown console call"})

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _route


def serve(port: int, state: Path) -> None:
    Handler.keys = Keys(state)
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", type=Path, required=True)
    args = parser.parse_args()
    serve(args.port, args.state)


if __name__ == "__main__":
    main()
