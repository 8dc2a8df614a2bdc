"""An offline-safe font for ppdet's box drawing (PaddleDetection 2.7+ `tools/infer.py`).

ppdet's `visualizer.draw_bbox` asks `get_path("https://paddledet.bj.bcebos.com/simfang.ttf",
"~/.cache/paddle/")` for its label font. The `~` is never expanded, so the font is looked up
in (and downloaded into) a folder named `~` under the current directory, and without a
network the download ends in a ConnectionError after the detections were computed.

The stand-in looks for the font where a user has it, in order: the cache folder ppdet meant
(`~` expanded), the literal folder ppdet used so far, the `simfang.ttf` that a PaddleDetection
tree ships beside `ppdet/utils/visualizer.py`; only then it lets ppdet download, and if that
fails it labels with matplotlib's DejaVu Sans (a stack dependency), saying so once.
Every other `get_path` call is ppdet's own.
"""
import functools
import os
import sys

FONT_FILE = "simfang.ttf"


def fallback_font():
    from matplotlib import font_manager

    return font_manager.findfont("DejaVu Sans", fallback_to_default=True)


def _candidates(url, root_dir, visualizer_file):
    name = url.rsplit("/", 1)[-1]
    yield os.path.join(os.path.expanduser(root_dir), name)
    yield os.path.join(root_dir, name)
    if visualizer_file:
        yield os.path.join(os.path.dirname(os.path.abspath(visualizer_file)), name)


def offline_safe_font_path(get_path, visualizer_file=None):
    """Wrap ppdet's `get_path` so that asking for the label font never needs a network."""
    if getattr(get_path, "_offline_safe_font", False):
        return get_path

    @functools.wraps(get_path)
    def wrapped(url, root_dir, *args, **kwargs):
        if not str(url).endswith("/" + FONT_FILE):
            return get_path(url, root_dir, *args, **kwargs)
        for path in _candidates(url, root_dir, visualizer_file):
            if os.path.isfile(path):
                return path, True
        try:
            return get_path(url, os.path.expanduser(root_dir), *args, **kwargs)
        except Exception as error:  # ppdet raises RuntimeError, requests ConnectionError
            if wrapped._fallback_said is False:
                print("slimext: label font {} not downloadable ({}: {}); labels use {}".format(
                    url, type(error).__name__, error, fallback_font()), file=sys.stderr)
                wrapped._fallback_said = True
            return fallback_font(), False

    wrapped._offline_safe_font = True
    wrapped._fallback_said = False
    return wrapped


def visualizer_downloads_its_font():
    """True for a ppdet whose visualizer fetches its font through get_path (2.7+)."""
    from ppdet.utils import visualizer

    return callable(getattr(visualizer, "get_path", None))


def make_label_font_offline_safe():
    from ppdet.utils import visualizer

    visualizer.get_path = offline_safe_font_path(visualizer.get_path, visualizer.__file__)
    return ["ppdet.utils.visualizer.get_path (label font)"]
