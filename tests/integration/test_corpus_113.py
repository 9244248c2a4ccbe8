"""Conformance with libvirt 11.3's own Xen tests (../shared/corpus/libvirt-11.3).

Every pair of xmconfigdata / xlconfigdata is converted in the directions libvirt's
xmconfigtest.c / xlconfigtest.c run it (read from those C files, not copied: PARSE is
XML -> cfg, FORMAT is cfg -> XML) and compared in meaning with libvirt's expected file;
how, and what libvirt 11.3 adds by itself that is normalised away, is documented in
tests/integration/corpus113.py. Each direction is agree, formatting-only or semantic.

Every semantic difference must be listed, with its reason, in
tests/data/corpus113-known.yaml (case, direction, field, reason); a listed entry that no
longer differs fails too (stale). Every cfg -> XML output must validate against libvirt
11.3's RelaxNG schema (`check: rng`; fetched by ci/fetch-schemas-11.3.sh, since Debian 12
installs 9.0's) and cfg -> XML -> cfg -> XML must give the same XML
(`check: fixpoint`); failures of those are listed in the same file under their check.
The old corpus test (test_corpus_conformance.py) stays as it is.
"""

from __future__ import annotations

from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import os

import pytest
import yaml
from lxml import etree

from tests.integration.corpus113 import CFG_TO_XML, XML_TO_CFG, Case, Outcome, cases, pair, run

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO.parent / "shared" / "corpus" / "libvirt-11.3"
KNOWN_FILE = REPO / "tests" / "data" / "corpus113-known.yaml"
CHECKS = ("semantic", "rng", "fixpoint")
SCHEMAS_113 = Path(os.environ.get("VIRTCTL_SCHEMAS_113", REPO / ".cache" / "libvirt-11.3-schemas"))


def absent(reason: str) -> None:
    """Skip on a developer machine; fail in CI, where the conformance check must run."""
    if os.environ.get("CI"):
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def relaxng() -> etree.RelaxNG:
    """libvirt 11.3's domain schema (the release the pairs come from)."""
    path = SCHEMAS_113 / "domain.rng"
    if not path.is_file():
        absent(f"{path} missing: run bash ci/fetch-schemas-11.3.sh")
    return etree.RelaxNG(etree.parse(str(path)))

Key = tuple[str, str, str, str]  # (check, case, direction, field)


@cache
def known() -> dict[Key, str]:
    entries = yaml.safe_load(KNOWN_FILE.read_text()) or []
    out: dict[Key, str] = {}
    for e in entries:
        check = e.get("check", "semantic")
        assert check in CHECKS, e
        assert e["direction"] in (CFG_TO_XML, XML_TO_CFG), e
        assert str(e.get("reason", "")).strip(), f"entry without a reason: {e}"
        key = (check, e["case"], e["direction"], str(e["field"]))
        assert key not in out, f"listed twice: {key}"
        out[key] = e["reason"]
    return out


def found(outcome: Outcome) -> dict[Key, str]:
    c = outcome.case
    out: dict[Key, str] = {}
    for path, ours, theirs in outcome.diffs:
        out[("semantic", c.id, c.direction, path)] = f"virtctl={ours!r} libvirt={theirs!r}"
    for check, path, detail in outcome.checks:
        out[(check, c.id, c.direction, path)] = detail
    return out


def problems(outcome: Outcome) -> list[str]:
    """Unlisted differences and stale entries for one case and direction."""
    c = outcome.case
    have = found(outcome)
    listed = {k: r for k, r in known().items() if k[1:3] == (c.id, c.direction)}
    msgs = [f"UNLISTED {k[0]} {c.id} {c.direction} {k[3]}: {v}"
            for k, v in have.items() if k not in listed]
    msgs += [f"STALE {k[0]} {c.id} {c.direction} {k[3]} (no longer differs; drop it from "
             f"{KNOWN_FILE.name}): {r}" for k, r in listed.items() if k not in have]
    return msgs


def _cases() -> list[Any]:
    if not CORPUS.is_dir():
        return [pytest.param(None, id="corpus-absent")]
    return [pytest.param(c, id=f"{c.id}:{c.direction}") for c in cases(CORPUS)]


@pytest.mark.parametrize("case", _cases())
def test_direction_conforms(case: Case | None, relaxng: etree.RelaxNG) -> None:
    if case is None:
        absent(f"libvirt 11.3 corpus not found at {CORPUS}; conformance not checked")
    msgs = problems(run(CORPUS, case, relaxng))
    assert not msgs, "\n".join(msgs)


def test_cases_read_from_libvirt_sources() -> None:
    if not CORPUS.is_dir():
        absent(f"libvirt 11.3 corpus not found at {CORPUS}")
    all_cases = cases(CORPUS)
    assert len(all_cases) == 152  # issue 15: libvirt 11.3 runs 152 directional tests
    for c in all_cases:
        cfg, xml = pair(CORPUS, c)
        assert cfg.is_file() and xml.is_file(), c
    ids = {(c.id, c.direction) for c in all_cases}
    for _, case, direction, _ in known():
        assert (case, direction) in ids, f"{KNOWN_FILE.name} names no such test: {case} {direction}"


def test_report_summary(capsys: pytest.CaptureFixture[str], relaxng: etree.RelaxNG) -> None:
    """Prints the conformance summary (for CI logs and docs/xen-conversion.md)."""
    if not CORPUS.is_dir():
        absent(f"libvirt 11.3 corpus not found at {CORPUS}")
    outcomes = [run(CORPUS, c, relaxng) for c in cases(CORPUS)]
    verdicts = Counter(o.verdict for o in outcomes)
    msgs = [m for o in outcomes for m in problems(o)]
    semantic_known = sum(1 for o in outcomes if o.verdict == "semantic"
                         and all(k in known() for k in found(o) if k[0] == "semantic"))
    checks = Counter(k[0] for o in outcomes for k in found(o) if k[0] != "semantic")
    with capsys.disabled():
        print(f"\ncorpus 11.3: {len(outcomes)} directional tests: {verdicts['agree']} agree, "
              f"{verdicts['formatting-only']} formatting-only, {verdicts['semantic']} semantic "
              f"({semantic_known} known); rng failures {checks['rng']}, fixpoint failures "
              f"{checks['fixpoint']}; {len(known())} known-difference entries"
              + (f"\n{len(msgs)} problems:\n" + "\n".join(msgs) if msgs else ""))
    assert not msgs
