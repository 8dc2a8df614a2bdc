"""`ImageDraw.textsize` for Pillow >= 10, which removed it.

PaddleDetection v2.6.0's `deploy/python/visualize.py` labels every box with
`draw.textsize(text)`; on Pillow 10+ that is `AttributeError: 'ImageDraw' object has no
attribute 'textsize'`. Pillow's removed method returned the text's extent measured from the
origin (`FreeTypeFont.getsize`: size plus offset), which is the right and bottom edge of
`textbbox((0, 0), ...)`; this stand-in returns exactly that.
"""


def _textsize(self, text, font=None, spacing=4, direction=None, features=None,
              language=None, stroke_width=0):
    _, _, right, bottom = self.textbbox((0, 0), text, font=font, spacing=spacing,
                                        direction=direction, features=features,
                                        language=language, stroke_width=stroke_width)
    return right, bottom


def textsize_missing():
    """True when Pillow itself has no textsize (this stand-in does not count)."""
    from PIL import ImageDraw

    return getattr(ImageDraw.ImageDraw, "textsize", _textsize) is _textsize


def restore_textsize():
    from PIL import ImageDraw

    if textsize_missing():
        _textsize.__name__ = "textsize"
        ImageDraw.ImageDraw.textsize = _textsize
    return ["PIL.ImageDraw.ImageDraw.textsize"]
