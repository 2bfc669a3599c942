"""The secrets file (kite_secrets): read in either form, written owner-only with every
other line kept, and never a value in an error; the watcher hands on a changed token."""
from __future__ import annotations

import os
import stat

import pytest

from actors import OMSSettings
from actors.brokers.kite_login import LoginFailed, login_url, request_token_from
from actors.brokers.kite_secrets import SecretsFileError, read_secrets, write_secret
from actors.brokers.kite_token_watch import TokenFileWatcher


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in list(os.environ):
        if name.startswith("OMS_"):
            monkeypatch.delenv(name)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_dotenv_file_is_read_with_or_without_the_prefix_and_export(tmp_path):
    path = tmp_path / "kite.env"
    path.write_text("# mine\nOMS_KITE_API_KEY=key1\nexport kite_api_secret='sec1'\nOTHER=1\nOMS_KITE_ACCESS_TOKEN=\n")
    path.chmod(0o600)
    assert read_secrets(path) == {"kite_api_key": "key1", "kite_api_secret": "sec1"}


def test_a_toml_file_is_read(tmp_path):
    path = tmp_path / "kite.toml"
    path.write_text('kite_api_key = "key1"\nOMS_KITE_ACCESS_TOKEN = "tok1"\nlog_level = "INFO"\n')
    assert read_secrets(path) == {"kite_api_key": "key1", "kite_access_token": "tok1"}


@pytest.mark.parametrize("name", ["kite.env", "kite.toml"])
def test_writing_creates_the_file_owner_only_and_keeps_the_other_lines(tmp_path, name):
    path = tmp_path / name
    write_secret(path, "kite_access_token", "first0token")
    assert mode(path) == 0o600
    assert read_secrets(path) == {"kite_access_token": "first0token"}
    with path.open("a") as handle:
        handle.write('kite_api_key = "key1"\n' if name.endswith(".toml") else "OMS_KITE_API_KEY=key1\n")
    path.chmod(0o644)
    write_secret(path, "kite_access_token", "second0token")
    assert mode(path) == 0o600  # a file others could read is replaced by an owner-only one
    assert read_secrets(path) == {"kite_access_token": "second0token", "kite_api_key": "key1"}
    assert path.read_text().count("second0token") == 1 and "first0token" not in path.read_text()
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary left behind


def test_errors_name_the_file_never_a_value(tmp_path):
    path = tmp_path / "kite.toml"
    path.write_text('kite_access_token = "tok-secret-1\n')  # an unterminated string
    with pytest.raises(SecretsFileError) as error:
        read_secrets(path)
    assert "tok-secret-1" not in str(error.value) and str(path) in str(error.value)
    with pytest.raises(SecretsFileError, match="does not exist"):
        read_secrets(tmp_path / "missing.env")
    with pytest.raises(SecretsFileError) as bad_value:
        write_secret(tmp_path / "x.env", "kite_access_token", "has space")
    assert "has space" not in str(bad_value.value)


def test_the_settings_take_credentials_from_the_secrets_file_below_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "kite.env"
    write_secret(path, "kite_api_key", "filekey")
    write_secret(path, "kite_access_token", "filetoken")
    monkeypatch.setenv("OMS_KITE_SECRETS_FILE", str(path))
    settings = OMSSettings(broker="kite")
    assert settings.kite_api_key.get_secret_value() == "filekey"
    assert settings.kite_access_token.get_secret_value() == "filetoken"
    monkeypatch.setenv("OMS_KITE_ACCESS_TOKEN", "envtoken")
    assert OMSSettings(broker="kite").kite_access_token.get_secret_value() == "envtoken"
    assert "filekey" not in repr(settings) and "filetoken" not in repr(settings)


def test_the_watcher_hands_on_a_changed_token_once(tmp_path):
    path = tmp_path / "kite.env"
    write_secret(path, "kite_access_token", "day1token")
    taken: list[str] = []
    watcher = TokenFileWatcher(path, taken.append, interval=60, current="day1token")
    assert not watcher.look()
    write_secret(path, "kite_api_key", "key1")  # changed, but not the token
    assert not watcher.look() and taken == []
    write_secret(path, "kite_access_token", "day2token")
    assert watcher.look() and taken == ["day2token"]
    assert not watcher.look()


def test_the_login_url_and_the_request_token_from_a_redirect():
    assert login_url("abc123", "http://127.0.0.1:9/connect/login") == "http://127.0.0.1:9/connect/login?v=3&api_key=abc123"
    assert login_url("abc123") == "https://kite.zerodha.com/connect/login?v=3&api_key=abc123"
    assert request_token_from("https://example.invalid/cb?action=login&type=login&status=success&request_token=Rt0123456") == "Rt0123456"
    assert request_token_from("  Rt0123456\n") == "Rt0123456"
    with pytest.raises(LoginFailed, match="did not succeed"):
        request_token_from("https://example.invalid/cb?status=cancelled&request_token=Rt0123456")
    with pytest.raises(LoginFailed, match="neither"):
        request_token_from("https://example.invalid/cb?status=success")
