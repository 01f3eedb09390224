"""The documentation matches the binary.

docs/configuration.md documents every flag of every subcommand in tables
(`| flag | env | default | meaning |`). Each table sits under a heading
whose section has a line `Subcommands: `serve`, `sql`, ...` naming the
subcommands that take the flags of that table. For each subcommand, the
flags of every table that names it must be exactly the long flags its
`--help` lists (besides `--help`): a flag missing from the doc fails, and
so does a flag the doc still documents after the binary dropped it. A row's
env cell must name exactly the variables `--help` shows for its flags, and
its default cell must contain the default `--help` shows.

Also: `quiver --help` lists exactly the subcommands checked here, and the
relative links of README.md and docs/*.md lead to files and headings that
exist.
"""

import os
import re
import subprocess

import pytest

from conftest import ROOT, quiver_bin

CONFIG_DOC = ROOT / "docs" / "configuration.md"
SUBCOMMANDS = ("serve", "sql", "ingest", "inspect", "compact", "gc", "index")
# Subcommands whose flags belong to a subcommand of their own.
HELP_ARGS = {"index": ("index", "build")}
# Flags clap adds by itself.
IMPLICIT = {"help", "version"}

# An option line of clap's help: two spaces, an optional short flag, then the
# long flag (descriptions are indented further, so a `--flag` inside one is
# not taken for an option).
OPTION_LINE = re.compile(r"^ {2,6}(?:-[A-Za-z], )?--([a-z][a-z0-9-]*)")
ENTRY_START = re.compile(r"^ {2,6}\S")
FLAG = re.compile(r"--([a-z][a-z0-9-]*)")
ENV = re.compile(r"\b(QUIVER_[A-Z0-9_]+)\b")


