"""The README's usage block lists every command, option and choice the CLI has (issue 20:
`--force-stop` was missing, among others). Read from the parser itself, so a flag added
later without its README line fails here."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from virtctl.cli.commands import build_parser

README = Path(__file__).resolve().parents[3] / "README.md"


def usage_block() -> str:
    text = README.read_text()
    section = text.split("## Using it", 1)[1]
    return section.split("```", 2)[1]


def entries() -> dict[str, str]:
    """Each command's usage text (its line and the indented lines after it)."""
    out: dict[str, str] = {}
    verb = None
    for line in usage_block().splitlines():
        if line.startswith("virtctl "):
            verb = next((t for t in line.split()[1:] if re.fullmatch(r"[a-z]+", t)), None)
            out[verb or ""] = line
        elif line.strip() and verb is not None:
            out[verb] += "\n" + line
    return out


def mentions(text: str, token: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(token)}(?![\w-])", text) is not None


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_command_has_a_usage_line() -> None:
    assert set(subcommands()) <= set(entries()), sorted(set(subcommands()) - set(entries()))


def test_every_option_and_choice_is_in_its_commands_usage() -> None:
    top = build_parser()
    common = {o for a in top._actions for o in a.option_strings if o not in ("-h", "--help")}
    missing = []
    for verb, parser in subcommands().items():
        text = entries()[verb]
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            names = list(action.option_strings)
            if names and set(names) & common:
                continue  # the global options: the first line
            if names and not any(mentions(text, o) for o in names):
                missing.append(f"{verb} {names[-1]}")
            for choice in action.choices or ():
                if not mentions(text, str(choice)):
                    missing.append(f"{verb} {names[-1] if names else action.dest}: {choice}")
    assert missing == []
    first = usage_block().strip().splitlines()[0]
    for action in top._actions:
        if action.option_strings and not isinstance(action, argparse._HelpAction):
            assert any(mentions(first, o) for o in action.option_strings), (action, first)


def test_the_watch_page_lists_every_watch_option() -> None:
    """docs/watch.md's usage block, the same way (it lacked --no-live, --detach-timeout
    and --call-timeout)."""
    page = (README.parent / "docs" / "watch.md").read_text()
    block = page.split("```", 2)[1]
    parser = subcommands()["watch"]
    missing = [a.option_strings[-1] for a in parser._actions
               if a.option_strings and not isinstance(a, argparse._HelpAction)
               and not any(mentions(block, o) for o in a.option_strings)]
    assert missing == []
