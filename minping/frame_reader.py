"""The frame reader: a frame file checked a chunk at a time (see :mod:`minping.frame_file`)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from minping.errors import InputError, Problem
from minping.frame_file import (
    _HEADER_FIELD,
    HEADER_ALIASES,
    FrameFile,
    SkippedRow,
    normalize_header,
)
from minping.phones import PhoneNormalizer, e164_of_key, key_of_e164
from minping.tables import open_table

__all__ = ["FrameChunk", "FrameReader", "read_frame"]


# ---------------------------------------------------------------------------
# reading


def _label_lookup(mapping: Mapping[str, str] | None) -> dict[str, str] | None:
    if mapping is None:
        return None
    out: dict[str, str] = {}
    for label, ident in mapping.items():
        out[str(label).strip().casefold()] = ident
    for label, ident in mapping.items():
        out[str(label).strip()] = ident
    return out


class _Labels:
    """Group or town cells → codes into ``ids``, each distinct cell looked up once."""

    def __init__(self, what: str, mapping: Mapping[str, str] | None):
        self.what = what
        self.lookup = _label_lookup(mapping)
        self.known = sorted(set(mapping.values())) if mapping else []
        self.ids: list[str] = list(self.known)
        # how a file spells each id (the first label that is not the id itself, e.g. the
        # Chinese name 各类群众代表), for messages: users never see the internal ids
        self.spelled: dict[str, str] = {}
        self.seen: dict[str, str] = {}  # the first spelling met in this file, per id
        for label, ident in (mapping or {}).items():
            if str(label) != ident:
                self.spelled.setdefault(ident, str(label))
        self._code = {ident: i for i, ident in enumerate(self.ids)}

    def _code_of(self, raw: str) -> tuple[int, str | None]:
        if not raw:
            return -1, f"{self.what} is empty"
        if self.lookup is None:
            ident = raw
        else:
            ident = self.lookup.get(raw) or self.lookup.get(raw.casefold())
            if ident is None:
                return -1, (f"unknown {self.what}; expected one of: "
                            + ", ".join(self.spelled.get(k, k) for k in self.known))
        self.seen.setdefault(ident, raw)
        code = self._code.get(ident)
        if code is None:
            code = self._code[ident] = len(self.ids)
            self.ids.append(ident)
        return code, None

    def spell(self, ident: str | None) -> str | None:
        """``ident`` as the file would spell it (its configured name)."""
        if ident is None:
            return None
        return self.seen.get(ident) or self.spelled.get(ident, ident)

    def codes(self, column: list[str]) -> tuple[np.ndarray, dict[int, str]]:
        """Codes (``-1`` where bad) and the reason per bad position."""
        found = {u: self._code_of(str(u)) for u in dict.fromkeys(column)}
        code = {u: c for u, (c, _) in found.items()}
        codes = np.fromiter(map(code.__getitem__, column), np.int64, len(column))
        reasons: dict[int, str] = {}
        if any(c < 0 for c in code.values()):
            for i in np.flatnonzero(codes < 0).tolist():
                reasons[i] = found[column[i]][1] or "invalid"
        return codes, reasons


@dataclass(frozen=True)
class FrameChunk:
    """Good contacts from one stretch of the file, column by column.

    ``keys`` are the E.164 numbers as integers (:func:`minping.phones.key_of_e164`),
    ``groups``/``towns`` codes into :attr:`FrameReader.group_ids` /
    :attr:`FrameReader.town_ids` (town ``-1``: no town column), ``source_rows``
    the rows in the file, ``attributes`` the other columns by header.
    """

    keys: np.ndarray
    groups: np.ndarray
    towns: np.ndarray
    source_rows: np.ndarray
    attributes: Mapping[str, list[str]]

    def __len__(self) -> int:
        return len(self.keys)

    def phones(self) -> list[str]:
        """The E.164 numbers."""
        return [e164_of_key(k) for k in self.keys.tolist()]


def _sorted_keys(numbers: Collection[str], normalizer: PhoneNormalizer) -> np.ndarray:
    keys = []
    for d in numbers:
        e, _ = normalizer.normalize(str(d).strip())
        if e is not None:
            keys.append(key_of_e164(e))
    return np.unique(np.array(keys, dtype=np.int64))


class FrameReader:
    """Read, validate and normalise a frame file (CSV or XLSX), chunk by chunk.

    Parameters are those of :func:`read_frame`; ``chunk_rows`` rows are
    checked at a time.  Opening reads the header (and raises
    :class:`~minping.errors.InputError` when the file cannot be read at all);
    :meth:`chunks` yields the good contacts.  Once it is exhausted,
    ``problems``, ``suppressed``, ``already_in_frame``, ``rejected_cells`` and
    ``rows_read`` are complete.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        encoding: str | None = None,
        region: str = "CN",
        known_groups: Mapping[str, str] | None = None,
        known_towns: Mapping[str, str] | None = None,
        do_not_call: Collection[str] = frozenset(),
        existing_phones: Collection[str] | Mapping[str, tuple[str, str | None]] = frozenset(),
        sheet: str | None = None,
        progress: Callable[[int], None] | None = None,
        chunk_rows: int = 50_000,
        sha256: str | None = None,
    ):
        table = open_table(path, encoding=encoding, sheet=sheet, sha256=sha256,
                           check_first=False)
        self.path = table.path
        self.encoding = table.encoding
        self.sha256 = table.sha256
        self._blocks = table.blocks(min(chunk_rows, 4096))  # small: re-cut in chunks()
        self._pending: list[tuple[int, list[list[str]]]] = []
        self._read_header()
        self.progress = progress
        self.chunk_rows = chunk_rows
        self.normalizer = PhoneNormalizer(region)
        self.groups = _Labels("group", known_groups)
        self.towns = _Labels("town", known_towns)
        self._dnc = _sorted_keys(do_not_call, self.normalizer)
        self._existing_map = existing_phones if isinstance(existing_phones, Mapping) else None
        self._existing = _sorted_keys(
            existing_phones.keys() if self._existing_map is not None else existing_phones,
            self.normalizer)
        self._seen_keys = np.zeros(0, dtype=np.int64)
        self._seen_rows = np.zeros(0, dtype=np.int64)
        self.problems: list[Problem] = []
        self.suppressed: list[SkippedRow] = []
        self.already_in_frame: list[SkippedRow] = []
        self.rejected_cells: dict[int, tuple[str, ...]] = {}
        self.rows_read = 0

    @property
    def group_ids(self) -> list[str]:
        return self.groups.ids

    @property
    def town_ids(self) -> list[str]:
        return self.towns.ids

    @property
    def has_town(self) -> bool:
        return self._tj is not None

    # -- the header: the first row (within the first 10 non-empty rows) naming a phone column
    def _read_header(self) -> None:
        name = self.path
        header_row: tuple[int, list[str]] | None = None
        skipped: list[tuple[int, list[str]]] = []
        for start, rows in self._blocks:
            for k, raw in enumerate(rows):
                cells = [c.strip() for c in raw]
                if any(cells):
                    if any(_HEADER_FIELD.get(normalize_header(c)) == "phone" for c in cells):
                        header_row = (start + k, cells)
                        if k + 1 < len(rows):  # the data rows after it come first
                            self._pending.append((start + k + 1, rows[k + 1:]))
                        break
                    skipped.append((start + k, cells))
                    if len(skipped) >= 10:
                        break
            if header_row is not None or len(skipped) >= 10:
                break
        if header_row is None:
            if not skipped:
                raise InputError([Problem(name, None, None, None, "the file has no rows")])
            phone_names = "/".join(HEADER_ALIASES["phone"][:4] + ("phone", "mobile"))
            raise InputError([Problem(
                name, skipped[0][0], "phone", ",".join(skipped[0][1]),
                f"no phone column in the header (expected one of {phone_names})")])
        header_num, header = header_row
        self._header_row = header_num
        header = [h.replace("\ufeff", "").strip() for h in header]
        col_of: dict[str, int] = {}
        attr_cols: list[tuple[str, int]] = []
        problems: list[Problem] = []
        columns: dict[str, str] = {}
        for j, h in enumerate(header):
            f = _HEADER_FIELD.get(normalize_header(h)) if h else None
            if f in ("phone", "group", "town"):
                if f in col_of:
                    problems.append(Problem(
                        name, header_num, h, h,
                        f"column {h!r} and column {header[col_of[f]]!r} both give the {f}"))
                    continue
                col_of[f] = j
                columns[h] = f
            else:
                if f == "name":
                    columns[h] = "name"
                attr_cols.append((h or f"column {j + 1}", j))
        if "group" not in col_of:
            problems.append(Problem(
                name, header_num, "group", ",".join(header),
                "no group column in the header (expected one of 类别/群体/组别/group/category)"))
        if problems:
            raise InputError(problems)
        self.header = tuple(header)
        self.columns = columns
        self.attr_cols = attr_cols
        self._pj, self._gj, self._tj = col_of["phone"], col_of["group"], col_of.get("town")

    def chunks(self) -> Iterator[FrameChunk]:
        """Yield the good contacts, a chunk of ``chunk_rows`` rows at a time, in file order."""
        start = self._pending[0][0] if self._pending else None
        stream = itertools.chain.from_iterable(
            rows for _, rows in itertools.chain(self._pending, self._blocks))
        self._pending = []
        while True:
            rows = list(itertools.islice(stream, self.chunk_rows))
            if not rows:
                break
            if start is None:  # the header was the last row of a block
                start = self._header_row + 1
            n = len(rows)
            chunk = self._check(start, rows)
            del rows  # not alive while the next chunk is read
            yield chunk
            del chunk
            start += n
            if self.progress is not None and n == self.chunk_rows:
                self.progress(self.rows_read)
        if self.progress is not None:
            self.progress(self.rows_read)

    # -- one chunk, column by column (the rows are numbered start, start + 1, ...)
    def _check(self, start: int, raw: list[list[str]]) -> FrameChunk:
        ncols = len(self.header)
        rows = raw
        extra: dict[int, tuple[int, str]] = {}
        if set(map(len, raw)) != {ncols}:  # short rows are padded, long ones cut
            rows = []
            for k, cells in enumerate(raw):
                n = len(cells)
                if n == ncols:
                    rows.append(cells)
                elif n < ncols:
                    rows.append(cells + [""] * (ncols - n))
                else:
                    rows.append(cells[:ncols])
                    tail = [t for t in (c.strip() for c in cells[ncols:]) if t]
                    if tail:
                        extra[k] = (n, ",".join(tail))
        strip = str.strip
        cols = [list(map(strip, c)) for c in zip(*rows, strict=True)] if rows else [[] for _ in range(ncols)]
        pj, gj, tj = self._pj, self._gj, self._tj
        ph, gr = cols[pj], cols[gj]
        tw = cols[tj] if tj is not None else None
        # empty rows are skipped (most rows have a phone or a group: check only the others)
        n = len(rows)
        maybe_empty = np.fromiter(map(len, ph), np.int64, n) + np.fromiter(map(len, gr), np.int64, n)
        if tw is not None:
            maybe_empty += np.fromiter(map(len, tw), np.int64, n)
        empty = [k for k in np.flatnonzero(maybe_empty == 0).tolist()
                 if k not in extra and not any(c[k] for c in cols)]
        if empty:
            keep = np.ones(n, dtype=bool)
            keep[empty] = False
            pos = np.flatnonzero(keep)
            at = pos.tolist()
            cols = [[c[k] for k in at] for c in cols]
            ph, gr = cols[pj], cols[gj]
            tw = cols[tj] if tj is not None else None
            extra = {i: extra[k] for i, k in enumerate(at) if k in extra} if extra else {}
        else:
            pos = np.arange(n)
        self.rows_read += len(pos)
        rownum = pos + start

        keys, phone_why = self.normalizer.normalize_list(ph)
        gcodes, group_why = self.groups.codes(gr)
        if tw is not None:
            tcodes, town_why = self.towns.codes(tw)
        else:
            tcodes, town_why = np.full(len(pos), -1, dtype=np.int64), {}
        dup_of = self._duplicates(keys, rownum)

        bad = dup_of >= 0
        for why in (phone_why, group_why, town_why, extra):
            if why:
                bad[list(why)] = True

        # numbers already in the frame: skipped when they agree, a problem when they do not
        already = np.zeros(len(pos), dtype=bool)
        mismatch: dict[int, str] = {}
        if len(self._existing):
            for i in np.flatnonzero(~bad & np.isin(keys, self._existing)).tolist():
                e164 = e164_of_key(int(keys[i]))
                if self._existing_map is not None:
                    g0, t0 = self._existing_map[e164]
                    t = self.towns.ids[tcodes[i]] if tcodes[i] >= 0 else None
                    if g0 != self.groups.ids[gcodes[i]] or (tj is not None and t0 != t):
                        mismatch[i] = (f"{e164} is already in the frame as group "
                                       f"{self.groups.spell(g0)!r}, town {self.towns.spell(t0)!r}")
                        bad[i] = True
                        continue
                already[i] = True
                self.already_in_frame.append(SkippedRow(int(rownum[i]), e164,
                                                        "already in the frame"))
        for i in np.flatnonzero(bad).tolist():
            self._row_problems(i, int(rownum[i]), ph, gr, tw, keys, dup_of, extra,
                               phone_why, group_why, town_why, mismatch)
            self.rejected_cells[int(rownum[i])] = tuple(c.strip() for c in raw[int(pos[i])])
        good = ~bad & ~already
        if len(self._dnc):
            dnc = good & np.isin(keys, self._dnc)
            for i in np.flatnonzero(dnc).tolist():
                self.suppressed.append(SkippedRow(int(rownum[i]), e164_of_key(int(keys[i])),
                                                  "on the do-not-call list"))
            good &= ~dnc
        if good.all():
            attributes = {label: cols[j] for label, j in self.attr_cols}
        else:
            take = np.flatnonzero(good).tolist()
            attributes = {label: [cols[j][k] for k in take] for label, j in self.attr_cols}
        return FrameChunk(
            keys=keys[good], groups=gcodes[good], towns=tcodes[good], source_rows=rownum[good],
            attributes=attributes,
        )

    def _duplicates(self, keys: np.ndarray, rownum: np.ndarray) -> np.ndarray:
        """The earlier row of each number seen before in the file (``-1``: first time)."""
        dup_of = np.full(len(keys), -1, dtype=np.int64)
        valid = np.flatnonzero(keys >= 0)
        if not len(valid):
            return dup_of
        kv = keys[valid]
        order = np.argsort(kv, kind="stable")
        ks = kv[order]
        first = np.ones(len(ks), dtype=bool)
        first[1:] = ks[1:] != ks[:-1]
        run_start = np.maximum.accumulate(np.where(first, np.arange(len(ks)), 0))
        earlier = np.where(first, -1, rownum[valid][order][run_start])
        if len(self._seen_keys):
            at = np.minimum(np.searchsorted(self._seen_keys, ks), len(self._seen_keys) - 1)
            seen = self._seen_keys[at] == ks
            earlier = np.where(seen, self._seen_rows[at], earlier)
        else:
            seen = np.zeros(len(ks), dtype=bool)
        dup_of[valid[order]] = earlier
        new = first & ~seen
        add = ks[new]  # sorted, each once, none seen before: merged in by position
        at = np.searchsorted(self._seen_keys, add)
        self._seen_keys = np.insert(self._seen_keys, at, add)
        self._seen_rows = np.insert(self._seen_rows, at, rownum[valid][order][new])
        return dup_of

    def _row_problems(self, i, rn, ph, gr, tw, keys, dup_of, extra_at, phone_why, group_why,
                      town_why, mismatch) -> None:
        """Every problem of one row, in the order of the columns' checks."""
        name = self.path
        header = self.header
        ph_name = header[self._pj]
        out = self.problems
        if i in extra_at:
            n, tail = extra_at[i]
            out.append(Problem(name, rn, None, tail,
                               f"the row has {n} cells but the header has {len(header)}"))
        if i in phone_why:
            out.append(Problem(name, rn, ph_name, str(ph[i]), phone_why[i]))
        if i in group_why:
            out.append(Problem(name, rn, header[self._gj], str(gr[i]), group_why[i]))
        if i in town_why:
            out.append(Problem(name, rn, header[self._tj], str(tw[i]), town_why[i]))
        if dup_of[i] >= 0:
            out.append(Problem(name, rn, ph_name, str(ph[i]),
                               f"duplicate: {e164_of_key(int(keys[i]))} is already on row "
                               f"{int(dup_of[i])}"))
        if i in mismatch:
            out.append(Problem(name, rn, ph_name, str(ph[i]), mismatch[i]))


