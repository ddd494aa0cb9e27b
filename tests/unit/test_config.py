"""Settings (ser/config.py): defaults, derived values, bad values, secrets, the README table."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from ser import config
from ser.cli import main
from ser.cli.common import EXIT_USAGE
from ser.errors import SerError, SettingError

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_and_derived_values(tmp_path):
    s = config.load({"SER_STATE_DIR": str(tmp_path)})
    assert s.state_dir == tmp_path
    assert s.cache_dir == tmp_path / "cache"
    assert s.n_jobs == config.cpu_count()
    assert s.job_ttl == 7 * 24 * 3600 and isinstance(s.max_audio_seconds, float)
    assert not s.secret_key and not s.api_key and not s.skip_warmup
    with pytest.raises(SerError, match="NO_SECRET_KEY"):
        s.require_secret_key()
    config.ensure_secret_key(tmp_path)  # the key file in the state dir is the default key
    key = (tmp_path / "secret_key").read_text().strip()
    assert config.load({"SER_STATE_DIR": str(tmp_path)}).require_secret_key() == key.encode()


def test_explicit_mapping_replaces_the_environment(monkeypatch):
    monkeypatch.setenv("SER_JOB_TTL", "5")
    monkeypatch.setenv("SER_KEY_PREFIX", "fromenv:")
    assert config.load().job_ttl == 5
    s = config.load({})
    assert s.job_ttl == 7 * 24 * 3600 and s.key_prefix == "ser:"
    s = config.load(overrides={"SER_KEY_PREFIX": "over:"})  # the process environment + these
    assert s.job_ttl == 5 and s.key_prefix == "over:"


def test_values_are_typed_and_blank_means_default():
    s = config.load(
        {
            "SER_JOB_TTL": "60",
            "SER_MAX_UPLOAD_MB": "1.5",
            "SER_N_JOBS": "  ",
            "SER_API_URL": "http://host:1/",
            "SER_API_KEY": " k ",
            "SER_CACHE_DIR": "",
            "SER_SKIP_WARMUP": "1",
        }
    )
    assert (s.job_ttl, s.max_upload_mb, s.n_jobs) == (60, 1.5, config.cpu_count())
    assert s.api_url == "http://host:1" and s.api_key.get_secret_value() == "k"
    assert s.cache_dir == Path(".ser/cache") and s.skip_warmup is True
    assert s.model_fields_set == {"job_ttl", "max_upload_mb", "api_url", "api_key", "skip_warmup"}


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("SER_JOB_TTL", "abc", "valid integer"),
        ("SER_JOB_TTL", "-1", "greater than 0"),
        ("SER_MAX_UPLOAD_MB", "big", "valid number"),
        ("SER_N_JOBS", "0", "greater than or equal to 1"),
        ("SER_SKIP_WARMUP", "maybe", "valid boolean"),
        ("SER_API_URL", "localhost:5077", "http:// or https:// URL, e.g. http://localhost:5077"),
        ("SER_API_URL", "ftp://host", "http:// or https:// URL"),
        ("SER_API_URL", "http://", "http:// or https:// URL"),
    ],
)
def test_a_bad_value_is_an_invalid_setting_naming_the_variable(name, value, expected):
    with pytest.raises(SettingError) as err:
        config.load({name: value})
    assert err.value.code == "INVALID_SETTING"
    assert err.value.message.startswith(f"{name}={value!r}: ")
    assert expected in err.value.message


def test_secrets_stay_out_of_repr_and_settings_are_frozen():
    s = config.load(
        {
            "SER_SECRET_KEY": "sekrit-1",
            "SER_API_KEY": "sekrit-2",
            "SER_REDIS_URL": "redis://:sekrit-3@host:6379/0",
        }
    )
    assert "sekrit" not in repr(s) and "sekrit" not in str(s)
    assert s.require_secret_key() == b"sekrit-1"
    with pytest.raises(ValidationError):
        s.job_ttl = 1
    t = s.model_copy(update={"key_prefix": "x:"})
    assert (t.key_prefix, s.key_prefix, t.redis_url) == ("x:", "ser:", s.redis_url)


def test_ser_commands_print_a_bad_setting_and_exit_2(monkeypatch, capsys):
    monkeypatch.setenv("SER_JOB_TTL", "abc")
    monkeypatch.setattr(os, "execv", lambda *a: pytest.fail("started despite a bad setting"))
    for argv in (["api"], ["worker"], ["jobs"]):  # the servers check before they start
        assert main(argv) == EXIT_USAGE
        err = capsys.readouterr().err
        assert "INVALID_SETTING: SER_JOB_TTL='abc'" in err and "integer" in err


def test_api_and_worker_fail_fast_on_a_bad_setting():
    from api import create_app

    with pytest.raises(SettingError, match="SER_MAX_UPLOAD_MB"):
        create_app({"SER_MAX_UPLOAD_MB": "lots"})
    env = dict(os.environ, SER_VISIBILITY_TIMEOUT="soon")
    proc = subprocess.run(
        [sys.executable, "-c", "import worker.app"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "INVALID_SETTING: SER_VISIBILITY_TIMEOUT='soon'" in proc.stderr


def test_readme_settings_table_is_the_generated_one():
    readme = (ROOT / "README.md").read_text()
    assert config.readme_with_table(readme) == readme, (
        "README settings table is stale: run `python -m ser.config --write README.md`"
    )
    for name in config.Settings.model_fields:
        assert f"`{config.variable(name)}`" in readme


def test_only_ser_config_reads_ser_settings_from_the_environment():
    pattern = re.compile(r"(os\.environ(\.get)?[\[(]|getenv\()\s*[\"']SER_")
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("ser", "worker", "api")
        for path in (ROOT / folder).rglob("*.py")
        if path.name != "config.py" and pattern.search(path.read_text())
    ]
    assert offenders == []
