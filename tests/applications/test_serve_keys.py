"""API keys and per-key limits: SQLite storage (hashed), 401/429 at the right moments, restarts, bad databases."""
import sqlite3
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("starlette", reason="the serve extra (starlette) is not installed")
pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")
httpx = pytest.importorskip("httpx", reason="httpx (the test client) is not installed")

from fastnet import cli
from fastnet.serve import make_server
from fastnet.serve.keys import KeyStore, KeyStoreError, digest
from test_serve import TIMEOUT, post, running_server


class Clock:
    """A settable clock at 10 s into a minute, so no test straddles a minute by accident."""

    def __init__(self):
        self.now = 1_700_000_000 - 1_700_000_000 % 60 + 10.0

    def __call__(self):
        return self.now


def store_at(path, clock=None, create=True):
    return KeyStore(path, create=create, clock=clock or Clock())


GOOD = {"texts": ["cats are cute"], "to": "sv"}  # 13 characters


def test_keys_are_stored_hashed_never_in_clear(tmp_path):
    store = store_at(tmp_path / "keys.sqlite")
    key, info = store.add("alice", 10, 100)
    store.close()
    assert key.startswith("fn_") and info.prefix == key[:7] and info.name == "alice"
    for name in ("keys.sqlite", "keys.sqlite-wal"):
        if (tmp_path / name).exists():
            assert key.encode() not in (tmp_path / name).read_bytes()
    rows = sqlite3.connect(tmp_path / "keys.sqlite").execute("SELECT digest FROM keys").fetchall()
    assert rows == [(digest(key),)]


