"""The manual (README.md and docs/*.md) against the code: every `pspnet-trt ...` command in a fenced block names a
real subcommand and only options that subcommand's --help lists, every `make TARGET` is a Makefile target, every
script it runs exists, and every relative link (and #anchor) resolves. The quick start itself runs in
tests/test_quickstart.py; the page rules (size, first screen, no word of how the product was made) are here."""

from __future__ import annotations

import functools
import re
import shlex
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SEPARATORS = {"&&", "||", ";", "|", "&", ">", ">>", "2>", "2>&1"}
SHELL_BLOCKS = {"", "bash", "sh", "shell", "console"}


def fenced_blocks(text: str) -> Iterator[Tuple[str, str]]:
    """(language, body) of every fenced block."""
    for match in re.finditer(r"^```([\w-]*)\n(.*?)^```", text, re.S | re.M):
        yield match.group(1), match.group(2)


def shell_lines(body: str) -> Iterator[str]:
    """The block's command lines: continuations joined, a `$ ` prompt dropped, comments dropped by shlex."""
    for line in body.replace("\\\n", " ").splitlines():
        line = line.strip()
        if line.startswith("$ "):
            line = line[2:]
        if line and not line.startswith("#"):
            yield line


def commands(text: str, program: str) -> Iterator[List[str]]:
    """Each call of ``program`` in the shell blocks of ``text``, as its words up to the next shell separator."""
    for lang, body in fenced_blocks(text):
        if lang not in SHELL_BLOCKS:
            continue
        for line in shell_lines(body):
            try:
                words = shlex.split(line, comments=True)
            except ValueError:  # not a shell line (program output)
                continue
            for i, word in enumerate(words):
                if word == program and (i == 0 or words[i - 1] in SEPARATORS or re.match(r"[A-Z_][A-Z0-9_]*=", words[i - 1])):
                    call = []
                    for w in words[i + 1:]:
                        if w in SEPARATORS:
                            break
                        call.append(w)
                    yield call


def help_options(help_text: str) -> Set[str]:
    """The option strings of a --help text: those its "options:" lines start with."""
    found: Set[str] = set()
    for line in help_text.splitlines():
        match = re.match(r"\s{2}(-[^\s].*?)(?:\s{2,}|$)", line)
        if match:
            found.update(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", match.group(1)))
    return found


@functools.lru_cache(maxsize=None)
def cli_help() -> Tuple[Set[str], Dict[str, Set[str]]]:
    """(the top-level options, {subcommand: its options}), each parsed once from its --help text."""
    import argparse

    from pspnet_trt.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return help_options(parser.format_help()), {name: help_options(sub.format_help())
                                                for name, sub in subparsers.choices.items()}


def check_call(words: List[str]) -> List[str]:
    """What is wrong with one `pspnet-trt WORDS` call: an unknown subcommand, or options its --help lacks."""
    top, subs = cli_help()
    while words and words[0].startswith("-"):
        if words[0].split("=")[0] not in top:
            return [f"`pspnet-trt {words[0]}`: no such top-level option"]
        words = words[1:]
    if not words:
        return []
    name, rest = words[0], words[1:]
    if name not in subs:
        return [f"`pspnet-trt {name}`: no such subcommand (there are: {', '.join(sorted(subs))})"]
    problems = []
    for word in rest:
        option = word.strip("[]").split("=")[0]
        if re.fullmatch(r"--?[A-Za-z][\w-]*", option) and option not in subs[name] and option not in top:
            problems.append(f"`pspnet-trt {name} {option}`: {option} is not in `pspnet-trt {name} --help`")
    return problems


def documented(program: str) -> List[Tuple[str, List[str]]]:
    return [(page.relative_to(ROOT).as_posix(), call) for page in PAGES for call in commands(page.read_text(), program)]


def test_the_manual_has_its_pages():
    names = {p.name for p in PAGES}
    assert {"README.md", "getting-started.md", "training.md", "export-and-precision.md", "gpu.md", "runtime.md",
            "serving.md", "design.md", "results.md", "troubleshooting.md"} <= names, names


def test_every_documented_pspnet_trt_command_exists_with_its_options():
    calls = documented("pspnet-trt")
    assert len(calls) > 30  # the parser found the commands
    assert {call[0] for _, call in calls if call} == set(cli_help()[1])  # every subcommand is shown
    problems = [f"{page}: {p}" for page, call in calls for p in check_call(call)]
    assert problems == [], "\n".join(problems)


def test_the_check_catches_an_option_the_cli_lacks():
    """What the test above would say if a page documented `--no-such-option`."""
    text = "```bash\npspnet-trt export --model r18_os8_camvid \\\n    --no-such-option 3 --out x.onnx  # a comment\n```\n"
    (call,) = commands(text, "pspnet-trt")
    assert check_call(call) == ["`pspnet-trt export --no-such-option`: --no-such-option is not in "
                                "`pspnet-trt export --help`"]
    assert check_call(["exprot", "--model", "m"])[0].startswith("`pspnet-trt exprot`: no such subcommand")
    assert check_call(["-v", "export", "--model", "m", "--out", "$OUT"]) == []


def makefile_targets() -> Set[str]:
    return set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))


