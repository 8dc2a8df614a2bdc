# The version lines of PaddleDetection's setup.py on the v2.6.0 tag.
# ==============  version definition  ==============

PPDET_VERSION = "2.6.0"
