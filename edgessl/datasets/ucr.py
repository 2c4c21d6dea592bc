"""UCR / UEA archive files: ``.ts`` (sktime), ``.arff`` (UCR numeric, UEA relational) and UCR 2018 ``.tsv``.

``ucr:PATH`` names ``NAME_TRAIN.<ext>`` (or ``_TEST``; the partner is found beside it) or the common prefix
``DIR/NAME``. The readers return ``(X [n, C, T] float32 with NaN for missing, y [n] int64, class_names)``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from edgessl.datasets.registry import need_path, parse_options
from edgessl.datasets.types import DataFormatError, WindowDataset, parse_float
from edgessl.preprocess import fill_missing, resample_to_length

__all__ = ["load_ucr", "load_ucr_spec", "read_arff", "read_ts", "read_tsv", "write_arff", "write_ts", "write_tsv"]


def load_ucr_spec(arg: str) -> WindowDataset:
    """``ucr:PATH``: a UCR/UEA train/test pair; the spec takes no options."""
    path, _, opt = need_path("ucr", arg).partition("?")
    if opts := parse_options(opt):
        raise ValueError(f"unknown ucr option(s) {sorted(opts)} in 'ucr:{arg}'; ucr: takes none")
    return load_ucr(path)


def _stack_series(series: list[np.ndarray], path: Path, unequal: str) -> np.ndarray:
    """Stack ``[C, T_i]`` series into ``[n, C, T]``; unequal lengths are stretched to the longest."""
    lengths = {s.shape[1] for s in series}
    if len(lengths) == 1:
        return np.stack(series).astype(np.float32)
    if unequal != "resample":
        raise DataFormatError(f"{path}: series have unequal lengths {sorted(lengths)[:5]}...; pass unequal='resample'")
    target = max(lengths)
    out = []
    for s in series:
        # fill before stretching so missing values do not smear into their neighbours
        s = fill_missing(s[None], str(path))[0] if np.isnan(s).any() else s
        out.append(resample_to_length(s, target))
    return np.stack(out).astype(np.float32)


def _labels_to_index(raw: list[str], declared: list[str] | None) -> tuple[np.ndarray, list[str]]:
    if declared:
        classes = list(declared)
    else:
        uniq = sorted(set(raw))
        try:
            uniq = sorted(uniq, key=float)
        except ValueError:
            pass
        classes = uniq
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[r] for r in raw], np.int64), classes


def read_ts(path: str | Path, unequal: str = "resample") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a UCR/UEA ``.ts`` file (sktime format): equal or unequal length, missing values as ``?``.

    Returns:
        ``(X [n, C, T] float32 with NaN for missing, y [n] int64, class_names)``. Unequal-length
        series are stretched to the longest one (``unequal='resample'``).
    """
    path = Path(path)
    header: dict[str, str] = {}
    declared: list[str] | None = None
    series: list[np.ndarray] = []
    labels: list[str] = []
    in_data = False
    n_dims: int | None = None
    with open(path, encoding="utf-8", errors="strict") as f:
        for lineno, raw_line in enumerate(f, 1):
            line = raw_line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                if not line.startswith("@"):
                    raise DataFormatError(f"{path}:{lineno}: expected a '@' header line or '@data'; got {line[:40]!r}")
                key, _, val = line[1:].partition(" ")
                key = key.lower()
                if key == "data":
                    in_data = True
                    if "classlabel" not in header:
                        raise DataFormatError(f"{path}:{lineno}: '@data' before '@classLabel' header")
                    continue
                header[key] = val.strip()
                if key == "classlabel":
                    parts = val.split()
                    if not parts or parts[0].lower() not in ("true", "false"):
                        raise DataFormatError(f"{path}:{lineno}: '@classLabel' must be 'true <labels...>' or 'false'")
                    if parts[0].lower() == "true":
                        declared = parts[1:]
                        if not declared:
                            raise DataFormatError(f"{path}:{lineno}: '@classLabel true' lists no labels")
                continue
            if header.get("timestamps", "false").lower() == "true":
                raise DataFormatError(f"{path}:{lineno}: timestamped .ts series are not supported")
            dims = line.split(":")
            if declared is None:
                raise DataFormatError(f"{path}:{lineno}: unlabelled .ts files carry no classes to learn")
            label = dims[-1].strip()
            dims = dims[:-1]
            if n_dims is None:
                n_dims = len(dims)
                want = header.get("dimensions")
                if want is not None and want.isdigit() and int(want) != n_dims:
                    raise DataFormatError(f"{path}:{lineno}: header says {want} dimensions; row has {n_dims}")
            if len(dims) != n_dims or n_dims == 0:
                raise DataFormatError(f"{path}:{lineno}: expected {n_dims} dimensions separated by ':'; got {len(dims)}")
            if label not in declared:
                raise DataFormatError(f"{path}:{lineno}: class label {label!r} is not among {declared}")
            rows = [[parse_float(t, path, lineno) for t in d.split(",")] for d in dims]
            lens = {len(r) for r in rows}
            if len(lens) != 1:
                raise DataFormatError(f"{path}:{lineno}: dimensions of one series have different lengths {sorted(lens)}")
            series.append(np.array(rows, np.float64))
            labels.append(label)
    if not in_data:
        raise DataFormatError(f"{path}: no '@data' section")
    if not series:
        raise DataFormatError(f"{path}: '@data' section is empty")
    y, classes = _labels_to_index(labels, declared)
    return _stack_series(series, path, unequal), y, classes


