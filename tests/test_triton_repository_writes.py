"""`pspnet-trt triton` replaces only the model folders it wrote, writes several models all or none (an interrupted
write is completed or discarded, never left half done inside the repository), and `serve` starts on a repository
that an interrupted write of an earlier version left staging folders in."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from test_serving import _server_reason  # the one check for a usable bundled server

from pspnet_trt.cli import main as cli
from pspnet_trt.serving import RepoOptions, write_repository
from pspnet_trt.serving import repository as repo_mod
from pspnet_trt.serving.staging import STAGING_SUFFIX, recover_repository


def tree(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def one_line_exit_2(capsys, argv) -> str:
    assert cli(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    return err[0]


def test_a_folder_this_tool_did_not_write_is_never_replaced(tmp_path, tiny_onnx, capsys):
    repo = tmp_path / "repo"
    user = repo / "tiny"  # the model name `triton tiny.onnx` takes
    (user / "checkpoints").mkdir(parents=True)
    (user / "notes.txt").write_text("my notes")
    (user / "checkpoints" / "epoch_100.pth").write_bytes(b"weights")
    before = tree(tmp_path)
    err = one_line_exit_2(capsys, ["triton", str(tiny_onnx), "--out", str(repo)])
    assert str(user) in err and "did not write" in err and "--name" in err, err
    assert tree(tmp_path) == before


def test_a_model_name_that_is_the_artifact_file_is_refused(tmp_path, tiny_onnx, capsys):
    repo = tmp_path / "repo"
    repo.mkdir()
    art = repo / "m.onnx"
    shutil.copyfile(tiny_onnx, art)
    before = tree(tmp_path)
    err = one_line_exit_2(capsys, ["triton", str(art), "--out", str(repo), "--name", "m.onnx"])
    assert str(art) in err and "is also an input" in err, err
    assert tree(tmp_path) == before


def test_model_folders_it_wrote_are_replaced_marked_or_from_an_earlier_version(tmp_path, tiny_onnx):
    repo = tmp_path / "repo"
    (seg,) = write_repository([tiny_onnx], repo, RepoOptions(name="seg", backend="python"))
    assert (seg / repo_mod.MARKER).is_file()
    write_repository([tiny_onnx], repo, RepoOptions(name="seg"))  # replaced: it carries the marker
    assert 'platform: "onnxruntime_onnx"' in (seg / "config.pbtxt").read_text()
    (seg / repo_mod.MARKER).unlink()  # as an earlier version wrote it: the config carries the deploy parameter
    write_repository([tiny_onnx], repo, RepoOptions(name="seg", backend="python"))
    assert 'backend: "python"' in (seg / "config.pbtxt").read_text()


@pytest.fixture
def two_models(tmp_path, tiny_onnx):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    shutil.copyfile(tiny_onnx, a)
    shutil.copyfile(tiny_onnx, b)
    repo = tmp_path / "repo"
    write_repository([a, b], repo, RepoOptions(backend="python"))
    return repo, a, b


def backends(repo: Path) -> dict:
    return {d.name: ("python" if 'backend: "python"' in (d / "config.pbtxt").read_text() else "onnxruntime")
            for d in sorted(repo.iterdir())}


def test_an_interrupted_multi_model_write_is_completed_by_the_next_run(two_models, monkeypatch):
    """Killed after one model of two was moved in: the repository holds no staging folder, and the next `triton`
    or `serve` of it moves the other one in (every model of the write, or none)."""
    repo, a, b = two_models
    assert backends(repo) == {"a": "python", "b": "python"}
    real = os.replace

    def killed_after_the_first_model(src, dst):
        if Path(src) == repo / "b":  # a is in, b is next
            raise KeyboardInterrupt  # stands for the kill: nothing after it runs
        return real(src, dst)

    monkeypatch.setattr(os, "replace", killed_after_the_first_model)
    with pytest.raises(KeyboardInterrupt):
        write_repository([a, b], repo)  # onnxruntime models now
    monkeypatch.undo()
    assert sorted(p.name for p in repo.iterdir()) == ["a", "b"]  # nothing Triton would load as a model
    assert backends(repo) == {"a": "onnxruntime", "b": "python"}  # half done
    staged = [p.name for p in repo.parent.iterdir() if p.name.endswith(STAGING_SUFFIX)]
    assert len(staged) == 1, staged  # outside the repository, with its journal
    recover_repository(repo)  # what `triton` and `serve` run first
    assert backends(repo) == {"a": "onnxruntime", "b": "onnxruntime"}
    assert not [p for p in repo.parent.iterdir() if p.name.startswith(".repo.")]


def test_a_write_killed_before_its_journal_changes_nothing(two_models, monkeypatch):
    repo, a, b = two_models
    before = tree(repo)
    monkeypatch.setattr(repo_mod, "write_json", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        write_repository([a, b], repo)
    monkeypatch.undo()
    assert tree(repo) == before
    assert [p.name for p in repo.parent.iterdir() if p.name.startswith(".repo.")] == []


def legacy_staging(repo: Path) -> Path:
    """The staging folder the previous version left inside the repository when killed mid-write."""
    stale = repo / ".lg_fp32.51ccd3c91804.part"
    shutil.copytree(repo / "seg", stale)
    return stale


def test_serves_check_clears_an_interrupted_writes_staging_and_names_other_hidden_folders(tmp_path, tiny_onnx):
    from pspnet_trt.errors import UserError
    from pspnet_trt.serving.server import check_repository

    repo = tmp_path / "repo"
    write_repository([tiny_onnx], repo, RepoOptions(name="seg", backend="python"))
    stale = legacy_staging(repo)
    aside = repo / ".gone.0123456789ab.old"  # a replace killed between its two renames: the model dir, set aside
    shutil.copytree(repo / "seg", aside)
    assert [d.name for d in check_repository(repo)] == ["gone", "seg"]
    assert not stale.exists() and not aside.exists()
    (repo / ".ipynb_checkpoints").mkdir()
    with pytest.raises(UserError, match=r"\.ipynb_checkpoints.*move it out"):
        check_repository(repo)


@pytest.mark.slow
@pytest.mark.skipif(_server_reason() is not None, reason=str(_server_reason()))
def test_the_bundled_server_starts_on_a_repository_an_interrupted_write_left(tmp_path, tiny_onnx):
    from pspnet_trt.serving import TritonServer
    from pspnet_trt.serving.server import free_port

    repo = tmp_path / "repo"
    write_repository([tiny_onnx], repo, RepoOptions(name="seg", backend="python"))
    stale = legacy_staging(repo)
    ports = set()
    while len(ports) < 3:
        ports.add(free_port())
    http, grpc, metrics = sorted(ports)
    server = TritonServer(repo, http_port=http, grpc_port=grpc, metrics_port=metrics, log_file=tmp_path / "server.log",
                          exit_timeout_s=5)
    server.start(timeout_s=120)
    try:
        assert server.ready()
    finally:
        assert server.stop() == 0
    assert not stale.exists()
