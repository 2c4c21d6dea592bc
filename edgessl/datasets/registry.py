"""Dataset spec strings: where the shared data lives, and the registry that maps a spec's scheme to a loader.

A spec is ``SCHEME:ARGUMENT`` (``npz:uci_har.npz``, ``synthetic:seed=1``); :func:`load` hands the argument
to the loader registered for the scheme. The package registers the built-in sources; a benchmark or a
user registers its own with :func:`register_source`.
"""

from __future__ import annotations

import os
import re
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from edgessl.datasets.labelled import is_labelled_stream, labelled_windows
from edgessl.datasets.types import (
    DataFormatError,
    SpecOptionError,
    StreamDataset,
    WindowDataset,
    to_canonical_units,
    unit_problem,
)
from edgessl.errors import EdgesslError
from edgessl.preprocess import PreprocessError

__all__ = [
    "DATA_DIR_ENV",
    "Dataset",
    "Loader",
    "default_data_dir",
    "load",
    "load_stream",
    "load_windows",
    "parse_options",
    "register_source",
    "registered_sources",
    "resolve_path",
]

DATA_DIR_ENV = "EDGESSL_DATA_DIR"

Dataset = WindowDataset | StreamDataset
Loader = Callable[[str], Dataset]
"""A loader takes the spec's text after ``SCHEME:`` (path and ``?`` options; may be empty)."""

_SOURCES: dict[str, Loader] = {}


def register_source(scheme: str, loader: Loader, *, replace: bool = False) -> None:
    """Make ``SCHEME:...`` specs load through ``loader``.

    Raises:
        ValueError: the scheme is not a lower-case word, or another loader already has it (unless
            ``replace``).
    """
    if not scheme.isidentifier() or scheme != scheme.lower():
        raise ValueError(f"a dataset scheme is a lower-case word (npz, ucr ...); got {scheme!r}")
    old = _SOURCES.get(scheme)
    if old is not None and old is not loader and not replace:
        raise ValueError(f"dataset scheme {scheme!r} is already registered to {old.__module__}.{old.__qualname__}")
    _SOURCES[scheme] = loader


def registered_sources() -> list[str]:
    """The schemes :func:`load` knows, sorted."""
    return sorted(_SOURCES)


def load(spec: str) -> Dataset:
    """Load a dataset from a spec string ``SCHEME:ARGUMENT`` (see ``docs/data.md``)."""
    scheme, _, arg = spec.partition(":")
    scheme = scheme.strip().lower()
    loader = _SOURCES.get(scheme)
    if loader is None:
        hint = ""
        if not arg and Path(spec).expanduser().exists():  # a bare path: say which scheme reads it
            p = Path(spec).expanduser()
            guess = "dir" if p.is_dir() else {".csv": "csv", ".npz": "npz", ".ts": "ucr", ".arff": "ucr"}.get(p.suffix.lower())
            hint = f" (did you mean {guess}:{spec}?)" if guess else ""
        raise ValueError(f"unknown dataset kind {scheme!r} in {spec!r}{hint}; expected a spec SCHEME:PATH with "
                         f"SCHEME one of {', '.join(registered_sources())}")
    named = Path(arg.partition("?")[0]).name or spec  # every data error names the file it is about
    try:
        ds = loader(arg)
        to_canonical_units(ds)  # a file's m/s², mg or deg/s become the g and rad/s that models and boards use
        problem = unit_problem(ds, spec if scheme in ("csv", "dir") else None)
        if problem:  # values in mg or m/s² under a g label train a model that never sees the board's gestures
            raise DataFormatError(f"{spec}: {problem}")
        return ds
    except (PreprocessError, DataFormatError) as e:
        if named in str(e) and isinstance(e, DataFormatError):
            raise
        raise DataFormatError(str(e) if named in str(e) else f"{spec}: {e}") from e
    except EdgesslError:
        raise
    except (EOFError, TypeError, IndexError, KeyError, ValueError, UnicodeDecodeError, zipfile.BadZipFile,
            zlib.error, NotImplementedError) as e:  # fmt: skip  (zipfile: an unsupported compression method)
        # a malformed user file that a loader did not anticipate: still a data error that names the file
        raise DataFormatError(f"{spec}: cannot be read as {scheme} data ({type(e).__name__}: {e})") from e


def load_windows(spec: str) -> WindowDataset:
    """Load a windowed dataset: a labelled stream (``dir:``, a labelled ``csv:``) becomes its labelled windows
    (:func:`edgessl.datasets.labelled.labelled_windows`); another stream layout is an error that says how to
    get windows from it."""
    ds = load(spec)
    if is_labelled_stream(ds):
        assert isinstance(ds, StreamDataset)
        return labelled_windows(ds)
    if isinstance(ds, StreamDataset) and "input_mode" in ds.extra:
        raise DataFormatError(f"{spec}: no labelled performances ({ds.summary()}); add a 'label' column or record "
                              "labelled sessions (edgessl record --label NAME); unlabelled data serves pretraining")
    if isinstance(ds, StreamDataset):
        raise DataFormatError(
            f"{spec}: this is a continuous-stream dataset ({ds.summary()}); for labelled windows give one label "
            "per recording and npz:PATH?split=S, or, with a label per sample, write it as a CSV with a 'label' "
            "column (csv:PATH: each run of one label is a performance), or use a windowed layout (X_train ...)"
        )
    return ds


def load_stream(spec: str) -> StreamDataset:
    """Load a continuous-stream dataset."""
    ds = load(spec)
    if not isinstance(ds, StreamDataset):
        raise DataFormatError(f"{spec}: expected a stream layout (signal + offsets); this is a windowed dataset")
    return ds


def default_data_dir() -> Path:
    """Where the shared data sets live: ``$EDGESSL_DATA_DIR`` or ``../shared/data`` beside the project."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def resolve_path(p: str) -> Path:
    """A bare file name that does not exist here is looked up in the shared data folder."""
    path = Path(p).expanduser()
    if not path.exists() and not path.is_absolute() and len(path.parts) == 1:
        alt = default_data_dir() / path
        if alt.exists():
            return alt
    return path


def parse_options(s: str) -> dict[str, str]:
    """``key=value,key=value`` (the part of a spec after ``?``) as a dict."""
    out = {}
    for part in filter(None, s.split(",")):
        k, eq, v = part.partition("=")
        if not eq:
            raise SpecOptionError(f"expected key=value in dataset options, got {part!r}")
        if re.search(r"[&;]\w+=", v):  # a URL's separator
            raise SpecOptionError(f"dataset options are separated by ',' (key=value,key=value); got {part!r}")
        out[k.strip()] = v.strip()
    return out


def need_path(scheme: str, arg: str) -> str:
    """The argument of a file-based scheme, or an error saying that the spec lacks a path."""
    if not arg:
        raise ValueError(f"dataset spec {scheme + ':'!r} needs a path: npz:PATH, ucr:PATH, har:DIR, csv:PATH, dir:PATH or synthetic")
    return arg
