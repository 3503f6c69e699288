import base64
import json
import multiprocessing
import os
import secrets
import stat
from pathlib import Path

import pytest

from shared.config import ConfigError, Settings
from shared.vault import KeyRing, add_key_to_file, load_keyring


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _file_settings(var_dir: Path) -> Settings:
    return Settings(_env_file=None, env="test", var_dir=var_dir)


def test_the_key_file_is_made_on_first_use_with_mode_0600(tmp_path: Path) -> None:
    settings = _file_settings(tmp_path / "var")
    ring = load_keyring(settings)
    assert stat.S_IMODE(settings.key_file.stat().st_mode) == 0o600
    assert len(ring.active_key) == 32 and len(ring.digest_key) == 32
    assert load_keyring(settings) == ring
    assert [p.name for p in settings.key_file.parent.iterdir()] == ["keys.json"]


def test_without_create_a_missing_key_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no key file"):
        load_keyring(_file_settings(tmp_path), create=False)


def _load_at_once(var_dir: str, barrier, results) -> None:
    barrier.wait()
    ring = load_keyring(_file_settings(Path(var_dir)))
    results.put((ring.active_key_id, _b64(ring.active_key), _b64(ring.digest_key)))


def test_processes_starting_at_once_share_one_key_ring(tmp_path: Path) -> None:
    processes = 8
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(processes), context.Queue()
    workers = [
        context.Process(target=_load_at_once, args=(str(tmp_path), barrier, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    rings = {results.get(timeout=30) for _ in workers}
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    assert len(rings) == 1
    on_disk = json.loads((tmp_path / "keys.json").read_text())
    (key_id, key, digest_key), = rings
    assert on_disk["active_key_id"] == key_id
    assert on_disk["keys"] == {key_id: key}
    assert on_disk["digest_key"] == digest_key
    assert sorted(os.listdir(tmp_path)) == ["keys.json"]


def _configured(**overrides: object) -> Settings:
    values: dict = {
        "keys": {"k1": _b64(secrets.token_bytes(32)), "k2": _b64(secrets.token_bytes(32))},
        "active_key_id": "k2",
        "digest_key": _b64(secrets.token_bytes(32)),
    }
    return Settings(_env_file=None, env="test", **{**values, **overrides})


def test_configured_keys_are_used_and_no_key_file_is_made(tmp_path: Path) -> None:
    settings = _configured(var_dir=tmp_path)
    ring = load_keyring(settings)
    assert ring.active_key_id == "k2"
    assert ring.keys["k1"] == base64.b64decode(settings.keys["k1"])
    assert ring.source is None
    assert not settings.key_file.exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"keys": {"k1": "not base64!!", "k2": _b64(bytes(32))}}, "not valid base64"),
        ({"keys": {"k1": _b64(bytes(16)), "k2": _b64(bytes(32))}}, "must be 32 bytes"),
        ({"digest_key": _b64(bytes(31))}, "must be 32 bytes"),
        ({"active_key_id": "k9"}, "is not in the key ring"),
        ({"active_key_id": None}, "KOPPEL_ACTIVE_KEY_ID"),
        ({"digest_key": None}, "KOPPEL_DIGEST_KEY"),
    ],
    ids=["bad-base64", "short-key", "short-digest-key", "active-missing", "no-active", "no-digest"],
)
def test_malformed_configured_keys_are_a_one_line_config_error(
    tmp_path: Path, overrides: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        load_keyring(_configured(var_dir=tmp_path, **overrides))
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    "content", ["{not json", '{"keys": {}}', '{"keys": [], "active_key_id": "a", "digest_key": ""}']
)
def test_a_malformed_key_file_is_a_one_line_config_error(tmp_path: Path, content: str) -> None:
    settings = _file_settings(tmp_path)
    settings.key_file.write_text(content)
    with pytest.raises(ConfigError) as raised:
        load_keyring(settings)
    assert "\n" not in str(raised.value)


def test_adding_a_key_makes_it_active_and_keeps_the_old_ones(tmp_path: Path) -> None:
    settings = _file_settings(tmp_path)
    first = load_keyring(settings)
    second = add_key_to_file(first)
    assert second.active_key_id != first.active_key_id
    assert second.keys[first.active_key_id] == first.active_key
    assert second.digest_key == first.digest_key
    assert load_keyring(settings) == second
    assert stat.S_IMODE(settings.key_file.stat().st_mode) == 0o600


def test_a_configured_ring_cannot_grow_a_key_file(tmp_path: Path) -> None:
    ring: KeyRing = load_keyring(_configured(var_dir=tmp_path))
    with pytest.raises(ConfigError, match="KOPPEL_KEYS"):
        add_key_to_file(ring)