def write_ts(path: str | Path, X: np.ndarray, y: np.ndarray, class_names: list[str], name: str = "data") -> None:
    """Write ``X [n, C, T]`` (NaN as ``?``) and labels to a ``.ts`` file; the inverse of :func:`read_ts`."""
    X = np.asarray(X)
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"@problemName {name}\n@timeStamps false\n@missing {str(bool(np.isnan(X).any())).lower()}\n")
        f.write(f"@univariate {str(X.shape[1] == 1).lower()}\n@dimensions {X.shape[1]}\n@equalLength true\n")
        f.write(f"@seriesLength {X.shape[2]}\n@classLabel true {' '.join(class_names)}\n@data\n")
        for xi, yi in zip(X, y, strict=True):
            dims = [",".join("?" if np.isnan(v) else repr(float(v)) for v in ch) for ch in xi]
            f.write(":".join(dims) + f":{class_names[int(yi)]}\n")


# ----------------------------------------------------------------------------------------------
# .arff (univariate UCR and relational multivariate UEA)


def read_arff(path: str | Path, unequal: str = "resample") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a UCR (numeric attributes) or UEA (one relational attribute) ``.arff`` file."""
    path = Path(path)
    attrs: list[tuple[str, str]] = []
    declared: list[str] | None = None
    relational = False
    in_rel = False
    in_data = False
    series: list[np.ndarray] = []
    labels: list[str] = []
    with open(path, encoding="utf-8") as f:
        for lineno, raw_line in enumerate(f, 1):
            line = raw_line.strip()
            if not line or line.startswith("%"):
                continue
            low = line.lower()
            if not in_data:
                if low.startswith("@relation") and not in_rel:
                    continue
                if low.startswith("@attribute"):
                    m = re.match(r"@attribute\s+('[^']*'|\"[^\"]*\"|\S+)\s+(.*)$", line, re.I)
                    if not m:
                        raise DataFormatError(f"{path}:{lineno}: malformed @attribute line {line[:60]!r}")
                    aname, atype = m.group(1).strip("'\""), m.group(2).strip()
                    if in_rel:
                        continue  # inner attributes of the relational block: one per time step
                    if atype.lower().startswith("relational"):
                        relational = in_rel = True
                    elif atype.startswith("{"):
                        declared = [c.strip().strip("'\"") for c in atype.strip("{}").split(",")]
                    attrs.append((aname, atype))
                    continue
                if low.startswith("@end"):
                    in_rel = False
                    continue
                if low.startswith("@data"):
                    in_data = True
                    if declared is None:
                        raise DataFormatError(f"{path}:{lineno}: no nominal class attribute before @data")
                    continue
                raise DataFormatError(f"{path}:{lineno}: unexpected header line {line[:60]!r}")
            if relational:
                m = re.match(r"^(['\"])(.*)\1\s*,\s*(.+)$", line)
                if not m:
                    raise DataFormatError(f"{path}:{lineno}: expected 'dim1\\ndim2...',label for a relational row")
                body = m.group(2).replace("\\n", "\n")
                rows = [[parse_float(t, path, lineno) for t in r.split(",")] for r in body.split("\n") if r.strip()]
                label = m.group(3).strip().strip("'\"")
            else:
                toks = line.split(",")
                if len(toks) != len(attrs):
                    raise DataFormatError(f"{path}:{lineno}: expected {len(attrs)} values; got {len(toks)}")
                rows = [[parse_float(t, path, lineno) for t in toks[:-1]]]
                label = toks[-1].strip().strip("'\"")
            if len({len(r) for r in rows}) != 1:
                raise DataFormatError(f"{path}:{lineno}: dimensions of one series have different lengths")
            if label not in declared:  # type: ignore[operator]
                raise DataFormatError(f"{path}:{lineno}: class label {label!r} is not among {declared}")
            series.append(np.array(rows, np.float64))
            labels.append(label)
    if not series:
        raise DataFormatError(f"{path}: no data rows")
    y, classes = _labels_to_index(labels, declared)
    return _stack_series(series, path, unequal), y, classes


def write_arff(path: str | Path, X: np.ndarray, y: np.ndarray, class_names: list[str], name: str = "data") -> None:
    """Write a UEA-style relational ``.arff`` (multivariate) file; the inverse of :func:`read_arff`."""
    X = np.asarray(X)
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"@relation {name}\n@attribute series relational\n")
        for t in range(X.shape[2]):
            f.write(f"  @attribute t{t} numeric\n")
        f.write("@end series\n")
        f.write("@attribute target {" + ",".join(class_names) + "}\n@data\n")
        for xi, yi in zip(X, y, strict=True):
            body = "\\n".join(",".join("?" if np.isnan(v) else repr(float(v)) for v in ch) for ch in xi)
            f.write(f"'{body}',{class_names[int(yi)]}\n")


# ----------------------------------------------------------------------------------------------
# UCR .tsv (univariate: label, then values; NaN pads unequal lengths)


def read_tsv(path: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a UCR 2018 ``.tsv`` file (one series per line: label then values, tab-separated)."""
    path = Path(path)
    rows: list[list[float]] = []
    labels: list[str] = []
    with open(path, encoding="utf-8") as f:
        for lineno, raw_line in enumerate(f, 1):
            line = raw_line.rstrip("\n\r")
            if not line.strip():
                continue
            toks = line.split("\t")
            if len(toks) < 2:
                raise DataFormatError(f"{path}:{lineno}: expected a label and values separated by tabs")
            labels.append(toks[0].strip())
            rows.append([parse_float(t, path, lineno) for t in toks[1:]])
    if not rows:
        raise DataFormatError(f"{path}: no data rows")
    length = max(len(r) for r in rows)
    X = np.full((len(rows), 1, length), np.nan, np.float32)
    for i, r in enumerate(rows):
        X[i, 0, : len(r)] = r
    y, classes = _labels_to_index(labels, None)
    return X, y, classes