def run_help(*args: str) -> str:
    # Without QUIVER_* variables (a config file or a set variable would show
    # in the help text, and QUIVER_CONFIG could make it fail).
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUIVER_")}
    out = subprocess.run(
        [quiver_bin(), *args, "--help"], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, f"quiver {' '.join(args)} --help failed: {out.stderr}"
    return out.stdout


def parse_help(text: str) -> dict:
    """Long flag -> {"env": variable or None, "default": text or None}.

    Works on clap's short help (one line per option) and long help (the
    description and `[env: ...]`, `[default: ...]` on lines of their own)."""
    flags = {}
    current = None
    entry = []

    def finish():
        if current is not None:
            body = " ".join(entry)
            env = re.search(r"\[env: ([A-Z0-9_]+)", body)
            default = re.search(r"\[default: ([^\]]*)\]", body)
            flags[current] = {
                "env": env.group(1) if env else None,
                "default": default.group(1) if default else None,
            }

    for line in text.splitlines():
        m = OPTION_LINE.match(line)
        if m or ENTRY_START.match(line) or (line and not line[0].isspace()):
            # A new option, a positional argument or a section header
            # ends the entry before it.
            finish()
            current, entry = (m.group(1), [line]) if m else (None, [])
        elif current is not None:
            entry.append(line.strip())
    finish()
    for flag in IMPLICIT:
        flags.pop(flag, None)
    return flags


def cells(row: str) -> list:
    """The cells of a Markdown table row (no `|` inside backticks here)."""
    return [c.strip() for c in row.strip().strip("|").split("|")]


def without_code_blocks(text: str) -> list:
    lines, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def parse_config_doc(text: str) -> list:
    """The flag tables: [{"heading", "subcommands", "rows": [(flags, env, default)]}]."""
    sections = []
    section = None
    for line in without_code_blocks(text):
        if line.startswith("#"):
            section = {"heading": line.lstrip("#").strip(), "subcommands": None, "rows": []}
            sections.append(section)
        elif section is None:
            continue
        elif line.startswith("Subcommands:"):
            section["subcommands"] = set(re.findall(r"`([a-z]+)`", line))
        elif line.startswith("|"):
            row = cells(line)
            flags = FLAG.findall(row[0])
            if flags:
                assert len(row) == 4, f"{CONFIG_DOC.name}: a flag row needs 4 cells: {line}"
                sections[-1]["rows"].append((flags, row[1], row[2]))
    tables = [s for s in sections if s["rows"] or s["subcommands"] is not None]
    for s in tables:
        assert s["subcommands"] is not None, (
            f"{CONFIG_DOC.name}: the flag table under '{s['heading']}' has no 'Subcommands:' line"
        )
        unknown = s["subcommands"] - set(SUBCOMMANDS)
        assert not unknown, f"{CONFIG_DOC.name}: '{s['heading']}' names unknown subcommands {sorted(unknown)}"
    return tables


def documented(subcommand: str) -> dict:
    """Flag -> (heading, env cell, default cell) of every table naming the subcommand."""
    out = {}
    for s in parse_config_doc(CONFIG_DOC.read_text()):
        if subcommand not in s["subcommands"]:
            continue
        for flags, env, default in s["rows"]:
            for flag in flags:
                assert flag not in out, (
                    f"{CONFIG_DOC.name}: --{flag} of `quiver {subcommand}` is documented twice "
                    f"('{out[flag][0]}' and '{s['heading']}')"
                )
                out[flag] = (s["heading"], env, default, tuple(flags))
    return out


def check(subcommand: str, help_text: str, doc: dict) -> list:
    """The differences between a subcommand's --help and its documentation."""
    help_flags = parse_help(help_text)
    problems = []
    for flag in sorted(help_flags.keys() - doc.keys()):
        problems.append(f"--{flag} (quiver {subcommand} --help) is not documented in docs/configuration.md")
    for flag in sorted(doc.keys() - help_flags.keys()):
        problems.append(
            f"--{flag} is documented for `quiver {subcommand}` in docs/configuration.md "
            f"('{doc[flag][0]}') but `quiver {subcommand} --help` does not list it"
        )
    rows = {}
    for flag, (heading, env_cell, default_cell, row_flags) in doc.items():
        rows.setdefault(row_flags, (env_cell, default_cell))
    for row_flags, (env_cell, default_cell) in rows.items():
        present = [f for f in row_flags if f in help_flags]
        want_env = {help_flags[f]["env"] for f in present} - {None}
        have_env = set(ENV.findall(env_cell))
        if present and want_env != have_env:
            problems.append(
                f"--{', --'.join(row_flags)}: docs/configuration.md gives the variables "
                f"{sorted(have_env)}, `quiver {subcommand} --help` {sorted(want_env)}"
            )
        for f in present:
            default = help_flags[f]["default"]
            if default is not None and default not in default_cell:
                problems.append(
                    f"--{f}: docs/configuration.md gives the default '{default_cell}', "
                    f"`quiver {subcommand} --help` '{default}'"
                )
    return problems


def test_subcommands_are_the_documented_ones():
    text = run_help()
    listed = re.search(r"^Commands:\n((?:  .*\n)+)", text, re.M)
    assert listed, text
    names = {line.split()[0] for line in listed.group(1).splitlines()} - {"help"}
    assert names == set(SUBCOMMANDS), (
        f"quiver --help lists {sorted(names)}; docs/configuration.md and this test cover {sorted(SUBCOMMANDS)}"
    )


@pytest.mark.parametrize("subcommand", SUBCOMMANDS)
def test_flags_match_help(subcommand):
    problems = check(subcommand, run_help(*HELP_ARGS.get(subcommand, (subcommand,))), documented(subcommand))
    assert not problems, "\n".join(problems)


def test_check_catches_a_missing_and_a_stale_flag():
    """The comparison itself, on a document made from `serve --help`: it
    agrees, and a flag dropped from it, a flag the binary does not have, a
    wrong variable and a wrong default are each reported by name."""
    help_text = run_help("serve")
    flags = parse_help(help_text)
    assert {"listen", "query-timeout", "tls-cert", "print-config"} <= flags.keys(), sorted(flags)
    doc = {
        f: ("synthetic", f"`{v['env']}`" if v["env"] else "", f"`{v['default'] or ''}`", (f,))
        for f, v in flags.items()
    }
    assert check("serve", help_text, doc) == []
    fewer = {k: v for k, v in doc.items() if k != "query-timeout"}
    problems = check("serve", help_text, fewer)
    assert any("--query-timeout" in p and "not documented" in p for p in problems), problems
    stale = dict(doc, **{"no-such-flag": ("synthetic", "", "", ("no-such-flag",))})
    problems = check("serve", help_text, stale)
    assert any("--no-such-flag" in p and "does not list it" in p for p in problems), problems
    wrong_env = dict(doc, listen=("synthetic", "`QUIVER_LISTEN_ADDR`", "`127.0.0.1:50051`", ("listen",)))
    problems = check("serve", help_text, wrong_env)
    assert any("--listen" in p and "QUIVER_LISTEN_ADDR" in p for p in problems), problems
    wrong_default = dict(doc, listen=("synthetic", "`QUIVER_LISTEN`", "`0.0.0.0:1`", ("listen",)))
    problems = check("serve", help_text, wrong_default)
    assert any("--listen" in p and "default" in p for p in problems), problems
    # A row taken out of the document's text is no longer parsed as documented.
    text = CONFIG_DOC.read_text()
    row = next(line for line in text.splitlines() if re.match(r"\| `--", line))
    gone = FLAG.findall(cells(row)[0])
    tables = parse_config_doc(text.replace(row + "\n", ""))
    assert not any(f in fl for s in tables for fl, _, _ in s["rows"] for f in gone), gone


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_relative_links_resolve():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    anchors = {}

    def anchors_of(path):
        if path not in anchors:
            lines = without_code_blocks(path.read_text())
            anchors[path] = {slug(l.lstrip("#")) for l in lines if l.startswith("#")}
        return anchors[path]

    broken = []
    for page in pages:
        for line in without_code_blocks(page.read_text()):
            for target in LINK.findall(line):
                if re.match(r"[a-z]+:", target):
                    continue  # http:, https:, mailto:
                path_part, _, anchor = target.partition("#")
                path = (page.parent / path_part).resolve() if path_part else page
                rel = page.relative_to(ROOT)
                if not path.exists():
                    broken.append(f"{rel}: {target}: no such file")
                elif anchor and path.suffix == ".md" and anchor not in anchors_of(path):
                    broken.append(f"{rel}: {target}: no such heading")
    assert not broken, "\n".join(broken)