def test_every_documented_make_target_exists():
    targets = makefile_targets()
    problems = []
    for page, call in documented("make"):
        for word in call:
            if "=" in word or word.startswith("-"):
                continue
            if word not in targets:
                problems.append(f"{page}: `make {word}`: no such target")
    assert documented("make") and problems == [], "\n".join(problems)


def test_every_documented_script_exists():
    scripts = [(page, call[0]) for page, call in documented("python") if call and call[0].endswith(".py")]
    assert scripts
    missing = [f"{page}: {script}" for page, script in scripts if not (ROOT / script).is_file()]
    assert missing == [], missing


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but `-` and `_` dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> Set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def links(page: Path) -> Iterator[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    text = re.sub(r"`[^`\n]*`", "", text)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if not re.match(r"[a-z]+:", target):
            yield target


def test_every_relative_link_and_anchor_resolves():
    problems = []
    for page in PAGES:
        for target in links(page):
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                problems.append(f"{page.relative_to(ROOT)}: ({target}): {path} does not exist")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                problems.append(f"{page.relative_to(ROOT)}: ({target}): no heading #{anchor} in {dest.name}")
    assert problems == [], "\n".join(problems)


def test_the_link_check_catches_a_broken_link_and_anchor(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# Top\n\n[a](p.md#top) [b](gone.md) [c](#nowhere) `[d](code.md)` [e](https://x.org/y)\n")
    assert list(links(page)) == ["p.md#top", "gone.md", "#nowhere"]
    assert anchors(page) == {"top"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_pages_speak_of_the_product_alone(page):
    text = page.read_text()
    words = re.findall(r"(?i)\b(sessions?|workplace|lent|helpers?|engineers?|issue \d+|issues? #\d+)\b", text)
    assert words == [], f"{page.name}: {sorted(set(words))}"


def code_strings() -> List[str]:
    """Every string the package can print: literals, and f-strings with each replacement field as a NUL."""
    import ast

    texts = []
    for path in sorted((ROOT / "pspnet_trt").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.JoinedStr):
                texts.append("".join(v.value if isinstance(v, ast.Constant) else "\0" for v in node.values))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                texts.append(node.value)
    return texts


def printed_by_the_code(message: str, texts: List[str]) -> bool:
    """Whether one string of the code holds the message's literal pieces (between its `…`s) in order."""
    pieces = [p.strip() for p in message.split("…") if p.strip()]
    for text in texts:
        at = 0
        for piece in pieces:
            at = text.find(piece, at)
            if at < 0:
                break
            at += len(piece)
        else:
            return True
    return False


def troubleshooting_messages() -> List[str]:
    rows = re.findall(r"^\| `([^`]+)` \|", (ROOT / "docs" / "troubleshooting.md").read_text(), re.M)
    return rows


def test_every_troubleshooting_message_is_one_the_code_prints():
    texts = code_strings()
    messages = troubleshooting_messages()
    assert len(messages) > 100
    unknown = [m for m in messages if not printed_by_the_code(m, texts)]
    assert unknown == [], unknown
    assert not printed_by_the_code("checkpoint … was eaten by a grue", texts)