def write_tsv(path: str | Path, X: np.ndarray, y: np.ndarray, class_names: list[str]) -> None:
    """Write univariate ``X [n, 1, T]`` to a UCR ``.tsv`` file."""
    X = np.asarray(X)
    if X.shape[1] != 1:
        raise ValueError(f"UCR .tsv holds univariate series; got {X.shape[1]} channels")
    with open(path, "w", encoding="utf-8") as f:
        for xi, yi in zip(X, y, strict=True):
            f.write(class_names[int(yi)] + "\t" + "\t".join("NaN" if np.isnan(v) else repr(float(v)) for v in xi[0]) + "\n")


_UCR_READERS = {".ts": read_ts, ".arff": read_arff, ".tsv": read_tsv}


def _ucr_pair(spec_path: str) -> tuple[Path, Path]:
    p = Path(spec_path)
    if p.is_file():
        m = re.match(r"(.*)_(TRAIN|TEST)(\.\w+)$", p.name, re.I)
        if not m:
            raise DataFormatError(f"{p}: UCR/UEA file names end in _TRAIN.<ext> or _TEST.<ext>")
        stem, ext = m.group(1), m.group(3)
        return p.with_name(f"{stem}_TRAIN{ext}"), p.with_name(f"{stem}_TEST{ext}")
    for ext in (".ts", ".arff", ".tsv"):
        tr, te = Path(f"{spec_path}_TRAIN{ext}"), Path(f"{spec_path}_TEST{ext}")
        if tr.exists():
            return tr, te
        d = Path(spec_path)
        tr, te = d / f"{d.name}_TRAIN{ext}", d / f"{d.name}_TEST{ext}"
        if tr.exists():
            return tr, te
    raise FileNotFoundError(f"ucr:{spec_path}: found no NAME_TRAIN.ts/.arff/.tsv there")


def load_ucr(spec_path: str) -> WindowDataset:
    """Load a UCR/UEA train/test pair (``.ts``, ``.arff`` or ``.tsv``)."""
    tr, te = _ucr_pair(spec_path)
    if not te.exists():
        raise FileNotFoundError(f"{te}: the _TEST partner of {tr.name} is missing")
    reader = _UCR_READERS.get(tr.suffix.lower())
    if reader is None:
        raise DataFormatError(f"{tr}: unknown extension; expected one of {sorted(_UCR_READERS)}")
    X_train, y_train, c_train = reader(tr)
    X_test, y_test, c_test = reader(te)
    classes = list(c_train)
    for c in c_test:
        if c not in classes:
            classes.append(c)
    remap_tr = np.array([classes.index(c) for c in c_train])
    remap_te = np.array([classes.index(c) for c in c_test])
    y_train, y_test = remap_tr[y_train], remap_te[y_test]
    if X_train.shape[1:] != X_test.shape[1:]:
        if X_train.shape[1] != X_test.shape[1]:
            raise DataFormatError(f"{tr} has {X_train.shape[1]} channels but {te} has {X_test.shape[1]}")
        length = max(X_train.shape[2], X_test.shape[2])
        X_train, X_test = resample_to_length(X_train, length), resample_to_length(X_test, length)
    channels = [f"dim_{i}" for i in range(X_train.shape[1])]
    X_train = fill_missing(X_train, str(tr), channels)
    X_test = fill_missing(X_test, str(te), channels)
    units = ["unknown"] * len(channels)
    return WindowDataset(
        X_train, y_train.astype(np.int64), X_test, y_test.astype(np.int64), classes, channels, units, None, {}, tr.stem[:-6]
    )
