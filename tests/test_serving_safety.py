"""`pspnet-trt triton` / `serve`: names that cannot escape the repository, all-or-none writes, the validation record
carried into the model dir, and a `serve` that names the fix for a model the bundled server cannot load.
Fast: no server is started (the bundled one is only located)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pspnet_trt.cli import main as cli
from pspnet_trt.errors import UserError
from pspnet_trt.serving import RepoOptions, write_repository

REPO_ROOT = Path(__file__).resolve().parents[1]


def tree(root: Path) -> dict:
    """Every file under ``root`` with its bytes (hidden temporaries included)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def populated(tmp_path, tiny_onnx):
    """A repository holding an unrelated model, and a folder beside it that is not the repository's."""
    repo = tmp_path / "repo"
    write_repository([tiny_onnx], repo, RepoOptions(name="othermodel", backend="python"))
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "data.txt").write_text("not the repository's")
    return repo, victim


@pytest.mark.parametrize("name", [".", "..", "../victim", "a/b", "ABSOLUTE", "", "seg model", "seg\n", "~"])
def test_a_model_name_is_one_plain_folder_name_checked_before_anything_is_written(populated, tmp_path, tiny_onnx,
                                                                                   name, capsys):
    """#26.1: `--name .` replaced the repository itself (othermodel vanished); `--name ../victim` deleted a folder
    outside it."""
    repo, victim = populated
    name = str(tmp_path / "abs") if name == "ABSOLUTE" else name
    before_repo, before_victim, before_top = tree(repo), tree(victim), sorted(p.name for p in tmp_path.iterdir())
    assert cli(["triton", str(tiny_onnx), "--out", str(repo), "--name", name]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--name" in err and "letters, digits" in err, err
    assert tree(repo) == before_repo and tree(victim) == before_victim
    assert sorted(p.name for p in tmp_path.iterdir()) == before_top


@pytest.mark.parametrize("name", ["seg", "r18_os8-camvid.v2", "A1"])
def test_plain_names_are_accepted_and_stay_inside_the_repository(populated, tiny_onnx, name):
    repo, victim = populated
    (model_dir,) = write_repository([tiny_onnx], repo, RepoOptions(name=name))
    assert model_dir == repo / name and (model_dir / "config.pbtxt").is_file()
    assert sorted(p.name for p in repo.iterdir()) == sorted(["othermodel", name])
    assert (victim / "data.txt").is_file()


def test_a_file_name_that_is_no_plain_name_becomes_one(tmp_path, tiny_onnx):
    odd = tmp_path / "my model (v2).fp16.onnx"
    odd.write_bytes(tiny_onnx.read_bytes())
    (model_dir,) = write_repository([odd], tmp_path / "repo")
    assert model_dir.parent == tmp_path / "repo" and re.fullmatch(r"[A-Za-z0-9_-]+", model_dir.name), model_dir.name


def test_a_failing_later_artifact_leaves_every_model_dir_as_it_was(populated, tmp_path, tiny_onnx, monkeypatch):
    """#26.2: `triton a.onnx nothere.onnx` replaced model a before failing on the second artifact."""
    import pspnet_trt.serving.repository as repository

    repo, _ = populated
    first = tmp_path / "a.onnx"
    first.write_bytes(tiny_onnx.read_bytes())
    write_repository([first], repo, RepoOptions(backend="python"))  # the earlier model a: python backend
    before = tree(repo)
    assert cli(["triton", str(first), str(tmp_path / "nothere.onnx"), "--out", str(repo)]) == 2
    assert tree(repo) == before

    # a failure while the second model dir is being filled (the first already complete): none is swapped in
    second = tmp_path / "b.onnx"
    second.write_bytes(tiny_onnx.read_bytes())
    calls = []
    real = repository.model_readme

    def readme_fails_second_time(*args):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(*args)

    monkeypatch.setattr(repository, "model_readme", readme_fails_second_time)
    with pytest.raises(OSError, match="disk full"):
        write_repository([first, second], repo)
    assert tree(repo) == before and len(calls) == 2
    monkeypatch.undo()
    write_repository([first, second], repo)
    assert sorted(p.name for p in repo.iterdir()) == ["a", "b", "othermodel"]
    assert 'platform: "onnxruntime_onnx"' in (repo / "a" / "config.pbtxt").read_text()


def passed_record(artifact: Path) -> dict:
    from pspnet_trt.records import fingerprint, now

    return {"kind": "miou", "passed": True, "dataset": "camvid", "split": "test", "images": 233, "split_images": 233,
            "miou": 60.0, "delta": 0.0, "reference_miou": 60.0, "tolerance": 1.0, "agreement": 99.9, "date": now(),
            **fingerprint(artifact)}


@pytest.fixture(scope="module")
def trained_onnx(tiny_model, tiny_info, tmp_path_factory) -> Path:
    """The tiny model exported as if from a checkpoint (a random-weights artifact warns whatever its record)."""
    from pspnet_trt.export import export_onnx

    info = tiny_info.with_(checkpoint_sha256="ab" * 32)
    return export_onnx(tiny_model, info, tmp_path_factory.mktemp("trained") / "trained.onnx")


def test_the_validation_record_travels_with_the_artifact_into_the_model_dir(tmp_path, trained_onnx):
    """#26.11: Segmenter.open inside Triton warned "never validated" for a validated artifact."""
    from pspnet_trt.records import open_warning, write_record

    tiny_onnx = trained_onnx
    art = tmp_path / "validated.onnx"
    art.write_bytes(tiny_onnx.read_bytes())
    assert "never validated" in open_warning(art, "r18_os8_camvid")
    write_record(art, passed_record(art))
    assert open_warning(art, "r18_os8_camvid") is None
    for backend in ("python", "auto"):
        (model_dir,) = write_repository([art], tmp_path / backend, RepoOptions(name="seg", backend=backend))
        served = model_dir / "1" / "model.onnx"
        assert open_warning(served, "r18_os8_camvid") is None, backend  # what model.py's Segmenter.open logs
    # no record: none is made up, and the served copy warns as the artifact does
    bare = tmp_path / "bare.onnx"
    bare.write_bytes(tiny_onnx.read_bytes())
    (model_dir,) = write_repository([bare], tmp_path / "bare", RepoOptions(name="seg", backend="python"))
    assert "never validated" in open_warning(model_dir / "1" / "model.onnx", "r18_os8_camvid")


def test_the_python_model_opens_without_the_unvalidated_warning(tmp_path, trained_onnx, caplog):
    """The same, through the Segmenter.open that model.py calls on the copied artifact."""
    from pspnet_trt.records import write_record
    from pspnet_trt.runtime import Segmenter

    art = tmp_path / "validated.onnx"
    art.write_bytes(trained_onnx.read_bytes())
    write_record(art, passed_record(art))
    (model_dir,) = write_repository([art], tmp_path / "repo", RepoOptions(name="seg", backend="python"))
    with caplog.at_level("WARNING"):
        Segmenter.open(model_dir / "1" / "model.onnx", device="cpu").close()
    assert not [r for r in caplog.records if r.levelname == "WARNING"], caplog.text


def test_serve_refuses_a_model_the_bundled_server_cannot_load_and_names_the_fix(tmp_path, tiny_onnx, capsys):
    """#25.5: `triton X.onnx` (auto) writes onnxruntime_onnx, which the bundled server cannot load; `serve` said
    only "unable to find backend library for backend 'onnxruntime'" after starting it."""
    import shlex
    import subprocess
    import sys

    from pspnet_trt.serving.server import free_port

    repo = tmp_path / "repo"
    write_repository([tiny_onnx], repo, RepoOptions(name="seg"))
    assert cli(["serve", str(repo), "--http-port", str(free_port()), "--grpc-port", str(free_port()),
                "--metrics-port", str(free_port()), "--ready-timeout", "20"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "onnxruntime_onnx" in err and "--backend python" in err, err
    fix = re.search(r"`(pspnet-trt triton [^`]*)`", err).group(1)
    argv = shlex.split(fix)  # the command as printed runs, and after it `serve` would start
    done = subprocess.run([sys.executable, "-m", "pspnet_trt", *argv[1:]], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert 'backend: "python"' in (repo / "seg" / "config.pbtxt").read_text()
    assert sorted(p.name for p in repo.iterdir()) == ["seg"]
    from pspnet_trt.serving.server import check_repository

    check_repository(repo)  # what `serve` checks before it starts the server: no error now


def test_model_readme_install_lines_are_the_main_readmes(tmp_path, tiny_onnx):
    """#25.5: the model folder's README said `pip install 'pspnet-trt[serve]'` is enough for the bundled server; it
    also needs nvidia-pytriton. Every install command there is one the project's documentation (README.md and
    docs/) gives."""
    main = "\n".join(p.read_text() for p in [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))])
    (py_dir,) = write_repository([tiny_onnx], tmp_path / "repo", RepoOptions(name="py", backend="python"))
    (ort_dir,) = write_repository([tiny_onnx], tmp_path / "repo", RepoOptions(name="ort"))
    py_readme = (py_dir / "README.md").read_text()
    installs = re.findall(r"^ +(pip install .*)$", py_readme, re.M)
    assert any("nvidia-pytriton" in c for c in installs) and any("[serve" in c for c in installs), py_readme
    for command in installs:
        assert command in main, command
    ort_readme = (ort_dir / "README.md").read_text()
    # an onnxruntime_onnx model: not offered to the bundled server as it is; the command that makes it loadable
    assert "pspnet-trt serve REPO" not in ort_readme and "--name ort --backend python" in ort_readme


def test_triton_device_defaults_to_auto(tmp_path, tiny_onnx):
    """#24.4: every CLI defaults to `--device auto`; `triton` said cpu."""
    from pspnet_trt.cli import build_parser

    args = build_parser().parse_args(["triton", str(tiny_onnx), "--out", str(tmp_path / "r")])
    assert args.device == "auto" and RepoOptions().device == "auto"
    (model_dir,) = write_repository([tiny_onnx], tmp_path / "r", RepoOptions(backend="python"))
    assert 'key: "device" value: { string_value: "auto" }' in (model_dir / "config.pbtxt").read_text()
    with pytest.raises(UserError, match="device"):
        RepoOptions(device="gpu0")
