# The version lines of PaddleDetection's setup.py on release/2.7.1 and develop (v2.7.0 and
# release/2.6.1 say the same): the tree carries no release number.
# ==============  version definition  ==============

PPDET_VERSION = "0.0.0"
