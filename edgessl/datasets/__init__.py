"""Dataset loaders (numpy only), shared by the trainer, the simulator and the benchmarks.

A *dataset spec* ``SCHEME:ARGUMENT`` selects a source; :func:`load` dispatches on the scheme through a
registry (:func:`register_source`). Built in:

=====================  ======================================================================
``npz:PATH``           our ``.npz`` window layout or stream layout (:mod:`.npz`);
                       ``npz:PATH?split=S[,length=N]``: a stream's labelled recordings as windows
``ucr:PATH``           UCR/UEA archive files ``NAME_TRAIN.ts|.arff|.tsv`` or the prefix ``DIR/NAME`` (:mod:`.ucr`)
``har:DIR``            the UCI HAR folder (:mod:`.har`)
``csv:PATH[?rate=HZ]`` a CSV recording: a timestamp column then one column per channel (:mod:`.csv_recording`)
``dir:PATH``           a data set folder of recorded sessions, CSV + JSON sidecar each (:mod:`.folder`, :mod:`.session`)
``synthetic[:k=v,..]`` the embedded synthetic IMU gesture generator (:mod:`.synthetic`)
=====================  ======================================================================

Windowed sources give a :class:`WindowDataset`; continuous sources give a :class:`StreamDataset`.
Missing values are forward- then backward-filled along time per channel; a channel that is entirely
missing is an error naming the file and the channel. Malformed files raise :class:`DataFormatError`
naming the file and the line. ``docs/data.md`` describes every spec and layout.
"""

from edgessl.datasets.csv_recording import read_csv_recording, write_csv_recording
from edgessl.datasets.folder import load_dir
from edgessl.datasets.har import HAR_SIGNALS, load_har, load_har_spec
from edgessl.datasets.labelled import describe, is_labelled_stream, labelled_windows, pool_windows
from edgessl.datasets.npz import SHARED_FILES, load_npz, read_npz
from edgessl.datasets.registry import (
    DATA_DIR_ENV,
    Dataset,
    Loader,
    default_data_dir,
    load,
    load_stream,
    load_windows,
    parse_options,
    register_source,
    registered_sources,
    resolve_path,
)
from edgessl.datasets.session import SessionWriter, load_csv_spec, read_session
from edgessl.datasets.synthetic import load_synthetic
from edgessl.datasets.types import (
    CHANNEL_ALIASES,
    DataFormatError,
    StreamDataset,
    WindowDataset,
    resolve_channels,
    unit_from_channel,
)
from edgessl.datasets.ucr import load_ucr, load_ucr_spec, read_arff, read_ts, read_tsv, write_arff, write_ts, write_tsv

__all__ = [
    "CHANNEL_ALIASES",
    "DATA_DIR_ENV",
    "HAR_SIGNALS",
    "SHARED_FILES",
    "DataFormatError",
    "Dataset",
    "Loader",
    "SessionWriter",
    "StreamDataset",
    "WindowDataset",
    "default_data_dir",
    "describe",
    "is_labelled_stream",
    "labelled_windows",
    "load",
    "load_dir",
    "load_har",
    "load_stream",
    "load_ucr",
    "load_windows",
    "parse_options",
    "pool_windows",
    "read_arff",
    "read_csv_recording",
    "read_npz",
    "read_session",
    "read_ts",
    "read_tsv",
    "register_source",
    "registered_sources",
    "resolve_channels",
    "resolve_path",
    "unit_from_channel",
    "write_arff",
    "write_csv_recording",
    "write_ts",
    "write_tsv",
]

register_source("npz", load_npz)
register_source("ucr", load_ucr_spec)
register_source("har", load_har_spec)
register_source("csv", load_csv_spec)
register_source("synthetic", load_synthetic)
register_source("dir", load_dir)
