"""Files on disk appear complete or not at all: write beside the target, then rename.

`os.replace` is atomic on one filesystem, so a reader (or a crash) never sees a half-written
file, and a failed write leaves the previous version in place.

    atomic_write_text(path, text)           atomic_write_json(path, data)
    with atomic_path(path) as tmp: some_library.save(tmp)
    with staging_dir(folder) as tmp: ...    # a scratch folder beside the outputs
    replace_dir(new_folder, target)         # swap a whole folder in
"""
import json
import os
import shutil
import tempfile
from contextlib import contextmanager


def _parent(path):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    return folder


@contextmanager
def atomic_path(path, suffix=""):
    """A temporary path beside `path`; renamed onto `path` if the block succeeds.

    `suffix` keeps an extension for writers that pick the format from the file name.
    """
    folder = _parent(path)
    handle, staging = tempfile.mkstemp(prefix=".{}.".format(os.path.basename(path)),
                                       suffix=suffix + ".tmp", dir=folder)
    os.close(handle)
    try:
        yield staging
        os.replace(staging, path)
    finally:
        if os.path.exists(staging):
            os.remove(staging)


def atomic_write_text(path, text, encoding="utf-8"):
    with atomic_path(path) as staging:
        with open(staging, "w", encoding=encoding, newline="") as stream:
            stream.write(text)
    return path


def atomic_write_bytes(path, data):
    with atomic_path(path) as staging:
        with open(staging, "wb") as stream:
            stream.write(data)
    return path


def atomic_write_json(path, data, **dump_options):
    dump_options.setdefault("indent", 2)
    return atomic_write_text(path, json.dumps(data, **dump_options) + "\n")


@contextmanager
def staging_dir(folder, prefix=".staging-"):
    """A scratch folder inside `folder` (same filesystem, so renames out of it are atomic),
    removed when the block ends, whatever happens."""
    os.makedirs(folder, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=prefix, dir=folder)
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def move_into_place(staging_folder, names, target_folder):
    """os.replace each of `names` from `staging_folder` into `target_folder`."""
    os.makedirs(target_folder, exist_ok=True)
    for name in names:
        os.replace(os.path.join(staging_folder, name), os.path.join(target_folder, name))


def replace_dir(new, target):
    """Put folder `new` at `target`; the old target is removed only after the move."""
    old = None
    if os.path.exists(target):
        old = tempfile.mkdtemp(prefix=".old-", dir=os.path.dirname(os.path.abspath(target)))
        os.rmdir(old)
        os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        if old:
            os.replace(old, target)
        raise
    if old:
        shutil.rmtree(old, ignore_errors=True)
    return target