def test_key_add_use_revoke_and_limits_give_401_and_429_at_the_right_moments(model_path, tmp_path):
    clock = Clock()
    store = store_at(tmp_path / "keys.sqlite", clock)
    key, info = store.add("alice", requests_per_minute=3, chars_per_minute=1000)
    with running_server(model_path, keys_db=store, require_keys=True) as url:
        assert httpx.get(url + "/health", timeout=TIMEOUT).json()["keys_required"] is True
        missing = post(url, GOOD)
        assert missing.status_code == 401 and missing.json()["error"] == "unauthorized"
        assert "X-API-Key" in missing.json()["message"]
        refused = set()
        for bad in ("nonsense", "fn_" + "A" * 32, key[:-1] + ("B" if key[-1] != "B" else "C")):
            reply = post(url, GOOD, headers={"X-API-Key": bad})
            assert reply.status_code == 401 and reply.json()["error"] == "unauthorized"
            refused.add(reply.json()["message"])
        assert len(refused) == 1  # malformed and unknown keys get the same words: nothing says which exists
        assert post(url, GOOD, headers={"X-API-Key": key}).status_code == 200
        assert post(url, GOOD, headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert post(url, {**GOOD, "api_key": key}).status_code == 200
        limited = post(url, GOOD, headers={"X-API-Key": key})
        assert limited.status_code == 429, limited.text
        body = limited.json()
        assert body["error"] == "rate_limited" and body["limit"] == 3 and body["retry_after"] == 50
        assert limited.headers["Retry-After"] == "50" and "3 requests per minute" in body["message"]
        clock.now += 60  # the next minute
        assert post(url, GOOD, headers={"X-API-Key": key}).status_code == 200
        store.revoke(info.id)
        revoked = post(url, GOOD, headers={"X-API-Key": key})
        assert revoked.status_code == 401 and revoked.json()["message"] in refused


def test_characters_per_minute_limit_counts_the_request_texts(model_path, tmp_path):
    store = store_at(tmp_path / "keys.sqlite")
    key, _ = store.add("bob", requests_per_minute=100, chars_per_minute=20)
    with running_server(model_path, keys_db=store) as url:
        assert post(url, GOOD, headers={"X-API-Key": key}).status_code == 200  # 13 of 20
        over = post(url, GOOD, headers={"X-API-Key": key})
        assert over.status_code == 429 and over.json()["limit_kind"] == "chars" and over.json()["limit"] == 20
        assert post(url, {"texts": ["dogs"], "to": "sv"}, headers={"X-API-Key": key}).status_code == 200  # 17


def test_keys_are_optional_unless_required_but_a_bad_key_is_still_refused(model_path, tmp_path):
    store = store_at(tmp_path / "keys.sqlite")
    with running_server(model_path, keys_db=store) as url:
        assert httpx.get(url + "/health", timeout=TIMEOUT).json()["keys_required"] is False
        assert post(url, GOOD).status_code == 200
        assert post(url, {**GOOD, "api_key": 12}).status_code == 401


def test_usage_counters_survive_a_restart(model_path, tmp_path):
    clock = Clock()
    path = tmp_path / "keys.sqlite"
    key, _ = store_at(path, clock).add("carol", requests_per_minute=2, chars_per_minute=1000)
    with running_server(model_path, keys_db=store_at(path, clock, create=False), require_keys=True) as url:
        assert [post(url, GOOD, headers={"X-API-Key": key}).status_code for _ in range(2)] == [200, 200]
    with running_server(model_path, keys_db=store_at(path, clock, create=False), require_keys=True) as url:
        assert post(url, GOOD, headers={"X-API-Key": key}).status_code == 429
    assert store_at(path, clock, create=False).list()[0].requests_this_minute == 2


def test_a_corrupt_key_database_is_a_clear_startup_error(model_path, tmp_path, capsys):
    path = tmp_path / "keys.sqlite"
    path.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(KeyStoreError, match="unreadable"):
        make_server(model_path, keys_db=path, require_keys=True)
    assert cli.main(["serve", str(model_path), "--db", str(path), "--require-keys", "--port", "0"]) == 2
    assert "key database" in capsys.readouterr().err


def test_a_locked_key_database_is_a_clear_startup_error(tmp_path):
    path = tmp_path / "keys.sqlite"
    store_at(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(KeyStoreError, match="locked by another process"):
            KeyStore(path, busy_timeout=0.2)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_missing_or_foreign_database_and_require_keys_without_one_refuse_to_start(model_path, tmp_path):
    with pytest.raises(KeyStoreError, match="no key database"):
        KeyStore(tmp_path / "missing.sqlite")
    foreign = tmp_path / "other.sqlite"
    sqlite3.connect(foreign).execute("CREATE TABLE things (x)").connection.commit()
    with pytest.raises(KeyStoreError, match="not a fastnet key database"):
        KeyStore(foreign)
    with pytest.raises(ValueError, match="--require-keys needs --db"):
        make_server(model_path, require_keys=True)


def test_two_processes_never_spend_more_than_the_limit_together(tmp_path):
    """Several workers share the database: read-check-update is one transaction."""
    path = tmp_path / "keys.sqlite"
    key, _ = store_at(path).add("dave", requests_per_minute=60, chars_per_minute=10**6)
    now = Clock().now  # both processes in the same minute, whatever the real clock does
    code = textwrap.dedent(f"""
        from fastnet.serve.keys import KeyStore
        store = KeyStore({str(path)!r}, clock=lambda: {now!r})
        print(sum(store.admit({key!r}, 1).allowed for _ in range(50)))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    allowed = [int(p.communicate(timeout=4 * TIMEOUT)[0]) for p in procs]
    assert sum(allowed) == 60, allowed  # exactly the limit: never more, never less
    assert KeyStore(path, clock=lambda: now).list()[0].requests_this_minute == 60


def test_fastnet_keys_add_list_revoke(tmp_path, capsys):
    db = str(tmp_path / "keys.sqlite")
    assert cli.main(["keys", "add", "--db", db, "--name", "erin", "--rpm", "5", "--cpm", "500"]) == 0
    key = capsys.readouterr().out.strip()
    assert KeyStore(db).admit(key, 1).allowed
    assert cli.main(["keys", "list", "--db", db]) == 0
    listing = capsys.readouterr().out
    assert "erin" in listing and key[:7] in listing and key not in listing and "active" in listing
    assert cli.main(["keys", "revoke", key[:7], "--db", db]) == 0
    assert cli.main(["keys", "list", "--db", db]) == 0
    assert "revoked" in capsys.readouterr().out
    assert not KeyStore(db).admit(key, 1).allowed
    assert cli.main(["keys", "revoke", "999", "--db", db]) == 2
    assert "no key with id or prefix" in capsys.readouterr().err
