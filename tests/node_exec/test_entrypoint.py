"""entrypoint_script: the Dockerfile ENTRYPOINT forms an archive may use."""

from __future__ import annotations

from pathlib import Path

import pytest

from substra_worker.node.executor import entrypoint_script
from tests import assets


def archive_dir(tmp_path: Path, dockerfile: str | None, scripts=("algo.py",)) -> Path:
    folder = tmp_path / "archive"
    folder.mkdir()
    for name in scripts:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("print('hi')\n")
    if dockerfile is not None:
        (folder / "Dockerfile").write_text(dockerfile)
    return folder


@pytest.mark.parametrize(
    "dockerfile",
    [
        'FROM x\nCOPY algo.py .\nENTRYPOINT ["python3", "algo.py"]\n',
        "FROM x\nENTRYPOINT python3 algo.py\n",
        'from x\nentrypoint ["python", "algo.py"]\n',
        'ENTRYPOINT ["/usr/local/bin/python3.7", "-u", "algo.py"]',
        'ENTRYPOINT ["python3", "-W", "ignore", "algo.py"]',
        "ENTRYPOINT exec python3 -u algo.py",
        'ENTRYPOINT ["/usr/bin/env", "python3", "algo.py"]',
        'ENTRYPOINT ["python3", \\\n    "algo.py"]\n',
        'ENTRYPOINT ["python3", "other.py"]\n# a comment\nENTRYPOINT ["python3", "algo.py"]\n',
        "ENTRYPOINT python3 \\\n  # comment inside\n  algo.py\n",
        'ENTRYPOINT ["python3", "/sandbox/algo.py"]',
        'ENTRYPOINT ["./algo.py"]',
        'WORKDIR /sandbox\nCOPY algo.py src/\nENTRYPOINT ["python3", "src/algo.py"]',
        'ENTRYPOINT ["pypy3", "algo.py"]',
    ],
)
def test_entrypoint_forms(tmp_path, dockerfile):
    scripts = ("algo.py", "other.py")
    assert entrypoint_script(archive_dir(tmp_path, dockerfile, scripts)) == "algo.py"


def test_script_in_a_sub_folder(tmp_path):
    folder = archive_dir(tmp_path, 'ENTRYPOINT ["python3", "src/main.py"]', ("src/main.py",))
    assert entrypoint_script(folder) == "src/main.py"


def test_archive_with_one_top_level_folder(tmp_path):
    top = tmp_path / "archive" / "my_algo"
    top.mkdir(parents=True)
    (top / "Dockerfile").write_text('ENTRYPOINT ["python3", "algo.py"]')
    (top / "algo.py").write_text("")
    assert entrypoint_script(tmp_path / "archive") == "my_algo/algo.py"


@pytest.mark.parametrize("kind", assets.ALGO_KINDS)
def test_the_test_algos(tmp_path, kind):
    folder = assets.write_algo_dir(kind, tmp_path / kind)
    assert entrypoint_script(folder) == f"{kind}.py"


def test_the_test_metrics(tmp_path):
    assert entrypoint_script(assets.write_metrics_dir(tmp_path / "m")) == "metrics.py"


@pytest.mark.parametrize(
    ("dockerfile", "message"),
    [
        (None, "no Dockerfile"),
        ("FROM x\nCOPY algo.py .\n", "no ENTRYPOINT"),
        ('FROM x\nCMD ["python3", "algo.py"]\n', "no ENTRYPOINT"),
        ('ENTRYPOINT ["python3", "missing.py"]', "not in the archive"),
        ('ENTRYPOINT ["python3", "../outside.py"]', "not in the archive"),
        ('ENTRYPOINT ["python3", "-m", "algo"]', "not a script file"),
        ('ENTRYPOINT ["python3", "-u"]', "names no script"),
        ("ENTRYPOINT []", "empty"),
        ("ENTRYPOINT python3 'algo.py", "cannot parse"),
        ("ENTRYPOINT [python3 algo.py]", "not in the archive"),  # not JSON: the shell form
    ],
)
def test_bad_dockerfiles_are_clear_value_errors(tmp_path, dockerfile, message):
    with pytest.raises(ValueError, match=message):
        entrypoint_script(archive_dir(tmp_path, dockerfile))


def test_a_script_outside_the_archive_is_refused(tmp_path):
    (tmp_path / "outside.py").write_text("")
    folder = archive_dir(tmp_path, 'ENTRYPOINT ["python3", "link.py"]')
    (folder / "link.py").symlink_to(tmp_path / "outside.py")
    with pytest.raises(ValueError, match="not in the archive"):
        entrypoint_script(folder)


def test_a_missing_archive_folder(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        entrypoint_script(tmp_path / "nope")
