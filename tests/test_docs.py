"""The user-facing docs stay true: README length and its Python example, docs/cli.md against argparse.

``docs/cli.md`` is generated from the parser between two markers; after changing a flag, rewrite it with
``EDGESSL_WRITE_DOCS=1 python -m pytest tests/test_docs.py`` and read the diff.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CLI_MD = ROOT / "docs" / "cli.md"
BEGIN, END = "<!-- BEGIN GENERATED: flags -->", "<!-- END GENERATED: flags -->"


def _subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            return dict(a.choices)
    return {}


def _walk(p: argparse.ArgumentParser, prefix: str) -> list[tuple[str, argparse.ArgumentParser]]:
    out = [(prefix, p)]
    for name, sp in _subparsers(p).items():
        out += _walk(sp, f"{prefix} {name}")
    return out


def _summaries(p: argparse.ArgumentParser, prefix: str = "edgessl") -> dict[str, str]:
    """Each subcommand's one-line ``help`` (what ``edgessl --help`` lists), by full command name."""
    out: dict[str, str] = {}
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for ca in a._choices_actions:
                out[f"{prefix} {ca.dest}"] = ca.help or ""
            for name, sp in a.choices.items():
                out.update(_summaries(sp, f"{prefix} {name}"))
    return out


def _default(a: argparse.Action) -> str:
    if isinstance(a, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return "off" if a.default is False else "on"
    if a.required and a.nargs not in ("*", "?"):  # argparse marks optional positionals required
        return "required"
    if a.default is None or a.default == argparse.SUPPRESS:
        return "—"
    if isinstance(a.default, (list, tuple)):
        return ",".join(str(v) for v in a.default) or "—"
    return str(a.default)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def render_flags() -> str:
    """Markdown for every subcommand: its positional arguments and every option with its default."""
    from edgessl.cli import build_parser

    parts = []
    parser = build_parser()
    summaries = _summaries(parser)
    for name, p in _walk(parser, "edgessl"):
        if _subparsers(p) and name != "edgessl":
            continue  # a group like `edgessl data`: its commands follow
        rows = []
        for a in p._actions:
            if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction, argparse._VersionAction)):
                continue
            flag = ", ".join(f"`{s}`" for s in a.option_strings) or f"`{a.dest.upper()}` (positional)"
            choices = f" (one of {', '.join(map(str, a.choices))})" if a.choices else ""
            # argparse formats every help string with %: "%%" is a literal percent sign, as --help prints it
            help_text = (a.help or "") % {"default": a.default} if a.help and "%" in a.help else (a.help or "")
            rows.append(f"| {flag} | {_cell(_default(a))} | {_cell(help_text + choices)} |")
        if not rows:
            continue
        title = summaries.get(name) or ((p.description or "").strip().splitlines() or [""])[0]
        parts.append(f"### `{name}`\n\n{_cell(title)}\n\n| option | default | what |\n|---|---|---|\n" + "\n".join(rows))
    return "\n\n".join(parts) + "\n"


def test_cli_md_lists_every_flag_with_its_default():
    text = CLI_MD.read_text(encoding="utf-8")
    assert BEGIN in text and END in text, f"{CLI_MD} lost its generated-section markers"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    want = render_flags()
    if os.environ.get("EDGESSL_WRITE_DOCS"):
        CLI_MD.write_text(f"{head}{BEGIN}\n{want}{END}{tail}", encoding="utf-8")
        pytest.skip("rewrote docs/cli.md")
    got = rest.split(END, 1)[0].strip("\n") + "\n"
    assert got == want, "docs/cli.md is out of date with the CLI: run EDGESSL_WRITE_DOCS=1 pytest tests/test_docs.py"


def test_every_subcommand_option_is_documented_by_name():
    """Independent of the renderer: each option string of each subcommand appears in docs/cli.md."""
    from edgessl.cli import build_parser

    text = CLI_MD.read_text(encoding="utf-8")
    missing = [f"{name} {s}" for name, p in _walk(build_parser(), "edgessl") for a in p._actions
               for s in a.option_strings if not isinstance(a, (argparse._HelpAction, argparse._VersionAction))
               and f"`{s}`" not in text]  # fmt: skip
    assert not missing, f"undocumented in docs/cli.md: {missing}"


def test_readme_is_a_short_guide_with_the_two_setup_commands_on_top():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; the user guide keeps to 150"
    block = re.search(r"```bash\n(.*?)```", "\n".join(lines[:12]), re.S)
    assert block, "README.md must open with a bash block holding the two set-up commands"
    cmds = [c for c in block.group(1).splitlines() if c.strip()]
    assert len(cmds) == 2 and "edgessl demo" in cmds[0] and "pytest" in cmds[1]
    for link in re.findall(r"\]\(((?:docs|benchmarks)/[^)#]+)", "\n".join(lines)):
        assert (ROOT / link).exists(), f"README links to missing {link}"


def readme_python_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1, "README.md keeps one Python API example (the one this test runs)"
    return blocks[0]


@pytest.mark.slow
def test_readme_python_example_runs_as_written(small_bundle, tmp_path, monkeypatch):
    """The README's API example, unchanged, in a folder where `edgessl demo` left its bundle."""
    (tmp_path / "edgessl_demo").mkdir()
    (tmp_path / "edgessl_demo" / "model.essl").write_bytes(small_bundle.read_bytes())
    monkeypatch.chdir(tmp_path)
    printed: list[str] = []
    code = readme_python_example()
    exec(compile(code, "README.md", "exec"), {"__name__": "__readme__", "print": lambda *a, **k: printed.append(" ".join(map(str, a)))})
    events = [p for p in printed if p.startswith("event")]
    assert events, f"the README example printed no event: {printed[:5]}"
