"""Batch scoring: the top-k courses for every student, in chunks, into a Parquet file, for any model family.

For NCF models the MLP tower's first layer splits as W₁[p; q] = W₁ˢp + W₁ᶜq, so the course half is computed once for the whole
run (`NCFModel.course_cache`) and each chunk of students adds its own half to it; the GMF part is one matmul per
chunk. Already-taken courses are masked before the top-k. Memory is bounded by `chunk_size × n_courses` scores
(and the tower's activations for `max_pairs` pairs at a time), whatever the number of students.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from electives.data.interactions import ItemLookup
from electives.errors import DataError
from electives.limits import MAX_CHUNK, MAX_SCORE_ALL_K
from electives.models.epochs import bar_disabled
from electives.models.interface import Model
from electives.models.training import NCF

__all__ = ["ScoringReport", "TopK", "top_k", "write_top_k"]


@dataclass(frozen=True)
class TopK:
    """One chunk: for `students[i]`, `courses[i, j]` is its (j+1)-th best untaken course with `scores[i, j]`
    (the model's output: a normalised grade or a score); -1 and NaN where the student has fewer than k untaken courses."""

    students: np.ndarray  # (n,) int64 student indices
    courses: np.ndarray  # (n, k) int64 course indices
    scores: np.ndarray  # (n, k) float32


@dataclass(frozen=True)
class ScoringReport:
    students: int
    pairs: int  # student–course pairs scored (students × courses)
    rows: int  # rows written
    seconds: float

    @property
    def pairs_per_second(self) -> float:
        return self.pairs / self.seconds if self.seconds > 0 else float("inf")


def _check(k: int, chunk_size: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= MAX_SCORE_ALL_K:
        raise DataError(f"k must be a whole number from 1 to {MAX_SCORE_ALL_K}, got {k!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int | np.integer) or not 1 <= chunk_size <= MAX_CHUNK:
        raise DataError(f"chunk size must be a whole number from 1 to {MAX_CHUNK}, got {chunk_size!r}")


def _ranker(fitted: Model) -> tuple[Callable[[np.ndarray], torch.Tensor], Callable[[torch.Tensor], torch.Tensor], str]:
    """What a chunk is ranked on, how the kept values become outputs, and the device. An NCF ranks on its
    logits on its own device (the sigmoid is monotone: only the k kept are transformed), with the course half of
    the tower computed once; any other family through its `score_all`."""
    if isinstance(fitted, NCF):
        model = fitted.model.eval()
        cache = model.course_cache()
        return (
            lambda chunk: model.score_all(torch.from_numpy(chunk).to(fitted.device), cache=cache),
            torch.sigmoid,
            fitted.device,
        )
    return lambda chunk: torch.from_numpy(np.asarray(fitted.score_all(chunk), dtype=np.float32)), lambda x: x, "cpu"


@torch.no_grad()
def top_k(
    fitted: Model,
    k: int = 10,
    *,
    students: np.ndarray | None = None,
    exclude: ItemLookup | None = None,
    chunk_size: int = 4096,
    progress: bool = False,
) -> Iterator[TopK]:
    """Yield the top-`k` untaken courses of `students` (default: all), `chunk_size` students at a time.

    `exclude` holds each student's taken courses (same index space as the model); they are never returned.
    """
    _check(k, chunk_size)
    n_students, n_courses = fitted.n_students, fitted.n_courses
    if exclude is not None and (len(exclude.indptr) - 1, exclude.n_courses) != (n_students, n_courses):
        raise DataError(
            f"exclusions cover {len(exclude.indptr) - 1}×{exclude.n_courses} students × courses, "
            f"the model {n_students}×{n_courses}"
        )
    every = np.arange(n_students, dtype=np.int64) if students is None else np.asarray(students, np.int64)
    if len(every) and (every.min() < 0 or every.max() >= n_students):
        raise DataError(f"student indices must be in 0..{n_students - 1}")
    kk = min(k, n_courses)
    ranked, output, device = _ranker(fitted)
    bar = tqdm(total=len(every), disable=bar_disabled(progress), unit="student", desc="scoring")
    try:
        for i in range(0, len(every), chunk_size):
            chunk = every[i : i + chunk_size]
            logits = ranked(chunk)
            if exclude is not None:
                mask = torch.from_numpy(exclude.mask(chunk)).to(device)
                logits.masked_fill_(mask, float("-inf"))
            top, idx = torch.topk(logits, kk, dim=1)
            scores = output(top).float().cpu().numpy()
            courses = idx.cpu().numpy().astype(np.int64)
            gone = ~np.isfinite(top.cpu().numpy())
            courses[gone], scores[gone] = -1, np.nan
            if kk < k:
                pad = k - kk
                courses = np.pad(courses, ((0, 0), (0, pad)), constant_values=-1)
                scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=np.nan)
            bar.update(len(chunk))
            yield TopK(chunk, courses, scores)
    finally:
        bar.close()


def write_top_k(
    fitted: Model,
    out: Path | str,
    student_ids: tuple[str, ...] | list[str],
    course_ids: tuple[str, ...] | list[str],
    k: int = 10,
    *,
    exclude: ItemLookup | None = None,
    chunk_size: int = 4096,
    points: tuple[float, float] | None = None,
    progress: bool = False,
) -> ScoringReport:
    """Write `student, rank, course, score` rows (k per student, best first) to the Parquet file `out`.

    `points = (low, span)` turns the normalised score into the grade scale's points (explicit models). The file
    is written to a temporary sibling and renamed at the end, so `out` is never half-written.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    _check(k, chunk_size)
    out = Path(out)
    if not out.parent.is_dir():
        raise DataError(f"--out {out}: the directory {out.parent} does not exist")
    if len(student_ids) != fitted.n_students or len(course_ids) != fitted.n_courses:
        raise DataError("the id maps do not match the model's students and courses")
    student_arr = pa.array(list(student_ids), type=pa.string())
    course_dict = pa.array(list(course_ids), type=pa.string())
    schema = pa.schema(
        [
            ("student", pa.string()),
            ("rank", pa.int16()),
            ("course", pa.dictionary(pa.int32(), pa.string())),
            ("score", pa.float32()),
        ]
    )
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    start = time.perf_counter()
    rows = 0
    try:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for part in top_k(fitted, k, exclude=exclude, chunk_size=chunk_size, progress=progress):
                keep = part.courses >= 0
                r, j = np.nonzero(keep)
                score = part.scores[r, j]
                if points is not None:
                    score = points[0] + score * points[1]
                table = pa.table(
                    {
                        "student": student_arr.take(pa.array(part.students[r])),
                        "rank": pa.array((j + 1).astype(np.int16)),
                        "course": pa.DictionaryArray.from_arrays(
                            pa.array(part.courses[r, j].astype(np.int32)), course_dict
                        ),
                        "score": pa.array(score.astype(np.float32)),
                    },
                    schema=schema,
                )
                writer.write_table(table)
                rows += len(r)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - start
    return ScoringReport(fitted.n_students, fitted.n_students * fitted.n_courses, rows, seconds)
