"""``oms keys``: create prints the key once, alone on its last line, and stores its hash;
names are unique (a revoked key keeps its name); list never shows a key; revoke says
when there is nothing to revoke. ``oms --help`` lists serve and keys."""
from __future__ import annotations

import pytest

from api.keys import ApiKeys, key_hash
from cli.main import main
from persistence.api_keys import ApiKeyStore


def oms(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_keys_are_created_listed_and_revoked_by_name(sqlite_url, monkeypatch, capsys):
    monkeypatch.setenv("OMS_DATABASE_URL", sqlite_url)
    code, out, _ = oms(capsys, "keys", "create", "scalper", "--strategy", "7", "--strategy", "9", "--read-only")
    key = out.strip().splitlines()[-1]
    assert code == 0 and key.startswith("oms_") and out.count(key) == 1
    store = ApiKeyStore.open(sqlite_url)
    try:
        stored = store.find_by_name("scalper")
        assert stored.key_hash == key_hash(key) and stored.strategies == (7, 9) and stored.read_only
        caller = ApiKeys(store).caller(key)
        assert caller is not None and caller.sees(9) and not caller.sees(8)

        code, _, err = oms(capsys, "keys", "create", "scalper")
        assert code == 2 and "exists already" in err
        code, _, err = oms(capsys, "keys", "create", "bad name")
        assert code == 2 and "name" in err
        code, out, _ = oms(capsys, "keys", "list")
        assert code == 0 and "scalper" in out and "7,9" in out and "read" in out and key not in out
        assert oms(capsys, "keys", "revoke", "scalper")[0] == 0
        assert ApiKeys(store).caller(key) is None
        code, _, err = oms(capsys, "keys", "revoke", "scalper")
        assert code == 1 and "no live key" in err
        assert oms(capsys, "keys", "create", "scalper")[0] == 2  # a revoked key keeps its name
    finally:
        store.close()


def test_the_console_script_lists_its_commands(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "serve" in out and "keys" in out
