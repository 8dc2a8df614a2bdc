"""One atomic-write helper for every writer; one slim-config reader for every command."""
import json
import os
import re

import pytest

from conftest import DEMO_CONFIG, REPO_ROOT
from slimext.fileio import atomic_path, atomic_write_json, atomic_write_text

QAT_SLIM = os.path.join(REPO_ROOT, "configs", "slim", "residual_qat",
                        "picodet_demo_residual_qat.yml")


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "report.json"
    atomic_write_json(str(target), {"version": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(str(target)) as staging:
            with open(staging, "w") as stream:
                stream.write('{"version": 2, "trunc')
            raise RuntimeError("disk full halfway")
    assert json.loads(target.read_text()) == {"version": 1}
    assert os.listdir(tmp_path) == ["report.json"]


def test_writes_create_the_folder_and_replace_the_whole_file(tmp_path):
    target = tmp_path / "new" / "table.txt"
    atomic_write_text(str(target), "a much longer first version\n")
    atomic_write_text(str(target), "short\n")
    assert target.read_text() == "short\n"
    assert os.listdir(tmp_path / "new") == ["table.txt"]


def test_no_module_writes_with_its_own_temp_and_rename():
    # Only slimext.fileio renames files into place or dumps JSON/YAML into an open file;
    # every other writer of a result goes through it (no allow-list).
    own_writes = re.compile(r"os\.replace\(|os\.rename\(|json\.dump\(|yaml\.(safe_)?dump\([^)]*,\s*\w+\)")
    offenders = []
    for folder in ("slimext", "benchmarks"):
        for root, _, files in os.walk(os.path.join(REPO_ROOT, folder)):
            for name in files:
                path = os.path.join(root, name)
                relative = os.path.relpath(path, REPO_ROOT)
                if name.endswith(".py") and relative != os.path.join("slimext", "fileio.py"):
                    with open(path) as stream:
                        for number, line in enumerate(stream, 1):
                            if own_writes.search(line.split("#")[0]):
                                offenders.append("{}:{}: {}".format(relative, number,
                                                                    line.strip()))
    assert offenders == [], "\n".join(offenders)


def test_the_slim_yaml_is_read_once_per_run(monkeypatch, dataset_overrides):
    import ppdet.core.workspace as workspace

    from slimext.commands import slim_config, train
    from slimext.commands.common import load_detection_config, parse_flags

    reads = []
    original = workspace._load_config_with_base

    def counting(path):
        reads.append(os.path.abspath(path))
        return original(path)

    monkeypatch.setattr(workspace, "_load_config_with_base", counting)
    monkeypatch.setattr(slim_config, "_CACHE", {})
    flags = parse_flags(train.build_parser(),
                        ["-c", DEMO_CONFIG, "--slim_config", QAT_SLIM, "-o"] + dataset_overrides)
    load_detection_config(flags, mode="train")  # -o key check and settings check
    slim_config.read_slim_config(QAT_SLIM).refuse_uncalibrated_use("tools/train.py")
    assert reads.count(os.path.abspath(QAT_SLIM)) == 1