def read_frame(
    path: str | os.PathLike,
    *,
    encoding: str | None = None,
    region: str = "CN",
    known_groups: Mapping[str, str] | None = None,
    known_towns: Mapping[str, str] | None = None,
    do_not_call: Collection[str] = frozenset(),
    existing_phones: Collection[str] | Mapping[str, tuple[str, str | None]] = frozenset(),
    sheet: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> FrameFile:
    """Read, validate and normalise a frame file (CSV or XLSX).

    Parameters
    ----------
    path : path-like
        A ``.xlsx``/``.xlsm`` workbook (first sheet unless ``sheet``) or a CSV file.
    encoding : str, optional
        The CSV's encoding; detected when omitted (see :func:`detect_encoding`).
    region : str, default "CN"
        Region for numbers written without a country code.
    known_groups, known_towns : mapping label -> id, optional
        Every accepted label (id, Chinese name, English name, ...) mapped to
        the id; matching ignores case and surrounding spaces.  ``None``
        accepts any non-empty value as the id.
    do_not_call : collection of str
        Numbers never to call (E.164 or any form :class:`PhoneNormalizer`
        accepts); rows with them are listed in ``suppressed``.
    existing_phones : collection of str, or mapping E.164 -> (group, town)
        Numbers already in the frame.  A row whose number is there is listed
        in ``already_in_frame`` and not imported — so re-importing a file is a
        no-op.  With a mapping, a row whose group or town differs from the
        stored contact's is a problem instead.
    sheet : str, optional
        Worksheet name for a workbook.
    progress : callable, optional
        Called with the number of data rows processed so far, every 50,000
        rows and once at the end.

    Returns
    -------
    FrameFile

    Raises
    ------
    minping.errors.InputError
        When the file cannot be read at all: missing, undecodable, no header,
        no phone or group column, a field given by two columns.  Row-level
        problems do not raise; they are in ``FrameFile.problems``.
    """
    reader = FrameReader(path, encoding=encoding, region=region, known_groups=known_groups,
                         known_towns=known_towns, do_not_call=do_not_call,
                         existing_phones=existing_phones, sheet=sheet, progress=progress)
    phones: list[str] = []
    groups: list[str] = []
    towns: list[str | None] = []
    source_rows: list[int] = []
    attrs: dict[str, list[str]] = {label: [] for label, _ in reader.attr_cols}
    for chunk in reader.chunks():
        phones += chunk.phones()
        groups += [reader.group_ids[c] for c in chunk.groups.tolist()]
        towns += [reader.town_ids[c] if c >= 0 else None for c in chunk.towns.tolist()]
        source_rows += chunk.source_rows.tolist()
        for label, values in chunk.attributes.items():
            attrs[label] += values
    return FrameFile(
        path=reader.path,
        encoding=reader.encoding,
        sha256=reader.sha256,
        header=reader.header,
        columns=reader.columns,
        phones=tuple(phones),
        groups=tuple(groups),
        towns=tuple(towns),
        source_rows=tuple(source_rows),
        attributes={k: tuple(v) for k, v in attrs.items()},
        problems=tuple(reader.problems),
        suppressed=tuple(reader.suppressed),
        already_in_frame=tuple(reader.already_in_frame),
        rejected_cells=reader.rejected_cells,
        rows_read=reader.rows_read,
    )


