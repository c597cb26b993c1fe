"""Differential test of the public listener: every case of the corpus (raw requests, valid
and hostile, recorded against the aiohttp listener at 76ac42a) is replayed against the edge
the tree runs now, and the answer must be the recorded one after normalising (status line,
the headers that matter, the body, whether the connection stayed open), except for the cases
the HTTP rewrite changed on purpose: a case marked changed must give its new answer instead,
and one marked adjusted the recorded answer with the mark's adjustments, in full.

The cases, the marks, the normalising and the recorder are in
``tests/support/http_corpus.py``; the recording is ``corpus.json`` next to this file.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import S3Target
from tests.support import http_corpus
from tests.support.http_corpus import Case, Env

CORPUS = http_corpus.load_corpus()
RECORDED: dict[str, dict[str, Any]] = {entry["name"]: entry for entry in CORPUS["cases"]}
RECORDINGS: dict[str, dict[str, Any]] = {name: e["observed"] for name, e in RECORDED.items()}


@pytest.fixture(scope="module")
def env(s3: S3Target, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    running = http_corpus.start_env(s3, tmp_path_factory.mktemp("corpus"))
    yield running
    running.stop()


def test_the_corpus_and_the_case_list_agree() -> None:
    assert CORPUS["format"] == http_corpus.FORMAT
    problems = http_corpus.mismatched_identities(CORPUS)
    assert not problems, "re-record the corpus (see tests/support/http_corpus.py):\n" + "\n".join(
        problems
    )


def test_changed_cases_were_recorded_otherwise() -> None:
    """A case marked changed must not already give its new answer in the recording, and each
    adjustment of an adjusted case must change the recording (a mark is never a no-op)."""
    for case in http_corpus.CASES:
        if case.name not in RECORDED:
            continue
        if case.changed is not None:
            assert http_corpus.check_change(case.changed, RECORDINGS[case.name]), (
                f"{case.name} is marked changed but was recorded with the new answer"
            )
        if case.adjusted is not None:
            no_ops = http_corpus.adjusted_no_ops(case.adjusted, RECORDINGS[case.name], RECORDINGS)
            assert not no_ops, f"{case.name} is marked adjusted, but: " + "; ".join(no_ops)


def test_adjusted_cases_borrow_only_unmarked_answers() -> None:
    """An adjusted case answered like another case takes that case's recording, which must
    itself be unmarked (so its own replay vouches that the edge still gives it)."""
    cases = {case.name: case for case in http_corpus.CASES}
    for case in http_corpus.CASES:
        like = case.adjusted.like if case.adjusted is not None else None
        if like is not None:
            assert like in cases, f"{case.name}: like {like}, which is not a case"
            other = cases[like]
            assert (other.changed, other.adjusted) == (None, None), (
                f"{case.name}: like {like}, which is marked itself"
            )


def _describe(case: Case) -> str:
    request = case.request if len(case.request) <= 300 else case.request[:300] + b"..."
    return f"{case.name} on the {case.node} node: {request!r}"


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in http_corpus.CASES])
def test_replay(env: Env, case: Case) -> None:
    entry = RECORDED.get(case.name)
    if entry is None:
        pytest.fail(f"{case.name} is not in the corpus: re-record it")
    observed = env.run(case)
    if case.changed is not None:
        problems = http_corpus.check_change(case.changed, observed)
        if problems:
            pytest.fail(
                f"{_describe(case)}\nchanged on purpose ({case.changed.reason}), but:\n  "
                + "\n  ".join(problems)
                + "\nrecorded then -> now:\n"
                + (http_corpus.diff(entry["observed"], observed) or "(as recorded)")
            )
        return
    if case.adjusted is not None:
        problems = http_corpus.check_adjusted(
            case.adjusted, entry["observed"], RECORDINGS, observed
        )
        if problems:
            pytest.fail(
                f"{_describe(case)}\nadjusted on purpose ({case.adjusted.reason}), but:\n  "
                + "\n  ".join(problems)
            )
        return
    if observed != entry["observed"]:
        pytest.fail(
            f"{_describe(case)}\nthe answer differs from the recording:\n"
            + http_corpus.diff(entry["observed"], observed)
        )
